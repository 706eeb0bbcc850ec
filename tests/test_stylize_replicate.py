"""The Replicate stylizer against a stateful fake of Replicate's API (tests/fake_replicate.py):
what it sends, what it returns, and that a retried step never pays twice."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image
from skimage import data

from photogen_pipelines.catalog import load_styles
from photogen_pipelines.engines import stylize_replicate
from photogen_pipelines.engines.base import MeteredStylizer, SeededStylizer, cosine
from photogen_pipelines.engines.predictions import MemoryPredictionJournal, SqlPredictionJournal, request_key
from photogen_pipelines.engines.remote import EngineUnavailable
from photogen_pipelines.engines.stylize_replicate import ReplicateStylizer
from photogen_pipelines.errors import BadInput, ModelError
from tests.fake_replicate import DEFAULT_MODEL, KLEIN, TOKEN, FakeModel, FakeReplicate, tinted

IMG2IMG = FakeModel("acme/img2img", "a1" * 32, image_input="input_image")  # takes any input name
NSFW = "NSFW content detected. Try running it again, or try a different prompt."


def style_params(*, num_outputs: bool = True, model: FakeModel = IMG2IMG) -> dict:
    """A style as the catalog hands it over (ReplicateStyleParams.model_dump())."""
    inputs = {
        "image": "input_image",
        "prompt": "prompt",
        "negative_prompt": "negative_prompt",
        "strength": "prompt_strength",
        "guidance_scale": "guidance_scale",
        "steps": "num_inference_steps",
        "seed": "seed",
    }
    if num_outputs:
        inputs["num_outputs"] = "num_outputs"
    return {
        "prompt": "a portrait as an oil painting",
        "negative_prompt": "blurry",
        "strength": 0.9,
        "ip_adapter_scale": 0.8,
        "controlnet_conditioning_scale": 0.8,
        "guidance_scale": 6.5,
        "lora": None,
        "lora_scale": 0.8,
        "replicate": {
            "model": model.name,
            "version": model.version,
            "inputs": inputs,
            "fixed": {"scheduler": "K_EULER", "apply_watermark": False},
        },
    }


def expected_fields(params: dict, strength: float, seed: int, count: int | None, steps: int | None) -> dict:
    """The input the stylizer should send, less the picture (what the journal key names)."""
    fields = {
        "prompt": params["prompt"],
        "negative_prompt": params["negative_prompt"],
        "prompt_strength": strength,
        "guidance_scale": params["guidance_scale"],
        "seed": seed,
        "scheduler": "K_EULER",
        "apply_watermark": False,
    }
    if steps is not None:
        fields["num_inference_steps"] = steps
    if count is not None:
        fields["num_outputs"] = count
    return fields


@pytest.fixture(scope="module")
def portrait() -> np.ndarray:
    """A real face, small and not square (160 x 200 px)."""
    return np.asarray(Image.fromarray(data.astronaut()).crop((96, 0, 416, 400)).resize((160, 200), Image.LANCZOS))


@pytest.fixture
def fake():
    with FakeReplicate(models=[IMG2IMG, DEFAULT_MODEL, KLEIN]) as api:
        yield api


@pytest.fixture(params=["memory", "sqlite"])
def journal(request, tmp_path):
    """The prediction journal: in memory, and in a real (migrated) SQLite orders database."""
    if request.param == "memory":
        yield MemoryPredictionJournal()
        return
    from photogen_pipelines.db.database import Database

    database = Database(f"sqlite:///{tmp_path / 'orders.db'}")
    database.migrate()
    yield SqlPredictionJournal(database)
    database.dispose()


def make(fake: FakeReplicate, journal=None, **kwargs) -> ReplicateStylizer:
    settings = {"poll_seconds": 0.01, "timeout_seconds": 30.0, **kwargs}
    return ReplicateStylizer(TOKEN, api_base=fake.url, journal=journal or MemoryPredictionJournal(), **settings)


def data_uri_picture(uri: str) -> np.ndarray:
    header, _, payload = uri.partition(",")
    assert header == "data:image/png;base64"
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(payload))))


def differs(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(float) - b.astype(float)).mean())


# -- what is sent, what comes back ----------------------------------------------------------


def test_is_a_seeded_and_metered_stylizer(fake):
    stylizer = make(fake)
    assert isinstance(stylizer, SeededStylizer) and isinstance(stylizer, MeteredStylizer)
    assert (stylizer.name, stylizer.params_section) == ("replicate", "replicate")


def test_one_prediction_carries_the_mapped_inputs_and_all_seeds(fake, portrait):
    params = style_params()
    decayed = 0.9 * 0.6  # the identity gate's second round
    pictures = make(fake, steps=20).stylize_variants(portrait, params, decayed, [11, 12, 13])

    [create] = fake.creates()
    assert create.headers["authorization"] == f"Bearer {TOKEN}"
    assert create.body["version"] == IMG2IMG.version
    sent = dict(create.body["input"])
    np.testing.assert_array_equal(data_uri_picture(sent.pop("input_image")), portrait)  # PNG: lossless
    assert sent == expected_fields(params, decayed, seed=11, count=3, steps=20)
    assert "ip_adapter_scale" not in sent and "strength" not in sent  # unmapped, and ours is not theirs

    assert len(pictures) == 3
    for index, picture in enumerate(pictures):
        assert picture.shape == portrait.shape and picture.dtype == np.uint8
        np.testing.assert_array_equal(picture, tinted(portrait, {"seed": 11}, index))
    assert differs(pictures[0], pictures[1]) > 1.0  # variants differ


def test_without_num_outputs_each_seed_is_its_own_prediction(fake, portrait):
    params = style_params(num_outputs=False)
    pictures = make(fake).stylize_variants(portrait, params, 0.9, [5, 6, 7])

    creates = fake.creates()
    assert [c.body["input"]["seed"] for c in creates] == [5, 6, 7]
    assert all("num_outputs" not in c.body["input"] and "num_inference_steps" not in c.body["input"] for c in creates)
    assert len(pictures) == 3
    for seed, picture in zip([5, 6, 7], pictures, strict=True):
        np.testing.assert_array_equal(picture, tinted(portrait, {"seed": seed}, 0))


def test_outputs_of_another_size_come_back_at_the_portraits_size(portrait):
    def square(picture, input, index):  # a model that renders 512 x 512 whatever it is given
        return np.full((512, 512, 3), 90 + 40 * index, dtype=np.uint8)

    with FakeReplicate(models=[IMG2IMG], render=square) as fake:
        pictures = make(fake).stylize_variants(portrait, style_params(), 0.9, [1, 2])
    assert [p.shape for p in pictures] == [portrait.shape] * 2
    assert pictures[0].mean() == pytest.approx(90, abs=1) and pictures[1].mean() == pytest.approx(130, abs=1)


def test_the_opt_in_instant_id_entry_is_still_a_valid_mapping(fake, face_images):
    """InstantID stays in the catalog as an opt-in model (non-commercial weights)."""
    from importlib import resources

    import yaml

    entry = yaml.safe_load(resources.files("photogen_pipelines.catalog").joinpath("styles.yaml").read_text())
    params = {**load_styles().get("starry_swirl").diffusion.model_dump(), "replicate": entry["replicate_models"]["instant_id"]}
    make(fake, steps=30).stylize_variants(face_images["obama"], params, 0.54, [3, 4])
    sent = fake.creates()[0].body["input"]
    assert sent["num_outputs"] == 2 and sent["seed"] == 3 and sent["num_inference_steps"] == 30
    assert sent["output_format"] == "png" and sent["enable_pose_controlnet"] is False


def test_the_catalogs_own_mapping_runs_and_keeps_the_likeness(fake, analyzer, face_images):
    """The catalog's default entry (FLUX.2 [klein] 4B, an official model) against a fake
    that accepts only that model's inputs; the default tint leaves the face recognisable,
    as the identity gate needs."""
    style = load_styles().get("starry_swirl")
    params = style.engine_params("replicate").model_dump()
    face = face_images["obama"]
    pictures = make(fake, steps=30).stylize_variants(face, params, 0.54, [3, 4])

    creates = fake.creates()
    assert [c.body["input"]["seed"] for c in creates] == [3, 4]  # one prediction per seed
    sent = creates[0].body["input"]
    assert len(sent["images"]) == 1 and sent["output_format"] == "png" and "num_inference_steps" not in sent
    assert creates[0].path == f"/v1/models/{KLEIN.name}/predictions"
    [reference_face] = analyzer.detect(face)
    reference = analyzer.embed(face, reference_face)
    for picture in pictures:
        found = analyzer.detect(picture)
        assert len(found) == 1
        assert cosine(reference, analyzer.embed(picture, found[0])) >= style.identity_threshold


def test_a_large_picture_goes_through_the_files_api(fake, portrait):
    stylizer = make(fake)
    stylizer.data_uri_max_bytes = 1_000  # the portrait's PNG is larger
    pictures = stylizer.stylize_variants(portrait, style_params(), 0.9, [1])

    [(file_id, png)] = fake.files.items()
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(png))), portrait)
    assert fake.creates()[0].body["input"]["input_image"] == f"{fake.url}/files/{file_id}"
    np.testing.assert_array_equal(pictures[0], tinted(portrait, {"seed": 1}, 0))


# -- never paying twice ------------------------------------------------------------------


def test_a_retried_call_after_success_reuses_the_prediction(fake, journal, portrait):
    params = style_params()
    first = make(fake, journal).stylize_variants(portrait, params, 0.9, [1, 2])
    again = make(fake, journal).stylize_variants(portrait, params, 0.9, [1, 2])  # a retried step, a new process

    assert fake.created == 1
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)
    # anything else asked (another strength) is another prediction
    make(fake, journal).stylize_variants(portrait, params, 0.54, [1, 2])
    assert fake.created == 2


def test_a_failed_prediction_is_retryable_and_the_retry_pays_for_exactly_one_more(fake, journal, portrait):
    params = style_params()
    fake.fail_next("CUDA error: an illegal memory access was encountered")
    with pytest.raises(EngineUnavailable) as failed:
        make(fake, journal).stylize_variants(portrait, params, 0.9, [1, 2])
    assert failed.value.code == "replicate_prediction_failed"
    assert "illegal memory access" in str(failed.value)
    assert fake.created == 1

    pictures = make(fake, journal).stylize_variants(portrait, params, 0.9, [1, 2])
    assert len(pictures) == 2 and fake.created == 2
    make(fake, journal).stylize_variants(portrait, params, 0.9, [1, 2])
    assert fake.created == 2


class WorkerDied(BaseException):
    """The run worker's process ending mid-call (not an exception the stylizer handles)."""


