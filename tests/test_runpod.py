"""PhotoGen on RunPod Serverless: the worker (deploy/runpod/handler.py) on the CPU with tiny
random-weight models, and the engines that call it (photogen_pipelines/engines/runpod.py)
through a fake RunPod endpoint (tests/fake_runpod.py) that runs that same handler."""

from __future__ import annotations

import base64
import importlib.util
import io
import os
import time
from pathlib import Path

import numpy as np
import pytest
import requests
import torch  # the dev extra installs the gpu extra: these tests always run
from PIL import Image
from skimage import data

from photogen_pipelines.devtools.tiny_models import write_tiny_models
from photogen_pipelines.engines.base import MeteredStylizer, SeededStylizer
from photogen_pipelines.engines.predictions import MemoryPredictionJournal, PredictionRecord, request_key
from photogen_pipelines.engines.remote import EngineUnavailable
from photogen_pipelines.engines.runpod import RunPodStylizer, RunPodUpscaler
from photogen_pipelines.errors import ModelError
from photogen_pipelines.imaging.images import png_bytes
from tests.fake_runpod import FakeRunPod

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")  # diffusers' Euler, numpy 2
HANDLER = Path(__file__).resolve().parents[1] / "deploy" / "runpod" / "handler.py"
PRICE = 0.00044  # an L4's flex price per second
STYLE = {
    "prompt": "an oil painting, thick brush strokes",
    "negative_prompt": "blurry",
    "strength": 0.5,
    "ip_adapter_scale": 0.8,
    "controlnet_conditioning_scale": 0.8,
    "guidance_scale": 5.0,
    "lora": None,
    "lora_scale": 0.8,
}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models gain nothing from threads; on a busy 2-core machine torch's spinning
    worker threads only slow them down."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def worker(tmp_path_factory):
    """deploy/runpod/handler.py as RunPod starts it: its environment names the models
    folder and the device, and it loads its engines once (here before the first test)."""
    models = write_tiny_models(tmp_path_factory.mktemp("models") / "tiny")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("PHOTOGEN_MODELS_DIR", str(models))
        env.setenv("PHOTOGEN_DEVICE", "cpu")
        env.delenv("PHOTOGEN_RUNPOD_OUTPUT_BUCKET", raising=False)
        env.delenv("PHOTOGEN_RUNPOD_MAX_OUTPUT_MB", raising=False)
        spec = importlib.util.spec_from_file_location("photogen_runpod_worker", HANDLER)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        module.engines()
        yield module


@pytest.fixture(scope="module")
def portrait() -> np.ndarray:
    """A small photo (the tiny face detector finds a "face" on its reddest patch)."""
    return np.asarray(Image.fromarray(data.astronaut()).resize((48, 64), Image.LANCZOS))


@pytest.fixture
def fake(worker):
    with FakeRunPod(worker.handler) as endpoint:
        yield endpoint


def b64(image: np.ndarray) -> str:
    return base64.b64encode(png_bytes(image)).decode("ascii")


def decoded(value: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(value))).convert("RGB"))


def engine(cls, fake: FakeRunPod, journal=None, **options):
    options = {"poll_seconds": 0.02, "price_per_second": PRICE, "timeout_seconds": 60.0, **options}
    return cls(fake.api_key, fake.endpoint_id, api_base=fake.api_base, journal=journal or MemoryPredictionJournal(), **options)


def executed_seconds(fake: FakeRunPod) -> float:
    return sum(job.execution_ms or 0 for job in fake.jobs.values()) / 1000


# --- the worker itself


def test_the_worker_paints_one_picture_per_seed_at_the_inputs_size(worker, portrait):
    job = {"id": "job-1", "input": {"task": "stylize", "image": b64(portrait), "params": STYLE, "strength": 0.5, "seeds": [1, 2]}}
    out = worker.handler(job)
    assert set(out) == {"images", "engine", "seconds"}, out.get("error")
    assert [decoded(image).shape for image in out["images"]] == [portrait.shape] * 2
    assert out["engine"]["name"] == "instantid-diffusers" and "sdxl+instantid" in out["engine"]["version"]
    assert out["seconds"] > 0
    again = worker.handler(job)  # each picture depends on its seed: a re-run reproduces it
    assert np.array_equal(decoded(again["images"][1]), decoded(out["images"][1]))
    assert not np.array_equal(decoded(out["images"][0]), decoded(out["images"][1]))


