"""The prediction journal under concurrency (photogen_pipelines/engines/predictions.py):
two workers saving the same request's record at the same moment make one row, on SQLite
and on PostgreSQL, whether they call the journal directly or through a backend that uses
it (the Replicate stylizer, the RunPod engines).

PostgreSQL does not lock a row that does not exist yet, so a SELECT … FOR UPDATE followed
by an INSERT lets both savers of a new key insert it, and the second fails on the primary
key; the journal inserts with ON CONFLICT DO NOTHING and then updates the row it finds.
The threads meet at a barrier right before each save, so the saves really race."""

from __future__ import annotations

import base64
import io
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import func, select

from photogen_pipelines.db.tables import PredictionRow
from photogen_pipelines.engines.predictions import PredictionRecord, PredictionStatus, SqlPredictionJournal, request_key
from photogen_pipelines.imaging.images import png_bytes

REPO = Path(__file__).parents[1]
TRIALS = 20  # before the fix, PostgreSQL failed 18 to 20 of 20 such races
BARRIER_SECONDS = 30


def race(*calls):
    """Run the calls on threads of their own, released together; their results, in order."""
    barrier = threading.Barrier(len(calls), timeout=BARRIER_SECONDS)

    def released(call):
        barrier.wait()
        return call()

    with ThreadPoolExecutor(len(calls)) as pool:
        futures = [pool.submit(released, call) for call in calls]
        return [future.result() for future in futures]


def rows(database) -> int:
    with database.session() as session:
        return session.scalar(select(func.count()).select_from(PredictionRow))


# -- the journal itself -----------------------------------------------------------------


@pytest.mark.parametrize("provider", ["replicate", "runpod"])
def test_two_saves_of_the_same_new_key_make_one_row(orders_db, provider):
    journal = SqlPredictionJournal(orders_db)
    for trial in range(TRIALS):
        key = f"{provider}-{trial}"
        first = PredictionRecord(key, provider, f"{provider}-job-a{trial}", PredictionStatus.STARTING)
        second = PredictionRecord(key, provider, f"{provider}-job-b{trial}", PredictionStatus.STARTING)
        race(lambda r=first: journal.save(r), lambda r=second: journal.save(r))  # neither raises
        found = journal.find(key)
        assert found.prediction_id in (first.prediction_id, second.prediction_id)
        assert (found.provider, found.status) == (provider, PredictionStatus.STARTING)
    assert rows(orders_db) == TRIALS


def test_racing_saves_leave_one_whole_record_and_keep_when_it_was_created(orders_db):
    """Last writer wins, field by field of one record, never a mix of two; the row keeps
    the moment it was first saved."""
    journal = SqlPredictionJournal(orders_db)
    for trial in range(TRIALS):
        key = f"k{trial}"
        running = PredictionRecord(key, "replicate", f"p{trial}", "processing")
        ended = PredictionRecord(key, "replicate", f"p{trial}", "succeeded", predict_seconds=2.5, cost_usd=0.01)
        race(lambda r=running: journal.save(r), lambda r=ended: journal.save(r))
        found = journal.find(key)
        stored = PredictionRecord(key, found.provider, found.prediction_id, found.status, found.predict_seconds, found.cost_usd)
        assert stored in (running, ended)
        assert found.created_at <= found.updated_at

        created = found.created_at
        journal.save(ended)  # a later save updates the row, keeping its creation
        again = journal.find(key)
        assert (again.status, again.created_at) == (PredictionStatus.SUCCEEDED, created)
        assert again.updated_at >= found.updated_at
    assert rows(orders_db) == TRIALS


# -- through every backend that uses it ---------------------------------------------------


class RacingJournal(SqlPredictionJournal):
    """The SQL journal, whose callers' first saves start together: each of `parties`
    threads waits for the others at its first save."""

    def __init__(self, database, parties: int):
        super().__init__(database)
        self.barrier = threading.Barrier(parties, timeout=BARRIER_SECONDS)
        self.raced = threading.local()

    def save(self, record: PredictionRecord) -> None:
        if not getattr(self.raced, "done", False):
            self.raced.done = True
            self.barrier.wait()
        super().save(record)


def test_the_backends_are_the_journals_only_users():
    """The backends raced below are every production module that writes a prediction record."""
    users = {
        path.relative_to(REPO).as_posix()
        for package in ("photogen_pipelines", "engine_service", "resources", "assets")
        for path in (REPO / package).rglob("*.py")
        if "PredictionRecord(" in path.read_text()
    }
    assert users == {
        "photogen_pipelines/engines/predictions.py",
        "photogen_pipelines/engines/stylize_replicate.py",
        "photogen_pipelines/engines/runpod.py",
    }


