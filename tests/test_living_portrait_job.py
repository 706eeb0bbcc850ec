"""A living portrait as a studio job through Dagster: a real portrait order's approved proof
animated by the Wan engine's real code path on tiny random-weight models (the weights cannot
be downloaded here), the frames' identity gate, the MP4 read back by PyAV; and, with a test
double of the Animator interface that pushes in on the real portrait (a fake: no image-to-video
model runs on this CPU), the passing path into the job's ZIP."""

from __future__ import annotations

import io
import zipfile

import dagster as dg
import numpy as np
import pytest
from PIL import Image

import assets
from photogen_pipelines.definitions import build_defs, register_local_order
from photogen_pipelines.devtools.tiny_wan import write_tiny_wan_models
from photogen_pipelines.imaging.video import probe, read_frames
from photogen_pipelines.jobs import lifecycle
from photogen_pipelines.jobs.export import read_metadata
from photogen_pipelines.jobs.keys import JobKeys
from photogen_pipelines.jobs.states import JobState, ShotState, partition_key
from photogen_pipelines.orders.states import OrderState
from photogen_pipelines.workflows.jobs import JobRequest, place_job
from resources import VideoEngine
from tests.dagster_helpers import job_placement, local_instance

pytestmark = pytest.mark.slow  # a portrait order's proof run first, then the video


@pytest.fixture(scope="module")
def tiny_wan(tmp_path_factory):
    return write_tiny_wan_models(tmp_path_factory.mktemp("wan") / "models")


@pytest.fixture
def instance(tmp_path):
    with local_instance(tmp_path / "dagster") as instance:
        yield instance


class PushIn:
    """An Animator that pushes in slowly on the portrait: real pixels that move."""

    name, version, native_fps = "push-in", "test double", 16

    def size_for(self, aspect: float) -> tuple[int, int]:
        return 256, round(256 / aspect / 2) * 2

    def animate(self, portrait, prompt, seconds, fps, seed, size):
        picture, frames = Image.fromarray(portrait), round(seconds * fps)
        width, height = picture.size
        video = []
        for i in range(frames):
            scale = 1 / (1 + 0.12 * i / max(1, frames - 1))
            w, h = width * scale, height * scale
            box = ((width - w) / 2, (height - h) / 2, (width + w) / 2, (height + h) / 2)
            video.append(np.asarray(picture.resize(size, Image.LANCZOS, box=box)))
        return video


class PushInVideo(VideoEngine):
    def animator(self):
        return PushIn()


def _approved_portrait(defs, instance, astronaut_png):
    order = register_local_order(defs, astronaut_png, "sepia_oil", "poster_a3", 1, approval="auto")
    instance.add_dynamic_partitions("orders", [order.id])
    dg.materialize(assets.proof_assets, partition_key=order.id, instance=instance, resources=defs.resources)
    approved = defs.resources["orders"].book().get(order.id)
    assert approved.state == OrderState.APPROVED
    return approved


def _living_portrait(resources, instance, order_id: str):
    place = job_placement(resources, video_engine="wan-i2v")
    job = place_job(place, JobRequest(kind="living_portrait", portrait_order_id=order_id, seconds=2), None, "live-1").job
    assert [s.name for s in job.shots] == ["clip"] and job.inputs["seconds"] == 2
    instance.add_dynamic_partitions("jobs", [job.id])
    key = partition_key(job.id, "clip")
    assert dg.materialize(
        assets.jobs_assets, selection=[assets.job_shots], partition_key=key, instance=instance, resources=resources
    ).success
    assert dg.materialize(
        assets.jobs_assets, selection=[assets.job_export], partition_key=job.id, instance=instance, resources=resources
    ).success
    return place, lifecycle.get(place.database, job.id, any_caller=True)


def test_the_tiny_wan_models_animate_the_approved_portrait_and_the_frames_gate_refuses_their_noise(
    tmp_path, instance, tiny_wan, astronaut_png
):
    defs = build_defs(str(tmp_path / "home"), video_models_dir=str(tiny_wan))
    resources = defs.resources
    order = _approved_portrait(defs, instance, astronaut_png)
    place, job = _living_portrait(resources, instance, order.id)
    # random weights paint noise: no frame shows the customer, so the clip is refused, and said why
    assert job.state == JobState.REJECTED and job.shot("clip").state == ShotState.REJECTED
    assert "frame" in job.shot("clip").reason
    # the refused attempt's video is kept for the operator, and it plays
    video = place.store.get_bytes(JobKeys(job.id).rejected_video("clip"))
    info = probe(video)
    assert info.codec == "h264" and info.frames == 32 and info.fps == 16
    frames = read_frames(video)
    assert len(frames) == 32 and frames[0].ndim == 3
    metadata = read_metadata(place.store.get_bytes(JobKeys(job.id).export))
    assert metadata.shots[0].outcome == "rejected" and metadata.shots[0].retries == 1  # the kind's one retry, a new seed
    assert metadata.shots[0].attempts[0].seed != metadata.shots[0].attempts[1].seed
    assert any(m.role == "animator" and "wan" in m.version.lower() for m in metadata.models)


def test_a_clip_that_keeps_the_face_is_delivered_as_mp4_and_poster(tmp_path, instance, astronaut_png):
    defs = build_defs(str(tmp_path / "home"))
    resources = {**defs.resources, "video": PushInVideo(models_dir="push-in")}
    order = _approved_portrait(defs, instance, astronaut_png)
    place, job = _living_portrait(resources, instance, order.id)
    assert job.state == JobState.READY, job.reason
    assert job.shot("clip").scores["lowest_frame_identity"] >= 0.36
    archive = place.store.get_bytes(JobKeys(job.id).export)
    shot = read_metadata(archive).shots[0]
    assert set(shot.files) == {"full", "2048", "1024", "mp4"}
    with zipfile.ZipFile(io.BytesIO(archive)) as zipped:
        frames = read_frames(zipped.read(shot.files["mp4"]))
        poster = Image.open(io.BytesIO(zipped.read(shot.files["full"])))
    assert len(frames) == 32 and poster.size == (frames[0].shape[1], frames[0].shape[0])