class DiesOnFirstPoll:
    """A requests session that lets the create through, then dies on the first poll."""

    def __init__(self, session):
        self.session = session

    def request(self, method, url, **kwargs):
        if method == "GET" and "/predictions/" in url:
            raise WorkerDied()
        return self.session.request(method, url, **kwargs)

    def get(self, url, **kwargs):
        return self.session.get(url, **kwargs)


def test_a_crash_between_create_and_finish_resumes_the_same_prediction(fake, journal, portrait):
    import requests

    params = style_params()
    key = request_key("replicate", f"{IMG2IMG.name}:{IMG2IMG.version}", portrait, expected_fields(params, 0.9, 4, 2, None))
    with pytest.raises(WorkerDied):
        make(fake, journal, session=DiesOnFirstPoll(requests.Session())).stylize_variants(portrait, params, 0.9, [4, 5])
    record = journal.find(key)
    assert record is not None and record.status == "starting"
    assert fake.created == 1 and record.prediction_id == next(iter(fake.predictions))

    stylizer = make(fake, journal, price_per_second=0.001)
    pictures = stylizer.stylize_variants(portrait, params, 0.9, [4, 5])
    assert len(pictures) == 2 and fake.created == 1 and fake.cancels == []
    record = journal.find(key)
    assert record.status == "succeeded" and record.predict_seconds == pytest.approx(2.5)
    usage = stylizer.take_usage()  # the resumed prediction is paid for once, here
    assert (usage.predictions, usage.reused, usage.predict_seconds) == (1, 0, pytest.approx(2.5))