@pytest.mark.parametrize("scale", [2, 4])
def test_the_worker_upscales_x2_and_x4(worker, portrait, scale):
    small = portrait[:24, :20]
    out = worker.handler({"id": "job-up", "input": {"task": "upscale", "image": b64(small), "scale": scale}})
    assert set(out) == {"images", "engine", "seconds"}, out.get("error")
    assert decoded(out["images"][0]).shape == (24 * scale, 20 * scale, 3)
    assert out["engine"]["name"] == "realesrgan-torch" and "x4" in out["engine"]["version"]


@pytest.mark.parametrize(
    ("job_input", "says"),
    [
        (None, "no input"),
        ({"task": "paint"}, "task must be one of"),
        ({"task": "upscale", "image": "%%%", "scale": 4}, "not valid base64"),
        ({"task": "upscale", "image": base64.b64encode(b"GIF89a....").decode(), "scale": 4}, "must be a PNG"),
        ({"task": "upscale", "scale": 4}, "base64-encoded PNG"),
        ({"task": "upscale", "image": "PORTRAIT", "scale": 8}, "scale must be one of [2, 3, 4]"),
        ({"task": "upscale", "image": "PORTRAIT", "scale": True}, "scale must be one of"),
        ({"task": "stylize", "image": "PORTRAIT", "params": "oil", "strength": 0.5, "seeds": [1]}, "params must be"),
        ({"task": "stylize", "image": "PORTRAIT", "params": STYLE, "strength": 0, "seeds": [1]}, "strength must be"),
        ({"task": "stylize", "image": "PORTRAIT", "params": STYLE, "strength": 0.5, "seeds": []}, "seeds must be"),
        ({"task": "stylize", "image": "PORTRAIT", "params": STYLE, "strength": 0.5, "seeds": ["1"]}, "seeds must be"),
        ({"task": "stylize", "image": "PORTRAIT", "params": {"prompt": ""}, "strength": 0.5, "seeds": [1]}, "prompt"),
    ],
)
def test_bad_input_fails_the_job_with_a_reason(worker, portrait, job_input, says):
    if isinstance(job_input, dict) and job_input.get("image") == "PORTRAIT":
        job_input = {**job_input, "image": b64(portrait[:16, :16])}
    out = worker.handler({"id": "job-bad", "input": job_input})
    assert list(out) == ["error"] and says in out["error"]


def test_an_output_past_the_payload_bound_fails_without_a_bucket(worker, portrait, monkeypatch):
    monkeypatch.setenv("PHOTOGEN_RUNPOD_MAX_OUTPUT_MB", "0.0001")
    out = worker.handler({"id": "job-big", "input": {"task": "upscale", "image": b64(portrait[:16, :16]), "scale": 4}})
    assert list(out) == ["error"] and "output_too_large" in out["error"] and "PHOTOGEN_RUNPOD_OUTPUT_BUCKET" in out["error"]


def test_large_outputs_travel_as_links_to_the_bucket(worker, fake, portrait, monkeypatch, tmp_path):
    """Past the bound the worker leaves its pictures in S3 (moto here) and returns presigned
    links; the upscaler fetches them without sending its RunPod key."""
    from tests.servers import moto_s3_server

    with moto_s3_server(tmp_path) as s3:
        for name, value in {
            "AWS_ENDPOINT_URL_S3": s3,
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_DEFAULT_REGION": "us-east-1",
        }.items():
            monkeypatch.setenv(name, value)
        monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
        import boto3

        boto3.client("s3", endpoint_url=s3).create_bucket(Bucket="runpod-out")
        monkeypatch.setenv("PHOTOGEN_RUNPOD_MAX_OUTPUT_MB", "0.0001")
        monkeypatch.setenv("PHOTOGEN_RUNPOD_OUTPUT_BUCKET", "s3://runpod-out/photogen")
        upscaler = engine(RunPodUpscaler, fake)
        sent = []
        real_get = upscaler.client.session.get
        upscaler.client.session.get = lambda url, **kw: sent.append((url, kw)) or real_get(url, **kw)
        big = upscaler.upscale(portrait[:16, :16], 4)
    assert big.shape == (64, 64, 3)
    (job,) = fake.jobs.values()
    assert "images" not in job.output and job.output["image_urls"][0].startswith(s3 + "/runpod-out/photogen/runpod-outputs/")
    assert [url for url, _ in sent] == job.output["image_urls"]
    assert all("Authorization" not in (kw.get("headers") or {}) for _, kw in sent)
    assert "Authorization" not in upscaler.client.session.headers


