"""The job ledger: one row per shot of every studio job that changed on a UTC day, what
analysts read of the studio's jobs (pose packs, fashion shoots, try-ons, living portraits)
beside the generation ledger's orders. Rows are built from the orders database (`jobs`,
`job_shots`) and each settled shot's stored record (jobs/results.py `StoredShot`: its
seed, retries, engine seconds and cost), and kept as one Parquet file per UTC day at
`analytics/job_ledger/day=YYYY-MM-DD.parquet`.

A job's rows belong to the day of its latest change (`updated_at`): a job retried a day
after it was delivered moves to that day's file, and a reader that meets it in both files
keeps the newer rows. The job's credits are job-level: `job_credits` is filled on the
job's first shot (position 0) only, so summing the column counts each job once.
No personal data: no upload or identity ids, no customer_ref.

The columns are plain Python, so the Dagster code location lists them at import; pandas
and pyarrow load inside the functions that build or read a frame (only analytics runs and
`photogen report` need them).
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from photogen_pipelines.clock import as_utc
from photogen_pipelines.db.database import Database
from photogen_pipelines.db.tables import JobRow
from photogen_pipelines.errors import NotFound
from photogen_pipelines.jobs.lifecycle import jobs_of
from photogen_pipelines.jobs.results import stored_shot
from photogen_pipelines.jobs.states import SETTLED, Job, ShotState
from photogen_pipelines.storage.stores import ArtifactStore

if TYPE_CHECKING:
    import pandas as pd

JOB_LEDGER_PREFIX = "analytics/job_ledger/"
# the gates' scores as jobs/shots.py records them: each its own column, null where the gate did not apply
GATE_SCORES = ("identity", "product_ssim", "explicit", "lowest_frame_identity")
OUTCOMES = tuple(s.value for s in ShotState)  # pending, passed, rejected

# (name, type, description); the types: string, timestamp (UTC, microseconds), int64, float64
JOB_LEDGER_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("job_id", "string", "the studio job"),
    ("kind", "string", "the job's kind (catalog/kinds.yaml): pose_pack, fashion_shoot, try_on, living_portrait ..."),
    ("tier", "string", "the quality tier it was sold in"),
    ("engine", "string", "the engine that makes it (embedded, flux2-klein, wan-i2v ...)"),
    ("job_state", "string", "the job's state when the row was built: paid, generating, ready, rejected, failed ..."),
    ("catalog", "string", "a merchant catalog's shoot: the catalog; null otherwise"),
    ("sku", "string", "a merchant catalog's shoot: the SKU; null otherwise"),
    ("shot", "string", "the shot's name: the pose, or the kind's named shot"),
    ("position", "int64", "the shot's place in the job, from 0"),
    ("outcome", "string", "passed, rejected (every attempt failed a gate, or the pack's consistency check), or pending"),
    ("tries", "int64", "attempts made, the first included (0: not made yet)"),
    ("retries", "int64", "attempts after the first, from the shot's stored record; null: no record (pending)"),
    ("seed", "int64", "the seed of the attempt delivered, or of the last one tried; null: no record"),
    ("identity", "float64", "identity similarity of the delivered (or last) attempt; null: the gate did not apply"),
    ("product_ssim", "float64", "the product lock's SSIM of the delivered (or last) attempt; null: did not apply"),
    ("explicit", "float64", "the content-safety gate's explicit score of the delivered (or last) attempt"),
    ("lowest_frame_identity", "float64", "a video's lowest identity similarity over its frames; null: not a video"),
    ("reason", "string", "why the shot was rejected"),
    ("seconds", "float64", "engine seconds of the shot, every attempt counted; null: no record"),
    ("cost_usd", "float64", "what making the shot cost in USD, every attempt counted; null: no record"),
    (
        "job_credits",
        "int64",
        "the job's price in credits (0 with payments off): on the job's first shot only, null on the others, "
        "so a sum counts each job once",
    ),
    ("created_at", "timestamp", "when the job was placed"),
    ("settled_at", "timestamp", "when the job last settled (ready, rejected, failed, cancelled, refunded); null: still running"),
    ("updated_at", "timestamp", "the job's latest change: the day file holding its rows"),
    ("day", "string", "updated_at's UTC date (YYYY-MM-DD)"),
)
COLUMNS = tuple(name for name, _, _ in JOB_LEDGER_COLUMNS)
_PANDAS = {"string": "str", "int64": "Int64", "float64": "float64", "timestamp": "datetime64[us, UTC]"}
DTYPES = {name: _PANDAS[kind] for name, kind, _ in JOB_LEDGER_COLUMNS}
KEY = ["job_id", "shot"]


def job_ledger_key(day: date | str) -> str:
    return f"{JOB_LEDGER_PREFIX}day={date.fromisoformat(str(day)).isoformat()}.parquet"


def schema():
    """The Parquet schema, the same in every day's file (an empty day included); each
    column's description travels in it."""
    import pyarrow as pa

    types = {"string": pa.string(), "int64": pa.int64(), "float64": pa.float64(), "timestamp": pa.timestamp("us", tz="UTC")}
    return pa.schema([pa.field(name, types[kind], metadata={"description": text}) for name, kind, text in JOB_LEDGER_COLUMNS])