def test_a_stalled_prediction_is_canceled_at_the_timeout_and_the_retry_runs_a_new_one(fake, journal, portrait):
    params = style_params()
    fake.stall_next()
    stylizer = make(fake, journal, timeout_seconds=0.3, poll_seconds=0.02)
    with pytest.raises(EngineUnavailable) as timed_out:
        stylizer.stylize_variants(portrait, params, 0.9, [1])
    assert timed_out.value.code == "replicate_timeout"
    assert fake.cancels == ["fake0001"] and fake.predictions["fake0001"].status == "canceled"
    usage = stylizer.take_usage()  # a canceled run is billed for the time it ran
    assert usage.predictions == 1 and usage.predict_seconds == pytest.approx(1.0)

    pictures = make(fake, journal).stylize_variants(portrait, params, 0.9, [1])
    assert len(pictures) == 1 and fake.created == 2


def test_outputs_deleted_since_the_run_are_rendered_again(fake, journal, portrait):
    params = style_params()
    make(fake, journal).stylize_variants(portrait, params, 0.9, [1])
    fake.remove_data("fake0001")  # Replicate deletes outputs an hour after the run
    stylizer = make(fake, journal)
    pictures = stylizer.stylize_variants(portrait, params, 0.9, [1])
    assert len(pictures) == 1 and fake.created == 2
    assert stylizer.take_usage().reused == 0


