"""A job's delivery: one ZIP with every passing shot at three resolutions and a
`metadata.json` that says how each shot was made.

The resolutions are what a merchant's catalog uses: the full picture (PNG, lossless), 2048 px
on the long side for zoom views and 1024 px for the web (JPEG); a picture is never enlarged,
so a shot smaller than a size is delivered at its own size there. A rejected shot has no
files: the metadata says why, with every attempt's seed and scores.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Mapping
from datetime import datetime
from typing import Literal

import numpy as np
from PIL import Image
from pydantic import BaseModel, Field

from photogen_pipelines.imaging.images import fit_long_side

METADATA = "metadata.json"
# resolution label -> long side in px (None: the shot as made) and the format it is written in
RESOLUTIONS: dict[str, tuple[int | None, str]] = {"full": (None, "png"), "2048": (2048, "jpg"), "1024": (1024, "jpg")}
JPEG_QUALITY = 92


class AttemptRecord(BaseModel):
    attempt: int = Field(ge=0)
    seed: int = Field(ge=0)
    scores: dict[str, float | None]  # gate -> score (identity similarity, product SSIM, explicit score)
    passed: bool
    reason: str | None = None


class ShotRecord(BaseModel):
    name: str
    position: int = Field(ge=0)
    outcome: Literal["passed", "rejected"]
    seed: int = Field(ge=0, description="the seed of the attempt delivered, or of the last one tried")
    retries: int = Field(ge=0)
    attempts: list[AttemptRecord] = Field(min_length=1)
    size: tuple[int, int] | None = None  # the full picture's (width, height); None when rejected
    files: dict[str, str] = Field(default_factory=dict, description="resolution -> the file's name in the ZIP")
    reason: str | None = None  # why it was rejected


class ModelVersion(BaseModel):
    role: str  # what it did: stylizer, faces, upscaler, segmentation ...
    name: str
    version: str


class JobCost(BaseModel):
    usd: float = Field(ge=0)
    seconds: float = Field(ge=0, description="engine seconds, every attempt counted")


class JobMetadata(BaseModel):
    """`metadata.json`: what an analyst or a merchant's catalog tool reads back."""

    schema_version: Literal[1] = 1
    job_id: str
    kind: str
    tier: str | None
    made_at: datetime
    shots: list[ShotRecord]
    models: list[ModelVersion]
    cost: JobCost


def shot_files(position: int, name: str) -> dict[str, str]:
    """The ZIP member names of one shot's resolutions."""
    folder = f"shots/{position:02d}_{name}"
    return {label: f"{folder}/{label}.{fmt}" for label, (_, fmt) in RESOLUTIONS.items()}


def _encoded(picture: Image.Image, long_side: int | None, fmt: str) -> bytes:
    if long_side is not None and max(picture.size) > long_side:
        picture = picture.resize(fit_long_side(picture.size, long_side), Image.LANCZOS)
    buffer = io.BytesIO()
    if fmt == "png":
        picture.save(buffer, "PNG", compress_level=6)
    else:
        picture.convert("RGB").save(buffer, "JPEG", quality=JPEG_QUALITY, optimize=True)
    return buffer.getvalue()


def build_zip(metadata: JobMetadata, pictures: Mapping[str, np.ndarray], videos: Mapping[str, bytes] | None = None) -> bytes:
    """The job's ZIP: `pictures` holds each passing shot's full picture by shot name (a
    video's poster frame), `videos` a video shot's MP4, written beside its poster as
    `video.mp4`. The shots' `files` and `size` are filled in from what is written; a passing
    shot without a picture, or a picture for a rejected shot, is a programming error."""
    videos = videos or {}
    passing = {shot.name for shot in metadata.shots if shot.outcome == "passed"}
    if passing != set(pictures):
        raise ValueError(f"pictures for {sorted(pictures)}, but the passing shots are {sorted(passing)}")
    buffer = io.BytesIO()
    shots = []
    with zipfile.ZipFile(buffer, "w") as archive:
        for shot in metadata.shots:
            if shot.outcome != "passed":
                shots.append(shot.model_copy(update={"files": {}, "size": None}))
                continue
            picture = Image.fromarray(np.asarray(pictures[shot.name], dtype=np.uint8))
            names = shot_files(shot.position, shot.name)
            for label, (long_side, fmt) in RESOLUTIONS.items():
                archive.writestr(names[label], _encoded(picture, long_side, fmt), compress_type=zipfile.ZIP_STORED)
            if shot.name in videos:
                names["mp4"] = names["full"].rsplit("/", 1)[0] + "/video.mp4"
                archive.writestr(names["mp4"], videos[shot.name], compress_type=zipfile.ZIP_STORED)
            shots.append(shot.model_copy(update={"files": names, "size": picture.size}))
        document = metadata.model_copy(update={"shots": shots})
        archive.writestr(METADATA, document.model_dump_json(indent=2), compress_type=zipfile.ZIP_DEFLATED)
    return buffer.getvalue()


def read_metadata(zip_bytes: bytes) -> JobMetadata:
    """The ZIP's metadata.json, validated against its model."""
    with zipfile.ZipFile(io.BytesIO(zip_bytes)) as archive:
        return JobMetadata.model_validate_json(archive.read(METADATA))
