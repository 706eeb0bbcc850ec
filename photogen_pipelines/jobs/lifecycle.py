"""The one writer of a job's state and of its shots' (tests/test_status_writers.py): every
move is a locked read-modify-write of the job's row, so a shot run, the export run, the API
and the settlement sensor changing one job at once queue up instead of overwriting each other.
A move to the state a job (or shot) is already in is a harmless repeat."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import select
from sqlalchemy.orm import Session

from photogen_pipelines.clock import as_utc, utc_now
from photogen_pipelines.db.database import Database
from photogen_pipelines.db.tables import JobRow, JobShotRow
from photogen_pipelines.errors import NotFound
from photogen_pipelines.jobs.states import OWES_REFUND, SHOT_TRANSITIONS, TRANSITIONS, Job, JobState, Shot, ShotState, check_move

JOB_COLUMNS = (
    "id kind tier state reason inputs seed engine payments amount_cents credits_price credits_paid credits_refunded "
    "api_key_id customer_ref catalog sku created_at updated_at"
).split()


def _to_shot(row: JobShotRow) -> Shot:
    return Shot(
        name=row.name,
        position=row.position,
        state=ShotState(row.state),
        tries=row.tries,
        reason=row.reason,
        scores=row.scores,
        updated_at=as_utc(row.updated_at),
    )


def to_job(row: JobRow, shots: list[JobShotRow]) -> Job:
    fields = {name: getattr(row, name) for name in JOB_COLUMNS}
    fields["created_at"], fields["updated_at"] = as_utc(row.created_at), as_utc(row.updated_at)
    return Job(**fields, shots=[_to_shot(s) for s in sorted(shots, key=lambda s: s.position)])


def _shot_rows(session: Session, job_id: str) -> list[JobShotRow]:
    return list(session.scalars(select(JobShotRow).where(JobShotRow.job_id == job_id)))


def jobs_of(session: Session, rows: list[JobRow]) -> list[Job]:
    """`rows` as jobs, their shots read in one query (the sensors ask every second)."""
    shots: dict[str, list[JobShotRow]] = {row.id: [] for row in rows}
    if shots:
        for shot in session.scalars(select(JobShotRow).where(JobShotRow.job_id.in_(list(shots)))):
            shots[shot.job_id].append(shot)
    return [to_job(row, shots[row.id]) for row in rows]


def _locked(session: Session, job_id: str) -> JobRow:
    row = session.get(JobRow, job_id, with_for_update=True)
    if row is None:
        raise NotFound(f"job {job_id} not found", code="job_not_found")
    return row


def add_in(session: Session, job: Job, idempotency_key: str | None = None, request_hash: str | None = None) -> None:
    """Record a new job and its planned shots, all pending, in the caller's transaction (the
    one that takes its credits)."""
    now = utc_now()
    values = job.model_dump(include=set(JOB_COLUMNS))
    values.update(state=job.state.value, created_at=now, updated_at=now)
    session.add(JobRow(**values, idempotency_key=idempotency_key, request_hash=request_hash))
    session.flush()  # the job's row before its shots' (their foreign key)
    for shot in job.shots:
        session.add(
            JobShotRow(job_id=job.id, name=shot.name, position=shot.position, state=ShotState.PENDING.value, updated_at=now)
        )


def get(database: Database, job_id: str, api_key_id: str | None = None, *, any_caller: bool = False) -> Job:
    """The job (NotFound job_not_found, also for another caller's job unless `any_caller`)."""
    with database.session() as session:
        row = session.get(JobRow, job_id)
        if row is None or (not any_caller and row.api_key_id != api_key_id):
            raise NotFound(f"job {job_id} not found", code="job_not_found")
        return to_job(row, _shot_rows(session, job_id))


def find_idempotent(database: Database, api_key_id: str | None, key: str) -> tuple[Job, str | None] | None:
    with database.session() as session:
        row = session.scalar(select(JobRow).where(JobRow.api_key_id == api_key_id, JobRow.idempotency_key == key))
        return None if row is None else (to_job(row, _shot_rows(session, row.id)), row.request_hash)


def jobs_in(database: Database, states: list[JobState], limit: int = 100) -> list[Job]:
    """Jobs in `states`, oldest change first (the sensors' bounded pass)."""
    with database.session() as session:
        rows = session.scalars(
            select(JobRow).where(JobRow.state.in_([s.value for s in states])).order_by(JobRow.updated_at).limit(limit)
        ).all()
        return jobs_of(session, list(rows))


def owing_credits(database: Database, limit: int = 100) -> list[str]:
    """Jobs that will not deliver and still owe credits back, oldest change first."""
    with database.session() as session:
        return list(
            session.scalars(
                select(JobRow.id)
                .where(JobRow.state.in_([s.value for s in OWES_REFUND]), JobRow.credits_paid > JobRow.credits_refunded)
                .order_by(JobRow.updated_at)
                .limit(limit)
            )
        )


@contextmanager
def _job_move(database: Database, job_id: str) -> Iterator[tuple[Session, JobRow]]:
    with database.session() as session:
        yield session, _locked(session, job_id)


def _set_state(row: JobRow, target: JobState, reason: str | None) -> bool:
    if not check_move(JobState(row.state), target, TRANSITIONS, f"job {row.id}"):
        return False
    row.state, row.updated_at = target.value, utc_now()
    if reason is not None:
        row.reason = reason
    return True


def move(database: Database, job_id: str, target: JobState, reason: str | None = None) -> Job:
    """Move the job to `target` (IllegalTransition where the machine forbids it)."""
    with _job_move(database, job_id) as (session, row):
        _set_state(row, target, reason)
        return to_job(row, _shot_rows(session, job_id))


def start_generating(database: Database, job_id: str) -> Job:
    """A shot run begins: a paid job starts generating; one generating already stays."""
    return move(database, job_id, JobState.GENERATING)


def settle_shot(
    database: Database, job_id: str, name: str, passed: bool, tries: int, scores: dict | None, reason: str | None
) -> Job:
    """A shot's outcome, written once its gates have spoken (a repeat writes the same)."""
    with _job_move(database, job_id) as (session, row):
        shot = session.get(JobShotRow, (job_id, name), with_for_update=True)
        if shot is None:
            raise NotFound(f"job {job_id} has no shot {name!r}", code="shot_not_found")
        target = ShotState.PASSED if passed else ShotState.REJECTED
        if ShotState(shot.state) != target:
            check_move(ShotState(shot.state), target, SHOT_TRANSITIONS, f"shot {name} of job {job_id}")
        shot.state, shot.tries, shot.scores, shot.reason, shot.updated_at = target.value, tries, scores, reason, utc_now()
        row.updated_at = utc_now()
        return to_job(row, _shot_rows(session, job_id))


def reject_shot(database: Database, job_id: str, name: str, reason: str) -> Job:
    """A passing shot rejected after the fact (the pack's consistency check), its scores kept."""
    with _job_move(database, job_id) as (session, row):
        shot = session.get(JobShotRow, (job_id, name), with_for_update=True)
        if shot is None:
            raise NotFound(f"job {job_id} has no shot {name!r}", code="shot_not_found")
        if ShotState(shot.state) == ShotState.PASSED:  # passed -> rejected goes through no pending: no new attempt
            shot.state, shot.reason, shot.updated_at = ShotState.REJECTED.value, reason, utc_now()
        return to_job(row, _shot_rows(session, job_id))


def retry_shot(database: Database, job_id: str, name: str) -> Job:
    """An operator's retry of one settled shot: it is pending again and the job generates
    (its export is rebuilt when the shot settles)."""
    with _job_move(database, job_id) as (session, row):
        shot = session.get(JobShotRow, (job_id, name), with_for_update=True)
        if shot is None:
            raise NotFound(f"job {job_id} has no shot {name!r}", code="shot_not_found")
        if check_move(ShotState(shot.state), ShotState.PENDING, SHOT_TRANSITIONS, f"shot {name} of job {job_id}"):
            shot.state, shot.reason, shot.updated_at = ShotState.PENDING.value, None, utc_now()
        _set_state(row, JobState.GENERATING, None)
        return to_job(row, _shot_rows(session, job_id))


def finish(database: Database, job_id: str) -> Job:
    """Every shot settled and the export built: `ready` with a passing shot, else `rejected`
    with the shots' reasons."""
    with _job_move(database, job_id) as (session, row):
        job = to_job(row, _shot_rows(session, job_id))
        if not job.all_settled:
            raise NotFound(f"job {job_id} still has pending shots", code="shots_pending")
        passed = [s for s in job.shots if s.state == ShotState.PASSED]
        if passed:
            _set_state(row, JobState.READY, f"{len(passed)} of {len(job.shots)} shots passed")
        else:
            reasons = sorted({s.reason for s in job.shots if s.reason})
            _set_state(row, JobState.REJECTED, "every shot was rejected: " + "; ".join(reasons))
        return to_job(row, _shot_rows(session, job_id))


def fail(database: Database, job_id: str, reason: str) -> Job:
    return move(database, job_id, JobState.FAILED, reason)


def cancel(database: Database, job_id: str, reason: str) -> Job:
    return move(database, job_id, JobState.CANCELLED, reason)


def credits_refunded_in(session: Session, job_id: str, credits: int) -> Job:
    """Inside the refund's transaction: the job's credits came back; it ends `refunded`."""
    row = _locked(session, job_id)
    row.credits_refunded += credits
    _set_state(row, JobState.REFUNDED, f"{credits} credits refunded")
    return to_job(row, _shot_rows(session, job_id))


def locked_in(session: Session, job_id: str) -> Job:
    """The job under its row lock, in the caller's transaction (the refund reads it so)."""
    row = _locked(session, job_id)
    return to_job(row, _shot_rows(session, job_id))