def jobs_changed_between(database: Database, start: datetime, end: datetime) -> list[Job]:
    """Jobs whose latest change happened in [start, end), oldest change first."""
    with database.session() as session:
        # SQLite keeps UTC wall times without a zone: compare in UTC on both engines
        rows = session.scalars(
            select(JobRow)
            .where(JobRow.updated_at >= as_utc(start), JobRow.updated_at < as_utc(end))
            .order_by(JobRow.updated_at, JobRow.id)
        ).all()
        return jobs_of(session, list(rows))


def shot_rows(job: Job, store: ArtifactStore) -> list[dict[str, Any]]:
    """The job's rows, one per shot in order. A settled shot's seed, retries, seconds and cost
    come from its stored record; a pending shot's earlier record (an operator's retry) is
    about to be replaced, so it has none."""
    settled_at = job.updated_at if job.state in SETTLED else None
    rows = []
    for shot in job.shots:
        stored = stored_shot(store, job.id, shot.name) if shot.state != ShotState.PENDING else None
        scores = shot.scores or {}
        rows.append(
            {
                "job_id": job.id,
                "kind": job.kind,
                "tier": job.tier,
                "engine": job.engine,
                "job_state": job.state.value,
                "catalog": job.catalog,
                "sku": job.sku,
                "shot": shot.name,
                "position": shot.position,
                "outcome": shot.state.value,
                "tries": shot.tries,
                "retries": stored.record.retries if stored else None,
                "seed": stored.record.seed if stored else None,
                **{gate: scores.get(gate) for gate in GATE_SCORES},
                "reason": shot.reason,
                "seconds": stored.seconds if stored else None,
                "cost_usd": stored.cost_usd if stored else None,
                "job_credits": job.credits_price if shot.position == 0 else None,
                "created_at": job.created_at,
                "settled_at": settled_at,
                "updated_at": job.updated_at,
                "day": job.updated_at.astimezone(UTC).date().isoformat() if job.updated_at else None,
            }
        )
    return rows


def conform(frame: pd.DataFrame) -> pd.DataFrame:
    """The job ledger's columns in order with their dtypes, whatever built or read the frame."""
    import pandas as pd

    frame = frame.reindex(columns=list(COLUMNS))
    for name, kind, _ in JOB_LEDGER_COLUMNS:
        if kind == "timestamp":
            frame[name] = pd.to_datetime(frame[name], utc=True)
        elif kind == "float64":
            frame[name] = pd.to_numeric(frame[name], errors="coerce")  # None -> NaN, not an object column
    return frame.astype(DTYPES).reset_index(drop=True)


def job_rows(store: ArtifactStore, jobs: Iterable[Job]) -> pd.DataFrame:
    import pandas as pd

    rows = [row for job in jobs for row in shot_rows(job, store)]
    return conform(pd.DataFrame(rows, columns=list(COLUMNS)))


def empty_job_ledger() -> pd.DataFrame:
    import pandas as pd

    return conform(pd.DataFrame(columns=list(COLUMNS)))


def build_job_ledger_day(database: Database, store: ArtifactStore, day: date | str) -> pd.DataFrame:
    """The rows the `job_ledger` asset writes for `day`: every shot of every job whose latest
    change happened that UTC day."""
    from photogen_pipelines.analytics.ledger import day_window

    return job_rows(store, jobs_changed_between(database, *day_window(day)))


def write_job_ledger_day(store: ArtifactStore, day: date | str, frame: pd.DataFrame) -> str:
    """Store one day's rows (replacing that day's file); returns the key."""
    from photogen_pipelines.analytics.ledger import parquet_bytes

    key = job_ledger_key(day)
    store.put_bytes(key, parquet_bytes(conform(frame), schema()))
    return key