@pytest.fixture(scope="module")
def portrait() -> np.ndarray:
    rng = np.random.default_rng(7)
    return rng.integers(0, 255, size=(40, 32, 3), dtype=np.uint8)


def test_two_replicate_stylizers_racing_the_same_request(orders_db, portrait):
    from photogen_pipelines.engines.stylize_replicate import ReplicateStylizer
    from tests.fake_replicate import DEFAULT_MODEL, TOKEN, FakeReplicate
    from tests.test_stylize_replicate import IMG2IMG, expected_fields, style_params

    params = style_params()
    key = request_key("replicate", f"{IMG2IMG.name}:{IMG2IMG.version}", portrait, expected_fields(params, 0.9, 1, 2, None))
    journal = RacingJournal(orders_db, parties=2)

    def stylize(journal=journal):
        stylizer = ReplicateStylizer(TOKEN, api_base=fake.url, journal=journal, poll_seconds=0.01, timeout_seconds=30.0)
        return stylizer.stylize_variants(portrait, params, 0.9, [1, 2])

    with FakeReplicate(models=[IMG2IMG, DEFAULT_MODEL]) as fake:
        first, second = race(stylize, stylize)  # neither fails on the journal
        for a, b in zip(first, second, strict=True):
            np.testing.assert_array_equal(a, b)
        record = journal.find(key)
        assert record.status == PredictionStatus.SUCCEEDED and record.prediction_id in fake.predictions
        assert rows(orders_db) == 1

        created = fake.created  # the journal works on after the race: a retry reuses its record
        for a, b in zip(stylize(SqlPredictionJournal(orders_db)), first, strict=True):
            np.testing.assert_array_equal(a, b)
        assert fake.created == created


def runpod_handler(job: dict) -> dict:
    """A stand-in for deploy/runpod/handler.py: what the engines ask, answered with plain
    arithmetic (a tint per seed, nearest-neighbour upscaling); no models needed."""
    job_input = job["input"]
    picture = np.asarray(Image.open(io.BytesIO(base64.b64decode(job_input["image"]))).convert("RGB"))
    if job_input["task"] == "upscale":
        scale = job_input["scale"]
        outputs = [picture.repeat(scale, axis=0).repeat(scale, axis=1)]
    else:
        outputs = [((picture.astype(np.int64) + seed) % 256).astype(np.uint8) for seed in job_input["seeds"]]
    images = [base64.b64encode(png_bytes(output)).decode("ascii") for output in outputs]
    return {"images": images, "engine": {"name": "fake", "version": "1"}, "seconds": 0.01}


@pytest.mark.parametrize("engine", ["stylizer", "upscaler"])
def test_two_runpod_engines_racing_the_same_request(orders_db, portrait, engine):
    from photogen_pipelines.engines.runpod import RunPodStylizer, RunPodUpscaler
    from tests.fake_runpod import FakeRunPod

    journal = RacingJournal(orders_db, parties=2)
    if engine == "stylizer":
        fields = {"task": "stylize", "params": {"prompt": "an oil painting"}, "strength": 0.5, "seeds": [3, 4]}
    else:
        fields = {"task": "upscale", "scale": 2}

    def run(journal=journal):
        options = {"api_base": fake.api_base, "journal": journal, "poll_seconds": 0.01, "timeout_seconds": 30.0}
        if engine == "stylizer":
            stylizer = RunPodStylizer(fake.api_key, fake.endpoint_id, **options)
            return stylizer.stylize_variants(portrait, fields["params"], fields["strength"], fields["seeds"])
        return [RunPodUpscaler(fake.api_key, fake.endpoint_id, **options).upscale(portrait, 2)]

    with FakeRunPod(runpod_handler, queue_seconds=0.01) as fake:
        first, second = race(run, run)  # neither fails on the journal
        for a, b in zip(first, second, strict=True):
            np.testing.assert_array_equal(a, b)
        record = journal.find(request_key("runpod", fake.endpoint_id, portrait, fields))
        assert record.status == PredictionStatus.SUCCEEDED and record.prediction_id in fake.jobs
        assert rows(orders_db) == 1

        submitted = len(fake.submissions)  # the journal works on after the race: a retry reuses its record
        for a, b in zip(run(SqlPredictionJournal(orders_db)), first, strict=True):
            np.testing.assert_array_equal(a, b)
        assert len(fake.submissions) == submitted
