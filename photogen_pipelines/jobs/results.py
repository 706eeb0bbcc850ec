"""What a job's shots leave in the store, and the job's export assembled from them.

Each settled shot stores its record (every attempt's seed and scores, what made it and what
it cost) and, when it passed, its picture (and video): the `job_shots` asset writes them,
the export, the API and the analysts read them back. The export is built from the stored
shots alone, so a shot retried on its own is picked up by the next export.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from pydantic import BaseModel, Field

from photogen_pipelines.clock import utc_now
from photogen_pipelines.imaging.images import decode_upload, png_bytes
from photogen_pipelines.jobs.export import JobCost, JobMetadata, ModelVersion, ShotRecord, build_zip
from photogen_pipelines.jobs.keys import JobKeys
from photogen_pipelines.jobs.shots import ShotOutcome
from photogen_pipelines.jobs.states import Job
from photogen_pipelines.storage.artifacts import load_json, save_json
from photogen_pipelines.storage.stores import ArtifactStore


class StoredShot(BaseModel):
    """`jobs/<id>/shots/<name>.json`: one shot as it settled."""

    record: ShotRecord
    made: str  # what the engine made, in words
    seconds: float = Field(ge=0)  # engine seconds, every attempt
    cost_usd: float = Field(0.0, ge=0)
    models: list[ModelVersion] = Field(default_factory=list)
    video: bool = False  # an MP4 is stored beside the picture (its poster)


def save_shot(
    store: ArtifactStore,
    job_id: str,
    outcome: ShotOutcome,
    models: list[ModelVersion],
    cost_usd: float = 0.0,
    sign: Callable[[bytes], bytes] | None = None,
) -> StoredShot:
    """Store the shot's picture (and video) when it passed, signed by `sign` (C2PA Content
    Credentials) when given, then its record; a retry that is rejected removes the picture an
    earlier attempt left."""
    keys, name = JobKeys(job_id), outcome.record.name
    for key in (keys.rejected_picture(name), keys.rejected_video(name)):
        if store.exists(key):  # an earlier attempt's, superseded
            store.delete(key)
    if outcome.picture is None and outcome.last_picture is not None:
        # not delivered: kept beside the record so an operator sees what the gates refused
        store.put_bytes(keys.rejected_picture(name), png_bytes(outcome.last_picture))
        if outcome.last_video is not None:
            store.put_bytes(keys.rejected_video(name), outcome.last_video)
    if outcome.picture is not None:
        picture = png_bytes(outcome.picture)
        store.put_bytes(keys.shot_picture(name), sign(picture) if sign else picture)
    elif store.exists(keys.shot_picture(name)):
        store.delete(keys.shot_picture(name))
    if outcome.video is not None:
        store.put_bytes(keys.shot_video(name), outcome.video)
    stored = StoredShot(
        record=outcome.record,
        made=outcome.made,
        seconds=round(outcome.seconds, 3),
        cost_usd=round(cost_usd, 6),
        models=models,
        video=outcome.video is not None,
    )
    save_json(store, keys.shot_record(name), stored)
    return stored


def stored_shot(store: ArtifactStore, job_id: str, name: str) -> StoredShot | None:
    key = JobKeys(job_id).shot_record(name)
    return load_json(store, key, StoredShot) if store.exists(key) else None


def shot_picture(store: ArtifactStore, job_id: str, name: str) -> np.ndarray:
    return np.asarray(decode_upload(store.get_bytes(JobKeys(job_id).shot_picture(name))).convert("RGB"))


def assemble_export(store: ArtifactStore, job: Job) -> JobMetadata:
    """The job's ZIP from its stored shots (every shot settled: the caller checks), stored at
    `JobKeys.export`; its metadata is returned."""
    shots = [stored_shot(store, job.id, shot.name) for shot in job.shots]
    missing = [shot.name for shot, stored in zip(job.shots, shots, strict=True) if stored is None]
    if missing:
        raise ValueError(f"job {job.id}: no stored record for shots {missing}")
    models = {(m.role, m.name, m.version): m for stored in shots for m in stored.models}
    metadata = JobMetadata(
        job_id=job.id,
        kind=job.kind,
        tier=job.tier,
        made_at=utc_now(),
        shots=[stored.record for stored in shots],
        models=list(models.values()),
        cost=JobCost(usd=round(sum(s.cost_usd for s in shots), 6), seconds=round(sum(s.seconds for s in shots), 3)),
    )
    passing = [s for s in shots if s.record.outcome == "passed"]
    pictures = {s.record.name: shot_picture(store, job.id, s.record.name) for s in passing}
    videos = {s.record.name: store.get_bytes(JobKeys(job.id).shot_video(s.record.name)) for s in passing if s.video}
    archive = build_zip(metadata, pictures, videos)
    store.put_bytes(JobKeys(job.id).export, archive)
    return metadata


def reject_stored_shot(store: ArtifactStore, job_id: str, name: str, reason: str) -> StoredShot:
    """A passing shot rejected after the fact (the pack's consistency check found another
    person in it): its record says why and its picture is removed, so no ZIP delivers it."""
    keys = JobKeys(job_id)
    stored = stored_shot(store, job_id, name)
    if stored is None:
        raise ValueError(f"job {job_id}: no stored record for shot {name}")
    record = stored.record.model_copy(update={"outcome": "rejected", "reason": reason, "files": {}, "size": None})
    stored = stored.model_copy(update={"record": record})
    for key in (keys.shot_picture(name), keys.shot_video(name)):
        if store.exists(key):
            store.delete(key)
    save_json(store, keys.shot_record(name), stored)
    return stored