# --- the engines, through the fake endpoint


def test_the_stylizer_renders_a_round_in_one_job_and_meters_it(worker, fake, portrait):
    journal = MemoryPredictionJournal()
    stylizer = engine(RunPodStylizer, fake, journal)
    assert isinstance(stylizer, SeededStylizer) and isinstance(stylizer, MeteredStylizer)
    assert stylizer.name == "runpod" and stylizer.params_section == "diffusion" and fake.endpoint_id in stylizer.version
    pictures = stylizer.stylize_variants(portrait, STYLE, 0.5, [1, 2])
    assert [p.shape for p in pictures] == [portrait.shape] * 2 and pictures[0].dtype == np.uint8
    local = worker.handler(
        {"id": "x", "input": {"task": "stylize", "image": b64(portrait), "params": STYLE, "strength": 0.5, "seeds": [1, 2]}}
    )
    assert all(np.array_equal(p, decoded(q)) for p, q in zip(pictures, local["images"], strict=True))  # the real engine's
    assert stylizer.worker_engine["name"] == "instantid-diffusers"

    (submitted,) = fake.submissions
    assert {k: v for k, v in submitted.items() if k != "image"} == {
        "task": "stylize",
        "params": STYLE,
        "strength": 0.5,
        "seeds": [1, 2],
    }
    assert fake.seen[0][2]["authorization"] == f"Bearer {fake.api_key}"
    usage = stylizer.take_usage()
    seconds = executed_seconds(fake)
    assert usage.backend == "runpod" and usage.predictions == 1 and usage.reused == 0
    assert usage.seconds == pytest.approx(seconds) and usage.predict_seconds == pytest.approx(seconds) and seconds > 0
    assert usage.cost_usd == pytest.approx(seconds * PRICE)
    assert stylizer.take_usage().predictions == 0  # taken: reset
    (job,) = fake.jobs.values()
    fields = {"task": "stylize", "params": STYLE, "strength": 0.5, "seeds": [1, 2]}
    key = request_key("runpod", fake.endpoint_id, portrait, fields)
    record = journal.find(key)
    assert (record.prediction_id, record.status) == (job.id, "succeeded")
    assert record.predict_seconds == pytest.approx(seconds) and record.cost_usd == pytest.approx(seconds * PRICE)

    one = stylizer.stylize(portrait, STYLE, 0.5)  # the one-seed case: a seed from its inputs
    assert one.shape == portrait.shape and len(fake.submissions) == 2


def test_the_upscaler_offers_the_configured_scales_and_is_metered(worker, fake, portrait):
    upscaler = engine(RunPodUpscaler, fake)
    assert upscaler.scales == (2, 4) and upscaler.name == "runpod"
    small = portrait[:20, :24]
    assert upscaler.upscale(small, 2).shape == (40, 48, 3)
    assert upscaler.upscale(small, 4).shape == (80, 96, 3)
    with pytest.raises(ValueError, match="supports scales"):
        upscaler.upscale(small, 3)
    assert len(fake.submissions) == 2
    usage = upscaler.take_usage()
    assert usage.predictions == 2 and usage.seconds == pytest.approx(executed_seconds(fake))
    assert engine(RunPodUpscaler, fake, scales=(4,)).scales == (4,)


def test_a_failed_job_is_submitted_again_and_a_succeeded_one_is_never_paid_twice(worker, fake, portrait):
    journal = MemoryPredictionJournal()
    stylizer = engine(RunPodStylizer, fake, journal)
    fake.fail_next = 1
    with pytest.raises(ModelError, match="OutOfMemoryError: CUDA out of memory") as failed:
        stylizer.stylize_variants(portrait, STYLE, 0.5, [3])
    assert failed.value.code == "runpod_job_failed" and not isinstance(failed.value, EngineUnavailable)
    assert stylizer.take_usage().predictions == 1  # a failed job is paid for too
    first = stylizer.stylize_variants(portrait, STYLE, 0.5, [3])  # the step's retry
    assert len(fake.submissions) == 2
    paid = stylizer.take_usage()
    assert paid.predictions == 1 and paid.cost_usd > 0

    again = engine(RunPodStylizer, fake, journal).stylize_variants(portrait, STYLE, 0.5, [3])  # a later retry, a new process
    assert len(fake.submissions) == 2  # read back from RunPod, not run again
    assert np.array_equal(again[0], first[0])
    statuses = [path for method, path, _ in fake.seen if method == "GET"]
    assert statuses[-1].startswith(f"/v2/{fake.endpoint_id}/status/")
    assert stylizer.take_usage().predictions == 0

    fake.forget_finished()  # RunPod keeps a /run result 30 minutes: past that it runs again
    reader = engine(RunPodStylizer, fake, journal)
    assert np.array_equal(reader.stylize_variants(portrait, STYLE, 0.5, [3])[0], first[0])
    assert len(fake.submissions) == 3
    assert reader.take_usage().predictions == 1