def read_job_ledger_day(store: ArtifactStore, day: date | str) -> pd.DataFrame | None:
    """One day's rows, or None when that day was never built."""
    import pyarrow.parquet as pq

    try:
        data = store.get_bytes(job_ledger_key(day))
    except NotFound:
        return None
    return conform(pq.read_table(io.BytesIO(data)).to_pandas())


def job_ledger_days(store: ArtifactStore) -> list[date]:
    days = []
    for key in store.list(JOB_LEDGER_PREFIX):
        name = key.rsplit("/", 1)[-1]
        if name.startswith("day=") and name.endswith(".parquet"):
            try:
                days.append(date.fromisoformat(name[4:-8]))
            except ValueError:
                continue  # not a day file: someone else's key under the prefix
    return sorted(days)


def latest_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """Each job's rows as of its latest change: a job met in two days' files (retried the day
    after) keeps the newer day's rows, and the shots it no longer has are dropped with it."""
    if frame.empty:
        return conform(frame)
    newest = frame.groupby("job_id")["updated_at"].transform("max")
    latest = frame[frame["updated_at"] == newest].drop_duplicates(KEY, keep="last")
    return conform(latest.sort_values(["updated_at", "job_id", "position"], kind="stable"))


def read_job_ledger(store: ArtifactStore, since: date | None = None) -> pd.DataFrame:
    """Every day from `since` on, each job's rows as of its latest change."""
    import pandas as pd

    frames = [read_job_ledger_day(store, day) for day in job_ledger_days(store) if since is None or day >= since]
    frames = [f for f in frames if f is not None and len(f)]
    return latest_rows(pd.concat(frames, ignore_index=True)) if frames else empty_job_ledger()


def current_job_ledger(store: ArtifactStore, database: Database | None, since: date | None = None) -> tuple[pd.DataFrame, dict]:
    """The job ledger's rows from `since` on, topped up from `database` (None: the files
    alone) with the jobs the files do not hold as they are now: changed on a day without a
    file, on or after the newest file's day (it may have been built while its day ran), or
    since their row was written. Returns the rows and where they came from."""
    import pandas as pd

    from photogen_pipelines.analytics.ledger_view import database_windows

    files = [d for d in job_ledger_days(store) if since is None or d >= since]
    ledger = read_job_ledger(store, since)
    direct = empty_job_ledger()
    if database is not None:
        kept = ledger.groupby("job_id")["updated_at"].max().to_dict() if len(ledger) else {}
        fresh = [
            job
            for window in database_windows(files, since)
            for job in jobs_changed_between(database, *window)
            if job.id not in kept or kept[job.id] < job.updated_at
        ]
        direct = job_rows(store, fresh)
    parts = [f for f in (ledger[~ledger["job_id"].isin(set(direct["job_id"]))], direct) if len(f)]
    rows = latest_rows(pd.concat(parts, ignore_index=True)) if parts else empty_job_ledger()
    read_directly = set(direct["job_id"])
    sources = {
        "ledger": {"days": [d.isoformat() for d in files], "jobs": len(set(rows["job_id"]) - read_directly)},
        "orders_db": {"read": database is not None, "jobs": len(read_directly)},
    }
    return rows, sources


def _median(series: pd.Series) -> float | None:
    known = series.dropna()
    return None if known.empty else float(known.median())


def per_kind(rows: pd.DataFrame) -> list[dict]:
    """Per kind, the job ledger's numbers: jobs, shots, how many passed, were rejected or are
    pending, the passed share of the settled shots, the median retries and engine seconds a
    shot took, what a shot cost (the mean over the shots with a record) and in all, and the
    credits the jobs were priced at."""
    summary = []
    for kind, shots in rows.groupby("kind", sort=True):
        counts = shots["outcome"].value_counts()
        passed, rejected = int(counts.get("passed", 0)), int(counts.get("rejected", 0))
        costed = shots["cost_usd"].dropna()
        summary.append(
            {
                "kind": kind,
                "jobs": int(shots["job_id"].nunique()),
                "shots": len(shots),
                "passed": passed,
                "rejected": rejected,
                "pending": int(counts.get("pending", 0)),
                "passed_rate": None if passed + rejected == 0 else round(passed / (passed + rejected), 4),
                "median_retries": _median(shots["retries"].astype("float64")),
                "median_seconds_per_shot": None if (m := _median(shots["seconds"])) is None else round(m, 3),
                "cost_usd_per_shot": None if costed.empty else round(float(costed.mean()), 6),
                "cost_usd_total": round(float(costed.sum()), 6),
                "shots_costed": len(costed),
                "credits": int(shots["job_credits"].sum()),
            }
        )
    return summary
