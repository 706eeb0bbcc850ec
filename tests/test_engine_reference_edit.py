"""The reference-image engines (flux2-klein, qwen-edit) on CPU.

The models are tiny random-weight models of the SAME pipeline classes
(`Flux2KleinPipeline`, `QwenImageEditPlusPipeline`) written by `photogen dev
make-tiny-models --family ...` in the production layout and read back by the production
loader (`from_pretrained` of the folder, engines/stylize_reference.py): only the weights
are smaller. Their pictures are noise, so the identity gate rejects them: a demo on them
ends with that outcome, stated cleanly.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from diffusers import Flux2KleinPipeline, QwenImageEditPlusPipeline
from PIL import Image
from skimage import data

from photogen_pipelines import factories
from photogen_pipelines.catalog import load_products, load_styles
from photogen_pipelines.devtools.tiny_flux2 import write_tiny_flux2_lora
from photogen_pipelines.engines.base import ReferenceStylizer, ResidentStyles, SeededStylizer
from photogen_pipelines.engines.models_folder import UPSCALER_FILE, missing_model_files
from photogen_pipelines.engines.stylize_reference import (
    DEFAULT_PIXELS,
    STYLE_REFERENCES_DIR,
    ReferenceEditStylizer,
    clear_reference_cache,
    generation_size,
)
from photogen_pipelines.errors import ModelError
from photogen_pipelines.generation.proofs import StoredSelfie
from photogen_pipelines.generation.stages import native_dpi, plan_passes, render_candidates
from photogen_pipelines.imaging.images import Box, png_bytes
from photogen_pipelines.storage.stores import LocalArtifactStore

PHOTOGEN = [str(Path(sys.executable).with_name("photogen"))]  # the installed console script
PIPELINES = {"flux2-klein": Flux2KleinPipeline, "qwen-edit": QwenImageEditPlusPipeline}
TINY_SIZE = (64, 96)  # what the tiny folders' photogen-engine.yaml asks for at a 2:3 product
PARAMS = {"prompt": "portrait of a person as an oil painting", "strength": 0.9}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict[str, Path]:
    """Both families' folders, written at once by the command a newcomer runs."""
    root = tmp_path_factory.mktemp("reference-models")
    folders = {family: root / family for family in PIPELINES}
    running = {
        family: subprocess.Popen(
            [*PHOTOGEN, "dev", "make-tiny-models", "--family", family, str(folder)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for family, folder in folders.items()
    }
    for family, process in running.items():
        out, err = process.communicate(timeout=300)
        assert process.returncode == 0, err
        assert f"--engine {family} --models {folders[family]}" in out
    return folders


@pytest.fixture
def spy(monkeypatch):
    """Records what each pipeline call received, and still runs the pipeline."""
    calls: list[dict] = []
    for pipeline_class in PIPELINES.values():
        original = pipeline_class.__call__

        def recording(self, *args, _original=original, **kwargs):
            calls.append(kwargs)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(pipeline_class, "__call__", recording)
    return calls


def _stylizer(tiny, family: str) -> ReferenceEditStylizer:
    styles, _ = factories.engine_settings(family, str(tiny[family]))
    return factories.stylizer(styles)


def _photos(count: int) -> list[np.ndarray]:
    """Different pictures of different sizes: the astronaut and crops of it."""
    astronaut = data.astronaut()
    return [astronaut] + [np.ascontiguousarray(astronaut[40 * i : 300 + 40 * i, 60 * i : 260 + 60 * i]) for i in range(1, count)]


def test_the_tiny_folders_have_the_production_layout(tiny):
    flux, qwen = tiny["flux2-klein"], tiny["qwen-edit"]
    assert missing_model_files(flux, "flux2-klein") == [] and missing_model_files(qwen, "qwen-edit") == []
    assert json.loads((flux / "flux2-klein" / "model_index.json").read_text())["_class_name"] == "Flux2KleinPipeline"
    index = json.loads((qwen / "qwen-image-edit" / "model_index.json").read_text())
    assert index["_class_name"] == "QwenImageEditPlusPipeline" and index["processor"] == ["transformers", "Qwen2VLProcessor"]
    assert (flux / UPSCALER_FILE).is_file() and "NOISE" in (flux / "README.txt").read_text().upper()
    # a folder serves the engines it holds: each engine names what it lacks
    assert [m.split(" ")[0] for m in missing_model_files(flux, "qwen-edit")] == [f"{flux}/qwen-image-edit/model_index.json"]
    assert "insightface" in " ".join(missing_model_files(flux, "diffusers"))


def test_the_factories_build_the_reference_stylizers_from_the_models_folder(tiny):
    for family in PIPELINES:
        styles, upscale = factories.engine_settings(family, str(tiny[family]))
        assert styles.backend == family and upscale.backend == "torch"
        stylizer = factories.stylizer(styles)
        assert stylizer is factories.stylizer(styles.model_copy())  # one engine per settings, process-wide
        assert isinstance(stylizer, ReferenceStylizer) and isinstance(stylizer, SeededStylizer)
        assert isinstance(stylizer, ResidentStyles) and stylizer.params_section == "diffusion"
        assert stylizer.size_for(2 / 3) == TINY_SIZE and stylizer.steps == 2  # the folder's photogen-engine.yaml
        assert stylizer.max_references == {"flux2-klein": 4, "qwen-edit": 3}[family]
    assert ReferenceEditStylizer("flux2-klein", tiny["flux2-klein"]).size_for(3694 / 5494) == (1184, 1760)  # ~2 MP


def test_every_photo_and_the_style_picture_reach_flux2_klein_primary_first(tiny, spy):
    stylizer = _stylizer(tiny, "flux2-klein")
    (tiny["flux2-klein"] / STYLE_REFERENCES_DIR).mkdir(exist_ok=True)
    Image.fromarray(data.coffee()).save(tiny["flux2-klein"] / STYLE_REFERENCES_DIR / "swirls.png")

    pictures = stylizer.paint_from_references(_photos(3), PARAMS, 1.0, [7], TINY_SIZE)
    with_style = stylizer.paint_from_references(_photos(5), {**PARAMS, "reference_image": "swirls.png"}, 1.0, [7], TINY_SIZE)

    seen = [call["image"] for call in spy]
    assert [len(images) for images in seen] == [3, 4]  # 5 photos + a style picture: 3 photos and the style's
    primary = np.asarray(seen[0][0].resize((32, 32))).astype(float)
    assert np.abs(primary - np.asarray(Image.fromarray(data.astronaut()).resize((32, 32)))).mean() < 3  # the primary first
    assert seen[1][-1].size[0] / seen[1][-1].size[1] == pytest.approx(data.coffee().shape[1] / data.coffee().shape[0], 0.02)
    assert "in the style of the last picture" in spy[1]["prompt"] and "oil painting" in spy[1]["prompt"]
    assert pictures[0].shape == with_style[0].shape == (96, 64, 3)
    assert not np.array_equal(pictures[0], with_style[0])  # the references are attended to (faintly, by random weights)


def test_flux2_klein_pictures_are_the_requested_size_and_their_seeds_alone(tiny, spy):
    stylizer = _stylizer(tiny, "flux2-klein")
    photos = _photos(2)

    two = stylizer.paint_from_references(photos, PARAMS, 0.9, [11, 12], TINY_SIZE)
    alone = stylizer.paint_from_references(photos, PARAMS, 0.9, [12], TINY_SIZE)
    odd = stylizer.paint_from_references(photos, PARAMS, 0.9, [11], (70, 100))

    assert [p.shape for p in two] == [(96, 64, 3)] * 2 and odd[0].shape == (100, 70, 3)
    assert spy[-1]["width"] == 64 and spy[-1]["height"] == 96  # generated at the model's multiple of 16, then resized
    np.testing.assert_allclose(alone[0], two[1], atol=1)  # the same seed, the same picture, whatever the batch
    assert np.abs(two[0].astype(int) - two[1]).mean() > 5  # another seed, another picture
    with pytest.raises(ValueError, match="strength"):
        stylizer.paint_from_references(photos, PARAMS, 0.0, [1], TINY_SIZE)


def test_a_lower_strength_starts_from_the_photo_and_keeps_more_of_it(tiny):
    """The gate's retry lowers strength: denoising starts nearer the framed photo, so the
    variants (which differ only by their noise) come out nearer each other."""
    stylizer = _stylizer(tiny, "flux2-klein")
    photo = np.asarray(Image.fromarray(data.astronaut()).resize(TINY_SIZE))
    pipe = stylizer.pipeline()
    for strength in (0.9, 0.5, 0.1):
        _, start = stylizer._schedule(pipe, strength, TINY_SIZE)
        assert start == pytest.approx(strength, abs=1e-3)  # the scheduler's own noise level, after its shift

    def spread(strength: float) -> float:
        first, second = stylizer.paint_from_references([photo], PARAMS, strength, [1, 2], TINY_SIZE)
        return float(np.abs(first.astype(float) - second).mean())

    assert spread(0.1) < 0.7 * spread(1.0)


def test_the_pipeline_loads_once_per_process(tiny, monkeypatch):
    loads = []
    original = Flux2KleinPipeline.from_pretrained.__func__

    def counting(cls, *args, **kwargs):
        loads.append(args[0])
        return original(cls, *args, **kwargs)

    monkeypatch.setattr(Flux2KleinPipeline, "from_pretrained", classmethod(counting))
    clear_reference_cache()
    first = ReferenceEditStylizer("flux2-klein", tiny["flux2-klein"], pixels=6144, steps=2)
    second = ReferenceEditStylizer("flux2-klein", tiny["flux2-klein"], pixels=6144, steps=2)
    first.paint_from_references(_photos(1), PARAMS, 1.0, [1], TINY_SIZE)
    second.paint_from_references(_photos(1), PARAMS, 1.0, [1], TINY_SIZE)
    second.load()
    assert loads == [tiny["flux2-klein"].resolve() / "flux2-klein"] and first.pipeline() is second.pipeline()


@pytest.fixture
def klein_lora(tiny):
    """The flux2-klein stylizer and a style naming a tiny random LoRA (rank 4 on the
    tiny transformer's attention, non-zero B so it changes the picture), written by
    `write_tiny_flux2_lora` where the engine looks for it; unloaded before and after,
    since the pipeline is shared by the module's tests."""
    folder = tiny["flux2-klein"]
    lora = folder / "loras" / "flux2-klein" / "ink.safetensors"
    if not lora.is_file():
        write_tiny_flux2_lora(folder / "flux2-klein", lora)
    stylizer = _stylizer(tiny, "flux2-klein")
    style = {**PARAMS, "lora": "ink", "lora_scale": 1.0}
    stylizer.unload_style(style)
    yield stylizer, style
    stylizer.unload_style(style)


def _adapters(stylizer) -> list[str]:
    return stylizer.pipeline().get_list_adapters().get("transformer", [])


def test_a_style_lora_changes_the_picture_and_is_off_again_without_it(klein_lora):
    """Tiny random-weight klein and LoRA: the LoRA's picture differs from the same seed's
    without it, and the next LoRA-less style paints exactly the LoRA-less picture."""
    stylizer, style = klein_lora
    photos = _photos(1)

    plain = stylizer.paint_from_references(photos, PARAMS, 1.0, [5], TINY_SIZE)[0]
    with_lora = stylizer.paint_from_references(photos, style, 1.0, [5], TINY_SIZE)[0]
    plain_again = stylizer.paint_from_references(photos, PARAMS, 1.0, [5], TINY_SIZE)[0]
    at_zero = stylizer.paint_from_references(photos, {**style, "lora_scale": 0.0}, 1.0, [5], TINY_SIZE)[0]

    assert np.abs(with_lora.astype(int) - plain).mean() > 0.1
    np.testing.assert_array_equal(plain_again, plain)  # the adapter is switched off, not only scaled down
    np.testing.assert_array_equal(at_zero, plain)  # the style's lora_scale reaches the adapter


def test_a_resident_style_lora_loads_once_and_stays_off_for_other_styles(klein_lora, monkeypatch):
    """Tiny random-weight klein: load_style loads the LoRA (the warm service keeps it
    resident), later orders reuse it, and loading it does not switch it on."""
    stylizer, style = klein_lora
    loads = []
    original = Flux2KleinPipeline.load_lora_weights

    def counting(self, *args, **kwargs):
        loads.append(kwargs["adapter_name"])
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Flux2KleinPipeline, "load_lora_weights", counting)
    photos = _photos(1)
    plain = stylizer.paint_from_references(photos, PARAMS, 1.0, [9], TINY_SIZE)[0]

    stylizer.load_style(style)
    assert _adapters(stylizer) == ["ink"]
    assert np.array_equal(stylizer.paint_from_references(photos, PARAMS, 1.0, [9], TINY_SIZE)[0], plain)
    stylizer.load_style(style)
    for seed in (1, 2):
        stylizer.paint_from_references(photos, style, 1.0, [seed], TINY_SIZE)
    assert loads == ["ink"] and _adapters(stylizer) == ["ink"]

    stylizer.unload_style(style)
    assert _adapters(stylizer) == []
    assert np.array_equal(stylizer.paint_from_references(photos, PARAMS, 1.0, [9], TINY_SIZE)[0], plain)


def test_a_missing_style_lora_is_a_model_error_that_names_the_file(klein_lora, tiny):
    stylizer, style = klein_lora
    expected = tiny["flux2-klein"] / "loras" / "flux2-klein" / "nowhere.safetensors"
    for call in (
        lambda: stylizer.load_style({**style, "lora": "nowhere"}),
        lambda: stylizer.paint_from_references(_photos(1), {**style, "lora": "nowhere"}, 1.0, [1], TINY_SIZE),
    ):
        with pytest.raises(ModelError, match="no flux2-klein style LoRA 'nowhere'") as raised:
            call()
        assert str(expected) in str(raised.value)
    assert _adapters(stylizer) == []


def test_qwen_image_edit_paints_from_several_photos_at_the_requested_size(tiny, spy):
    stylizer = _stylizer(tiny, "qwen-edit")

    pictures = stylizer.paint_from_references(_photos(4), PARAMS, 0.6, [3], TINY_SIZE)

    assert [len(call["image"]) for call in spy] == [3]  # at most max_references photos
    assert spy[0]["true_cfg_scale"] == 5.0 and spy[0]["negative_prompt"]  # the style's guidance, true CFG
    assert pictures[0].shape == (96, 64, 3) and pictures[0].std() > 1


def test_the_proof_stage_gives_the_engine_every_photo_of_the_order(tiny, spy, tmp_path):
    """What `styled_candidates` calls: the framed portrait first, then the order's other
    photos from the store, and a picture at the product's aspect."""
    store = LocalArtifactStore(tmp_path / "store")
    photos = _photos(3)
    keys = []
    for i, photo in enumerate(photos):
        keys.append(f"orders/o1/photos/{i}.png")
        store.put_bytes(keys[-1], png_bytes(photo))
    product = load_products().get("poster_12x18")
    width, height = product.pixel_size
    portrait = np.asarray(Image.fromarray(photos[0]).resize((344, round(344 * height / width))))
    selfie = StoredSelfie(portrait, Box(100, 100, 100, 100), np.ones(128, np.float32), tuple(keys), store)
    style = load_styles().get("sepia_oil")

    candidates = render_candidates(
        portrait, style, _stylizer(tiny, "flux2-klein"), 42, [0, 1], 1, 0.6, None, selfie.engine_references
    )

    sent = spy[-1]["image"]
    aspects = [picture.shape[1] / picture.shape[0] for picture in (portrait, *photos[1:])]
    assert [p.size[0] / p.size[1] for p in sent] == pytest.approx(aspects, rel=0.03)  # the portrait first, then the photos
    assert [c.image.shape for c in candidates] == [(96, 64, 3)] * 2
    assert [c.strength for c in candidates] == [round(0.85 * 0.6, 4)] * 2  # the style's strength, lowered for round 1
    assert len({c.seed for c in candidates}) == 2


def test_a_larger_proof_at_the_products_aspect_prints_in_one_pass():
    """A 2 MP proof at the product's aspect needs one x4 pass to the print's DPI (where the
    1024-px proof of the SDXL engine needed the same pass from fewer pixels)."""
    product = load_products().get("poster_12x18")
    size = generation_size(product.pixel_size[0] / product.pixel_size[1], DEFAULT_PIXELS)
    assert plan_passes(size, product, (4,), 200.0, 2) == [4]
    assert native_dpi((size[0] * 4, size[1] * 4), product) > 300


@pytest.mark.slow
@pytest.mark.parametrize("family", list(PIPELINES))
def test_demo_runs_an_order_end_to_end_and_states_the_rejection(tiny, family, tmp_path):
    done = subprocess.run(
        [*PHOTOGEN, "demo", "--engine", family, "--models", str(tiny[family]), "--variants", "2", "--json"]
        + ["--home", str(tmp_path / "home"), "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout)
    assert summary["outcome"] == "rejected" and "likeness" in summary["reason"]
    assert summary["proofs"] == [] and summary["print_file"] is None
    assert len(summary["rejected_variants"]) == 2 and all(v["reason"] for v in summary["rejected_variants"])
    assert f"{family} engine" in done.stderr
    candidate = tmp_path / "home" / "artifacts" / "orders" / summary["order_id"] / "candidates" / "round_2" / "variant_0.png"
    with Image.open(candidate) as picture:
        assert picture.size == TINY_SIZE  # generated at the product's aspect, not cropped from the portrait


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        (
            ["--engine", "flux2-klein"],
            "--engine flux2-klein needs --models DIR (`photogen dev make-tiny-models --family flux2-klein",
        ),
        (["--engine", "flux2-klein", "--models", "{empty}"], "flux2-klein/model_index.json (FLUX.2 [klein] 4B"),
        (["--engine", "qwen-edit", "--models", "{flux}"], "qwen-image-edit/model_index.json (Qwen-Image-Edit"),
    ],
)
def test_demo_with_a_bad_models_folder_says_so_in_one_line_and_exits_2(tiny, arguments, expected, tmp_path):
    (tmp_path / "empty").mkdir()
    places = {"{empty}": str(tmp_path / "empty"), "{flux}": str(tiny["flux2-klein"])}
    arguments = [places.get(a, a) for a in arguments]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PHOTOGEN_")}
    done = subprocess.run(
        [*PHOTOGEN, "demo", *arguments, "--home", str(tmp_path / "home")], capture_output=True, text=True, env=env, timeout=300
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and expected in done.stderr
    assert not (tmp_path / "home").exists()


@pytest.mark.slow
def test_a_proof_run_of_an_order_of_three_photos_gives_the_engine_all_three(tiny, spy, tmp_path, monkeypatch):
    """Through the real Dagster assets: an order placed over the API with three photos of
    one person; every round's pipeline call receives the framed portrait and the two other
    photos, and its proofs, generated at the product's aspect, meet the identity gate."""
    import dagster as dg
    from fastapi.testclient import TestClient

    import assets
    from photogen_pipelines.definitions import build_defs
    from photogen_pipelines.orders.states import OrderState
    from photogen_pipelines.storage.artifacts import OrderKeys, SelfieInfo, Validation
    from tests.api_helpers import jpeg_bytes, make_app, make_settings, new_key, order_body
    from tests.dagster_helpers import local_instance

    settings = make_settings(tmp_path, f"sqlite:///{tmp_path / 'orders.db'}")
    astronaut = Image.fromarray(data.astronaut())
    photos = [
        astronaut,
        astronaut.transpose(Image.FLIP_LEFT_RIGHT).resize((384, 384)),
        astronaut.rotate(8).point(lambda v: v * 0.7),
    ]
    with TestClient(make_app(settings), raise_server_exceptions=False) as client:
        auth = new_key(settings)
        ids = []
        for photo in photos:
            sent = client.post(
                "/v1/uploads",
                headers=auth,
                data={"consent": "true"},
                files={"file": ("p.jpg", jpeg_bytes(np.asarray(photo)), "image/jpeg")},
            )
            assert sent.status_code == 201, sent.text
            ids.append(sent.json()["id"])
        body = {**{k: v for k, v in order_body(None, variants=2).items() if k != "upload_id"}, "upload_ids": ids}
        placed = client.post("/v1/orders", headers={**auth, "Idempotency-Key": "three-photos"}, json=body)
        assert placed.status_code in (200, 201), placed.text
        order_id = placed.json()["id"]

    monkeypatch.setenv("PHOTOGEN_DATABASE_URL", settings.resolved_database_url)
    defs = build_defs(settings.home, engine="flux2-klein", models_dir=str(tiny["flux2-klein"]))
    with local_instance(tmp_path / "dagster") as instance:
        instance.add_dynamic_partitions("orders", [order_id])
        dg.materialize(
            [*assets.proof_assets, *assets.order_checks],
            partition_key=order_id,
            instance=instance,
            resources=defs.resources,
            raise_on_error=False,
        )

    store, keys = defs.resources["storage"].store(), OrderKeys(order_id)
    portrait = keys.load(store, SelfieInfo)
    assert len(portrait.photos) == 3
    validation = keys.load(store, Validation)
    assert validation.rounds == 3 and len(spy) == 3  # one pipeline call per round, its variants in one batch
    assert all(len(call["image"]) == 3 for call in spy)  # the portrait and the two other photos, every round
    product = load_products().get("poster_a3")
    assert spy[0]["image"][0].size[0] / spy[0]["image"][0].size[1] == pytest.approx(
        product.pixel_size[0] / product.pixel_size[1], rel=0.02
    )  # the first is the portrait, framed for the product
    with Image.open(io.BytesIO(store.get_bytes(keys.candidate(0, 0)))) as candidate:
        assert candidate.size == generation_size(product.pixel_size[0] / product.pixel_size[1], 6144)
    assert defs.resources["orders"].book().get(order_id).state == OrderState.REJECTED  # noise has no face


def test_a_fashion_shoot_shot_paints_the_model_and_the_garment_in_its_pose_and_retries_with_new_seeds(tiny, spy, analyzer):
    """The studio's reference-image path (jobs/shots.py) on tiny random weights: every photo of
    the model and the garment's photo last go in, the pose's words join the prompt, and the
    noise the tiny weights paint fails the gates on every try, each try a new seed."""
    from photogen_pipelines.catalog.kinds import load_kinds
    from photogen_pipelines.generation.references import face_embedding
    from photogen_pipelines.jobs.plan import plan_shots
    from photogen_pipelines.jobs.shots import ShotEngines, ShotInputs, make_shot
    from tests.product_photos import garment_photo

    kinds = load_kinds()
    kind = kinds.get("fashion_shoot")
    [walking] = plan_shots(kinds, kind, 1234, ["walking"])
    photos, (garment, _) = _photos(2), garment_photo()
    inputs = ShotInputs(person=photos, identity=face_embedding(photos[0], analyzer), product=garment)
    engines = ShotEngines(stylizer=_stylizer(tiny, "flux2-klein"), faces=analyzer, safety=None)
    outcome = make_shot(kind, walking, inputs, engines, embedded=False)

    assert len(spy) == kind.max_retries + 1 == len(outcome.record.attempts)
    assert [a.seed for a in outcome.record.attempts] == [walking.seed_of(n) for n in range(kind.max_retries + 1)]
    for call in spy:
        last = call["image"][-1]  # the garment, resized as every reference for the tiny model: its aspect kept
        assert len(call["image"]) == 3 and abs(last.width / last.height - garment.shape[1] / garment.shape[0]) < 0.02
        assert kinds.poses["walking"] in call["prompt"] and "garment" in call["prompt"]
    assert outcome.record.outcome == "rejected" and outcome.picture is None
    assert outcome.record.reason == "no face found in the shot"  # the first gate's reason: noise shows nobody
    assert outcome.record.attempts[-1].scores == {"identity": None, "product_ssim": None}
    # the shot at the catalogs' 4:5, at the engine's own size (the tiny folder's small pictures)
    width, height = engines.stylizer.size_for(4 / 5)
    assert outcome.last_picture is not None and outcome.last_picture.shape[:2] == (height, width)
    assert abs(width / height - 4 / 5) < 0.05 and height < 1024