def test_a_reused_result_is_metered_as_reused(worker, fake, portrait):
    journal = MemoryPredictionJournal()
    engine(RunPodUpscaler, fake, journal).upscale(portrait[:8, :8], 4)
    again = engine(RunPodUpscaler, fake, journal)
    again.upscale(portrait[:8, :8], 4)
    usage = again.take_usage()
    assert (usage.predictions, usage.reused, usage.seconds, usage.cost_usd) == (0, 1, 0.0, 0.0)
    assert len(fake.submissions) == 1


def test_a_step_that_died_while_its_job_ran_waits_for_that_job(worker, fake, portrait):
    """The journal says a job is running (its step's process died): the retry polls it."""
    journal = MemoryPredictionJournal()
    small = portrait[:12, :12]
    fields = {"task": "upscale", "scale": 4}
    answer = requests.post(
        f"{fake.api_base}/{fake.endpoint_id}/run",
        json={"input": {"image": b64(small), **fields}},
        headers={"Authorization": f"Bearer {fake.api_key}"},
        timeout=10,
    ).json()
    key = request_key("runpod", fake.endpoint_id, small, fields)
    journal.save(PredictionRecord(key=key, provider="runpod", prediction_id=answer["id"], status="processing"))
    upscaler = engine(RunPodUpscaler, fake, journal)
    assert upscaler.upscale(small, 4).shape == (48, 48, 3)
    assert len(fake.submissions) == 1  # the crashed step's job, not a second one
    assert journal.find(key).status == "succeeded"
    assert upscaler.take_usage().predictions == 1  # its cost was never taken by the dead step


def test_a_lost_status_answer_is_retryable_and_the_retry_resumes(worker, fake, portrait):
    journal = MemoryPredictionJournal()
    small = portrait[:12, :12]
    fake.status_errors_next = 1
    with pytest.raises(EngineUnavailable) as lost:
        engine(RunPodUpscaler, fake, journal).upscale(small, 2)
    assert lost.value.code == "runpod_unavailable" and "503" in str(lost.value)
    assert journal.find(request_key("runpod", fake.endpoint_id, small, {"task": "upscale", "scale": 2})).status == "starting"
    assert engine(RunPodUpscaler, fake, journal).upscale(small, 2).shape == (24, 24, 3)
    assert len(fake.submissions) == 1


def test_rate_limits_are_waited_out_then_reported_as_retryable(worker, fake, portrait):
    small = portrait[:8, :8]
    fake.rate_limit_next, fake.retry_after = 2, "0"
    assert engine(RunPodUpscaler, fake).upscale(small, 4).shape == (32, 32, 3)
    assert len(fake.submissions) == 1
    assert sum(1 for method, path, _ in fake.seen if path.endswith("/run")) == 3  # two 429s, then the job

    fake.rate_limit_next, fake.retry_after = 1, "1"  # RunPod's Retry-After is honoured
    started = time.monotonic()
    engine(RunPodUpscaler, fake).upscale(portrait[:8, :9], 4)
    assert time.monotonic() - started >= 0.9

    fake.rate_limit_next, fake.retry_after = 10, None  # no Retry-After: exponential backoff from poll_seconds
    with pytest.raises(EngineUnavailable) as limited:
        engine(RunPodUpscaler, fake, max_rate_limit_waits=2).upscale(portrait[:9, :8], 4)
    assert limited.value.code == "runpod_rate_limited"
    assert len(fake.submissions) == 2  # the limited job was never submitted
    fake.rate_limit_next = 0


