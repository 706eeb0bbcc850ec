"""The hosted reference models: FLUX.2 [klein] on Replicate (engines/stylize_replicate.py)
and Qwen-Image-Edit-2511 on RunPod's public endpoint (engines/runpod_qwen_edit.py).

Both run against fakes that speak each provider's documented protocol over real HTTP on
loopback (tests/fake_replicate.py, tests/fake_runpod.py + tests/fake_runpod_qwen.py): the
real APIs cannot be reached from here, and every real picture costs money. What is checked:
every reference photo is sent, the size asked for is sent as the model's own aspect or
size, each picture's cost lands in the usage, a retried step never pays twice, and a
refused key or a failed job is a clear error with a stable code."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image
from skimage import data

from photogen_pipelines.catalog import load_styles
from photogen_pipelines.engines.base import MeteredStylizer, ReferenceStylizer, SeededStylizer
from photogen_pipelines.engines.predictions import MemoryPredictionJournal
from photogen_pipelines.engines.reference_inputs import KEEP_FACE, nearest_ratio, nearest_size
from photogen_pipelines.engines.remote import EngineUnavailable
from photogen_pipelines.engines.runpod_qwen_edit import ENDPOINT_ID, SIZES, RunPodQwenEditStylizer
from photogen_pipelines.engines.stylize_replicate import ReplicateStylizer
from photogen_pipelines.errors import ModelError
from tests.fake_replicate import KLEIN, TOKEN, FakeReplicate
from tests.fake_runpod_qwen import QwenEditWorker, qwen_endpoint

STYLE = load_styles().get("sepia_oil")


@pytest.fixture(scope="module")
def photos() -> list[np.ndarray]:
    """Three different photos of one sitting (crops of a real face), not square."""
    face = data.astronaut()
    crops = [(96, 0, 416, 400), (80, 10, 400, 410), (110, 0, 430, 400)]
    return [np.asarray(Image.fromarray(face).crop(box).resize((64, 80), Image.LANCZOS)) for box in crops]


def decoded(uri: str) -> np.ndarray:
    header, _, payload = uri.partition(",")
    assert header == "data:image/png;base64"
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(payload))).convert("RGB"))


# -- choosing the model's size ---------------------------------------------------------------


def test_the_nearest_aspect_and_size_are_chosen_on_a_log_scale():
    ratios = STYLE.replicate.aspect_ratios
    assert nearest_ratio((2400, 3000), ratios) == "4:5"  # an 8 x 10 in print
    assert nearest_ratio((1900, 3000), ratios) == "2:3" and nearest_ratio((2200, 3000), ratios) == "3:4"
    assert nearest_ratio((3000, 2000), ratios) == "3:2"  # landscape
    assert nearest_ratio((1000, 1000), ratios) == "1:1"
    assert nearest_size((2400, 3000), SIZES) == (1024, 1280)
    assert nearest_size((1000, 1000), SIZES) == (1280, 1280)  # of the square ones, the larger
    assert nearest_size((3000, 2000), SIZES) == (1536, 1080)
    stylizer = RunPodQwenEditStylizer("rp-key", journal=MemoryPredictionJournal())
    assert stylizer.size_for(0.8) == (1024, 1280)  # a documented size: asked as it is
    width, height = stylizer.size_for(2480 / 3508)  # A4: the pixels of 1024*1280, at A4's aspect
    assert abs(width / height - 2480 / 3508) < 0.02 and abs(width * height - 1024 * 1280) < 0.03 * 1024 * 1280


# -- Replicate: FLUX.2 [klein], an official model --------------------------------------------


@pytest.fixture
def replicate():
    with FakeReplicate(models=[KLEIN]) as api:
        yield api


def klein(api: FakeReplicate, journal=None, **options) -> ReplicateStylizer:
    options = {"poll_seconds": 0.01, "timeout_seconds": 30.0, **options}
    return ReplicateStylizer(TOKEN, api_base=api.url, journal=journal or MemoryPredictionJournal(), **options)


def params(style=STYLE) -> dict:
    return style.engine_params("replicate").model_dump()


def test_klein_gets_every_photo_and_the_aspect_by_name_one_prediction_per_seed(replicate, photos):
    stylizer = klein(replicate)
    assert isinstance(stylizer, ReferenceStylizer) and isinstance(stylizer, SeededStylizer)
    pictures = stylizer.paint_from_references(photos, params(), 0.85, [7, 8], (400, 500))

    creates = replicate.creates()
    assert [c.path for c in creates] == ["/v1/models/black-forest-labs/flux-2-klein-4b/predictions"] * 2
    for create, seed in zip(creates, [7, 8], strict=True):
        assert "version" not in create.body  # an official model runs by name
        sent = create.body["input"]
        assert [decoded(uri).tolist() for uri in sent["images"]] == [photo.tolist() for photo in photos]  # all, in order
        assert sent["aspect_ratio"] == "4:5" and sent["seed"] == seed and sent["output_format"] == "png"
        assert sent["prompt"] == STYLE.diffusion.prompt and KEEP_FACE not in sent["prompt"]
    assert [p.shape for p in pictures] == [(500, 400, 3)] * 2

    usage = stylizer.take_usage()  # priced per picture, by the catalog's model entry
    assert (usage.predictions, usage.reused) == (2, 0)
    assert usage.cost_usd == pytest.approx(2 * STYLE.replicate.price_per_image) and usage.cost_usd > 0


def test_klein_takes_at_most_its_max_images_the_primary_first(replicate, photos):
    many = [photos[0], *photos[1:], *photos[1:], *photos[1:]]  # seven photos
    klein(replicate).paint_from_references(many, params(), 0.85, [1], (500, 500))
    sent = replicate.creates()[0].body["input"]["images"]
    assert len(sent) == STYLE.replicate.max_images == 5
    assert np.array_equal(decoded(sent[0]), photos[0])


def test_a_portrait_through_stylize_variants_is_klein_s_one_reference(replicate, photos):
    pictures = klein(replicate).stylize_variants(photos[0], params(), 0.85, [3])
    sent = replicate.creates()[0].body["input"]
    assert len(sent["images"]) == 1 and sent["aspect_ratio"] == "4:5"  # 64 x 80
    assert pictures[0].shape == photos[0].shape


def test_klein_retried_never_pays_twice_and_a_lower_strength_asks_to_keep_the_face(replicate, photos):
    journal = MemoryPredictionJournal()
    first = klein(replicate, journal).paint_from_references(photos, params(), 0.85, [1, 2], (400, 500))
    retry = klein(replicate, journal)  # the step run again, in a new process
    again = retry.paint_from_references(photos, params(), 0.85, [1, 2], (400, 500))
    assert replicate.created == 2
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    usage = retry.take_usage()
    assert (usage.predictions, usage.reused, usage.cost_usd) == (0, 2, 0.0)

    klein(replicate, journal).paint_from_references(photos[:2], params(), 0.85, [1], (400, 500))
    assert replicate.created == 3  # other photos: another request
    klein(replicate, journal).paint_from_references(photos, params(), 0.85 * 0.6, [1], (400, 500))
    assert replicate.created == 4 and replicate.creates()[-1].body["input"]["prompt"].endswith(KEEP_FACE)


def test_klein_refused_key_and_failed_prediction_have_stable_codes(replicate, photos):
    wrong = ReplicateStylizer("r8_wrong", api_base=replicate.url, journal=MemoryPredictionJournal())
    with pytest.raises(ModelError) as refused:
        wrong.paint_from_references(photos, params(), 0.85, [1], (400, 500))
    assert refused.value.code == "replicate_auth_failed" and not isinstance(refused.value, EngineUnavailable)

    replicate.fail_next("CUDA out of memory")
    stylizer = klein(replicate)
    with pytest.raises(EngineUnavailable) as failed:
        stylizer.paint_from_references(photos, params(), 0.85, [1], (400, 500))
    assert failed.value.code == "replicate_prediction_failed" and "CUDA out of memory" in str(failed.value)
    assert stylizer.take_usage().cost_usd == 0.0  # no picture made, none paid per picture


def test_an_aspect_the_model_does_not_offer_is_invalid_input(replicate, photos):
    style = params()
    style["replicate"]["aspect_ratios"] = ["7:5"]
    with pytest.raises(ModelError) as refused:
        klein(replicate).paint_from_references(photos, style, 0.85, [1], (700, 500))
    assert refused.value.code == "replicate_invalid_input" and "aspect_ratio" in str(refused.value)


def test_a_one_picture_model_gets_the_primary_photo_alone(photos):
    """InstantID stays an opt-in entry: a style on it paints from the primary photo only."""
    from tests.fake_replicate import DEFAULT_MODEL

    style = params()
    style["replicate"] = {
        "model": DEFAULT_MODEL.name,
        "version": DEFAULT_MODEL.version,
        "inputs": {"image": "image", "seed": "seed"},
    }
    with FakeReplicate(models=[DEFAULT_MODEL]) as api:
        pictures = klein(api).paint_from_references(photos, style, 0.85, [1, 2], (400, 500))
        assert [c.path for c in api.creates()] == ["/v1/predictions"] * 2
        assert all(np.array_equal(decoded(c.body["input"]["image"]), photos[0]) for c in api.creates())
    assert [p.shape for p in pictures] == [(500, 400, 3)] * 2


# -- RunPod: the public Qwen-Image-Edit-2511 endpoint ----------------------------------------


@pytest.fixture
def worker():
    return QwenEditWorker()


@pytest.fixture
def runpod(worker):
    with qwen_endpoint(worker) as endpoint:
        yield endpoint


def qwen(endpoint, journal=None, key=None, **options) -> RunPodQwenEditStylizer:
    options = {"poll_seconds": 0.02, "timeout_seconds": 30.0, **options}
    return RunPodQwenEditStylizer(
        key or endpoint.api_key, api_base=endpoint.api_base, journal=journal or MemoryPredictionJournal(), **options
    )


def test_qwen_gets_every_photo_and_a_documented_size_and_its_cost_is_the_answers(runpod, worker, photos):
    stylizer = qwen(runpod)
    assert stylizer.client.endpoint_id == ENDPOINT_ID == runpod.endpoint_id
    for protocol in (ReferenceStylizer, SeededStylizer, MeteredStylizer):
        assert isinstance(stylizer, protocol)
    pictures = stylizer.paint_from_references(photos[:2], STYLE.diffusion.model_dump(), 0.85, [4, 5], (800, 1000))

    assert sorted(given["seed"] for given in worker.seen) == [4, 5]
    for given in worker.seen:
        assert [decoded(uri).tolist() for uri in given["images"]] == [photo.tolist() for photo in photos[:2]]
        assert given["size"] == "1024*1280" and given["output_format"] == "png"
        assert STYLE.diffusion.prompt in given["prompt"]
    assert [p.shape for p in pictures] == [(1000, 800, 3)] * 2
    assert runpod.seen[0][2]["authorization"] == f"Bearer {runpod.api_key}"

    usage = stylizer.take_usage()  # the cost each job's answer states
    assert (usage.backend, usage.predictions, usage.reused) == ("runpod", 2, 0)
    assert usage.cost_usd == pytest.approx(0.04)


def test_qwen_without_a_stated_cost_is_priced_per_image(photos):
    with qwen_endpoint(QwenEditWorker(cost=None)) as endpoint:
        stylizer = qwen(endpoint, price_per_image=0.03)
        stylizer.paint_from_references(photos, STYLE.diffusion.model_dump(), 0.85, [1], (500, 500))
    assert stylizer.take_usage().cost_usd == pytest.approx(0.03)


def test_qwen_takes_at_most_three_photos(runpod, worker, photos):
    qwen(runpod).paint_from_references([*photos, photos[0]], STYLE.diffusion.model_dump(), 0.85, [1], (500, 500))
    assert len(worker.seen[0]["images"]) == 3


def test_qwen_retried_never_pays_twice(runpod, photos):
    journal = MemoryPredictionJournal()
    style = STYLE.diffusion.model_dump()
    first = qwen(runpod, journal).paint_from_references(photos, style, 0.85, [1, 2], (400, 500))
    retry = qwen(runpod, journal)  # the step run again, in a new process
    again = retry.paint_from_references(photos, style, 0.85, [1, 2], (400, 500))
    assert len(runpod.submissions) == 2
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    usage = retry.take_usage()
    assert (usage.predictions, usage.reused, usage.cost_usd) == (0, 2, 0.0)

    qwen(runpod, journal).paint_from_references(photos, style, 0.5, [1], (400, 500))  # the gate's retry
    assert len(runpod.submissions) == 3 and runpod.submissions[-1]["prompt"].endswith(KEEP_FACE)


def test_qwen_refused_key_and_failed_job_have_stable_codes(runpod, photos):
    style = STYLE.diffusion.model_dump()
    with pytest.raises(ModelError) as refused:
        qwen(runpod, key="rp-wrong").paint_from_references(photos, style, 0.85, [1], (400, 500))
    assert refused.value.code == "runpod_auth_failed" and "rp-wrong" not in str(refused.value)
    assert runpod.submissions == []

    runpod.fail_next = 1
    stylizer = qwen(runpod)
    with pytest.raises(ModelError) as failed:
        stylizer.paint_from_references(photos, style, 0.85, [1], (400, 500))
    assert failed.value.code == "runpod_job_failed" and "CUDA out of memory" in str(failed.value)
    assert not isinstance(failed.value, EngineUnavailable)


def test_the_factories_build_the_hosted_qwen_engine_with_the_embedded_upscaler(tmp_path):
    from photogen_pipelines import factories
    from photogen_pipelines.settings import PhotoGenSettings

    settings = PhotoGenSettings(home=str(tmp_path), engine="runpod-qwen-edit", runpod_api_key="rp-key")
    built = factories.deployment(settings)
    assert built.styles.backend == "runpod-qwen-edit" and built.styles.endpoint_id == ENDPOINT_ID
    assert built.styles.price_per_image == 0.02 and built.upscale.backend == "embedded"
    stylizer = factories.stylizer(built.styles)
    assert isinstance(stylizer, RunPodQwenEditStylizer) and stylizer.client.price_per_image == 0.02
    with pytest.raises(ModelError, match="PHOTOGEN_RUNPOD_API_KEY"):
        factories.deployment(PhotoGenSettings(home=str(tmp_path), engine="runpod-qwen-edit"))