# -- errors ------------------------------------------------------------------------------


def test_rate_limits_are_waited_out_as_retry_after_says(fake, portrait, monkeypatch):
    waits: list[float] = []
    monkeypatch.setattr(stylize_replicate, "_sleep", waits.append)
    fake.rate_limit(2, retry_after="3")
    make(fake, poll_seconds=0.5).stylize_variants(portrait, style_params(), 0.9, [1])
    assert waits[:2] == [3.0, 3.0] and set(waits[2:]) == {0.5}  # then the polls
    assert fake.created == 1

    waits.clear()
    fake.rate_limit(3, retry_after=None)  # no Retry-After: 1, 2, 4 s
    make(fake, poll_seconds=0.5).stylize_variants(portrait, style_params(), 0.8, [1])
    assert waits[:3] == [1.0, 2.0, 4.0] and fake.created == 2


def test_a_rate_limit_that_does_not_lift_is_a_retryable_error(fake, portrait, monkeypatch):
    monkeypatch.setattr(stylize_replicate, "_sleep", lambda seconds: None)
    fake.rate_limit(10)
    with pytest.raises(EngineUnavailable) as limited:
        make(fake, max_rate_limit_waits=2).stylize_variants(portrait, style_params(), 0.9, [1])
    assert limited.value.code == "replicate_rate_limited"
    assert fake.created == 0 and len(fake.requests) == 3