def test_a_job_past_the_timeout_is_cancelled_and_retryable(worker, fake, portrait):
    journal = MemoryPredictionJournal()
    small = portrait[:8, :8]
    fake.stall_next = 1
    started = time.monotonic()
    with pytest.raises(EngineUnavailable) as timed_out:
        engine(RunPodUpscaler, fake, journal, timeout_seconds=0.5).upscale(small, 4)
    assert timed_out.value.code == "runpod_timeout" and time.monotonic() - started < 10
    (job,) = fake.jobs.values()
    assert fake.cancels == [job.id] and job.status == "CANCELLED"
    assert journal.find(request_key("runpod", fake.endpoint_id, small, {"task": "upscale", "scale": 4})).status == "canceled"
    assert engine(RunPodUpscaler, fake, journal).upscale(small, 4).shape == (32, 32, 3)  # the retry submits anew
    assert len(fake.submissions) == 2


def test_a_job_runpod_timed_out_is_retryable(worker, fake, portrait):
    fake.time_out_next = 1
    with pytest.raises(EngineUnavailable) as timed_out:
        engine(RunPodUpscaler, fake).upscale(portrait[:8, :8], 4)
    assert timed_out.value.code == "runpod_timeout" and "timed job" in str(timed_out.value)


def test_bad_input_on_the_worker_is_a_failed_job_with_its_reason(worker, fake, portrait):
    with pytest.raises(ModelError, match="bad input: strength must be") as failed:
        engine(RunPodStylizer, fake).stylize_variants(portrait, STYLE, 1.5, [1])
    assert failed.value.code == "runpod_job_failed"


def test_a_handler_exception_is_reported_with_its_type_and_message():
    def broken(job):
        raise RuntimeError("the models folder is empty")

    with FakeRunPod(broken) as endpoint:
        with pytest.raises(ModelError, match="RuntimeError: the models folder is empty") as failed:
            engine(RunPodUpscaler, endpoint).upscale(np.zeros((8, 8, 3), np.uint8), 4)
    assert failed.value.code == "runpod_job_failed" and "Traceback" not in str(failed.value)


def test_a_refused_key_and_an_unknown_endpoint_are_not_retryable(fake, portrait):
    small = portrait[:8, :8]
    journal = MemoryPredictionJournal()
    with pytest.raises(ModelError) as refused:
        RunPodUpscaler("not-the-key", fake.endpoint_id, api_base=fake.api_base, journal=journal).upscale(small, 4)
    assert refused.value.code == "runpod_auth_failed" and not isinstance(refused.value, EngineUnavailable)
    assert "not-the-key" not in str(refused.value)
    with pytest.raises(ModelError) as unknown:
        RunPodUpscaler(fake.api_key, "no-such-endpoint", api_base=fake.api_base, journal=journal).upscale(small, 4)
    assert unknown.value.code == "runpod_endpoint_not_found" and not isinstance(unknown.value, EngineUnavailable)
    with pytest.raises(ModelError) as no_key:
        RunPodStylizer("", fake.endpoint_id, journal=MemoryPredictionJournal())
    assert no_key.value.code == "runpod_auth_failed"
    assert fake.submissions == []


def test_a_job_past_runpods_payload_limit_is_refused_before_it_is_sent(fake):
    noise = np.random.default_rng(0).integers(0, 256, (1900, 1900, 3), dtype=np.uint8)  # ~14 MB as base64 PNG
    with pytest.raises(ModelError) as too_large:
        engine(RunPodUpscaler, fake).upscale(noise, 2)
    assert too_large.value.code == "runpod_payload_too_large" and "10 MB" in str(too_large.value)
    assert fake.seen == []


def test_runsync_answers_short_jobs_in_the_request(worker, fake, portrait):
    upscaler = engine(RunPodUpscaler, fake, sync=True)
    assert upscaler.upscale(portrait[:8, :8], 4).shape == (32, 32, 3)
    assert [(method, path.rsplit("/", 1)[-1]) for method, path, _ in fake.seen] == [("POST", "runsync")]
    (job,) = fake.jobs.values()
    assert job.id.startswith("sync-") and upscaler.take_usage().seconds == pytest.approx(job.execution_ms / 1000)

    fake.runsync_wait_seconds, fake.queue_seconds = 0.0, 0.3  # still queued when /runsync answers: polled
    assert upscaler.upscale(portrait[:8, :9], 4).shape == (32, 36, 3)
    assert any(path.startswith(f"/v2/{fake.endpoint_id}/status/sync-") for _, path, _ in fake.seen)


def test_the_handler_file_imports_runpod_only_as_the_workers_command():
    source = HANDLER.read_text()
    assert source.count("import runpod") == 1
    assert source.index("import runpod") > source.index('if __name__ == "__main__":')
    assert "PHOTOGEN_MODELS_DIR" in source and os.path.isfile(HANDLER.with_name("Dockerfile"))