def test_an_nsfw_refusal_is_the_customers_bad_input_and_the_other_seeds_are_canceled(fake, portrait):
    fake.fail_next(NSFW)
    with pytest.raises(BadInput) as refused:
        make(fake).stylize_variants(portrait, style_params(num_outputs=False), 0.9, [1, 2, 3])
    assert refused.value.code == "content_refused"
    assert "NSFW content detected" in str(refused.value)
    assert sorted(fake.cancels) == ["fake0002", "fake0003"]


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (401, "replicate_auth_failed"),
        (403, "replicate_auth_failed"),
        (402, "replicate_billing"),
        (422, "replicate_invalid_input"),
    ],
)
def test_refusals_are_not_retryable_and_say_why(fake, portrait, status, code):
    fake.answer_next(status)
    with pytest.raises(ModelError) as refused:
        make(fake).stylize_variants(portrait, style_params(), 0.9, [1])
    assert refused.value.code == code and not isinstance(refused.value, EngineUnavailable)
    assert fake.created == 0


@pytest.mark.parametrize("token", ["r8_not_the_token", ""])
def test_a_wrong_or_missing_token_is_an_auth_failure(fake, portrait, token):
    stylizer = ReplicateStylizer(token, api_base=fake.url, journal=MemoryPredictionJournal())
    with pytest.raises(ModelError) as refused:
        stylizer.stylize_variants(portrait, style_params(), 0.9, [1])
    assert refused.value.code == "replicate_auth_failed" and not isinstance(refused.value, EngineUnavailable)
    assert "r8_not_the_token" not in str(refused.value) and fake.created == 0


def test_an_input_the_model_does_not_take_is_invalid_input(fake, portrait):
    params = style_params(model=DEFAULT_MODEL)  # instant-id takes none of prompt_strength, scheduler...
    with pytest.raises(ModelError) as refused:
        make(fake).stylize_variants(portrait, params, 0.9, [1])
    assert refused.value.code == "replicate_invalid_input" and not isinstance(refused.value, EngineUnavailable)
    assert "is not allowed" in str(refused.value) and fake.created == 0


@pytest.mark.parametrize("status", [500, 502, 503])
def test_server_errors_are_retryable(fake, portrait, status):
    fake.answer_next(status)
    with pytest.raises(EngineUnavailable):
        make(fake).stylize_variants(portrait, style_params(), 0.9, [1])
    assert len(make(fake).stylize_variants(portrait, style_params(), 0.9, [1])) == 1


def test_an_unreachable_api_is_retryable(portrait):
    with FakeReplicate() as gone:
        url = gone.url
    with pytest.raises(EngineUnavailable):
        ReplicateStylizer(TOKEN, api_base=url, journal=MemoryPredictionJournal()).stylize_variants(
            portrait, style_params(), 0.9, [1]
        )


def test_a_style_without_a_replicate_model_is_a_configuration_error(fake, portrait):
    params = style_params()
    del params["replicate"]
    with pytest.raises(ModelError) as bad:
        make(fake).stylize_variants(portrait, params, 0.9, [1])
    assert bad.value.code == "replicate_bad_config" and fake.created == 0


# -- usage -------------------------------------------------------------------------------


def test_usage_counts_predictions_seconds_and_cost_and_resets_when_taken(fake, portrait):
    stylizer = make(fake, price_per_second=0.000725, price_per_prediction=0.01)
    params = style_params(num_outputs=False)
    stylizer.stylize_variants(portrait, params, 0.9, [1, 2, 3])
    usage = stylizer.take_usage()
    assert usage.backend == "replicate"
    assert (usage.predictions, usage.reused) == (3, 0)
    assert usage.predict_seconds == pytest.approx(7.5) and usage.seconds == pytest.approx(7.5)
    assert usage.cost_usd == pytest.approx(7.5 * 0.000725 + 3 * 0.01)
    assert stylizer.take_usage().cost_usd == 0.0 and stylizer.take_usage().predictions == 0

    stylizer.stylize_variants(portrait, params, 0.9, [1, 2, 3])  # a retried round: all reused
    usage = stylizer.take_usage()
    assert (usage.predictions, usage.reused, usage.cost_usd) == (0, 3, 0.0)
