"""The InstantID pipeline (production GPU stylizer), run on CPU with tiny random-weight
SDXL + IdentityNet + face adapter written in the production layout and loaded through
the real loader (docs/architecture.md §3: the same pipeline class, the same loader, only smaller)."""

from __future__ import annotations

import dataclasses
import math
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing here may reach a hub
import torch  # noqa: E402  (the dev extra installs the gpu extra: these tests always run)
from PIL import Image  # noqa: E402
from torch import nn  # noqa: E402

from photogen_pipelines.catalog import DiffusionStyleParams, EmbeddedStyleParams, Style  # noqa: E402
from photogen_pipelines.devtools.tiny_sdxl import write_tiny_instantid  # noqa: E402
from photogen_pipelines.engines.base import Face  # noqa: E402
from photogen_pipelines.engines.instantid import (  # noqa: E402
    KEYPOINT_COLOURS,
    StableDiffusionXLInstantIDPipeline,
    draw_keypoints,
    load_instantid,
    missing_instantid_files,
)
from photogen_pipelines.engines.stylize_instantid import RAW_ARCFACE_NORM, InstantIdStylizer, working_size  # noqa: E402
from photogen_pipelines.errors import ModelError  # noqa: E402
from photogen_pipelines.generation.stages import render_candidate, render_candidates  # noqa: E402
from photogen_pipelines.imaging.images import Box  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")  # diffusers' Euler, numpy 2

SIZE = 64
# eyes, nose tip, mouth corners of a face filling the middle of a 64 px picture
KPS = np.array([[22, 26], [42, 26], [32, 36], [24, 46], [40, 46]], dtype=np.float64)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The tiny models gain nothing from threads, and on a busy 2-core machine torch's
    spinning worker threads make a 0.15 s generation take 1-3 s."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return write_tiny_instantid(tmp_path_factory.mktemp("instantid"))


@pytest.fixture(scope="module")
def pipe(model_dir) -> StableDiffusionXLInstantIDPipeline:
    return load_instantid(model_dir, dtype="float32", device="cpu")


@pytest.fixture(scope="module")
def baseline(pipe) -> np.ndarray:
    """Two variants (seeds 1, 2) of face 0 at the default settings: what the tests vary."""
    return generate(pipe)


def face(seed: int) -> np.ndarray:
    """An ArcFace-like embedding: 512 numbers at the scale of insightface's raw output."""
    vector = np.random.default_rng(seed).normal(size=512).astype(np.float32)
    return vector * np.float32(RAW_ARCFACE_NORM / np.linalg.norm(vector))


def generate(pipe, embedding=None, seeds=(1, 2), **kwargs) -> np.ndarray:
    kwargs = {"height": SIZE, "width": SIZE, "num_inference_steps": 2, "output_type": "np", **kwargs}
    out = pipe(
        "a portrait, oil painting",
        face(0) if embedding is None else embedding,
        kwargs.pop("face_kps", KPS),
        negative_prompt="blurry, lowres",
        num_images_per_prompt=len(seeds),
        generator=[torch.Generator().manual_seed(s) for s in seeds],
        **kwargs,
    )
    return out.images


def differ(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).max())


# -- generation ---------------------------------------------------------------------------


def test_variants_in_one_batch_are_images_of_the_requested_size(pipe):
    images = pipe(
        "a portrait, oil painting",
        face(0),
        KPS,
        height=SIZE,
        width=SIZE + 32,
        num_inference_steps=2,
        num_images_per_prompt=2,
        generator=[torch.Generator().manual_seed(1), torch.Generator().manual_seed(2)],
    ).images
    assert [im.size for im in images] == [(SIZE + 32, SIZE)] * 2
    assert all(im.mode == "RGB" for im in images)
    first, second = (np.asarray(im) for im in images)
    assert differ(first, second) > 0, "each variant has its own seed, so its own picture"


def test_the_same_seeds_reproduce_the_same_pictures(pipe, baseline):
    np.testing.assert_array_equal(generate(pipe), baseline)
    # a variant depends on its own seed only, not on its place in the batch
    np.testing.assert_allclose(generate(pipe, seeds=(2,))[0], baseline[1], atol=1e-5)


def test_the_face_embedding_reaches_the_model(pipe, baseline):
    assert differ(baseline, generate(pipe, face(1))) > 0.01


def test_ip_adapter_scale_weights_the_face_attention(pipe, baseline):
    without = generate(pipe, ip_adapter_scale=0.0)
    assert differ(without, baseline) > 0.01
    # at scale 0 the face still reaches the picture, through IdentityNet alone
    assert differ(without, generate(pipe, face(1), ip_adapter_scale=0.0)) > 0.01


def test_identitynet_sees_the_keypoints(pipe, baseline):
    moved = KPS + [6, -4]
    assert differ(baseline, generate(pipe, face_kps=moved)) > 0.01
    assert differ(baseline, generate(pipe, controlnet_conditioning_scale=0.0)) > 0.01
    # keypoints per variant: only the second variant's face moves
    both = generate(pipe, face_kps=np.stack([KPS, moved]))
    np.testing.assert_allclose(both[0], baseline[0], atol=1e-5)
    assert differ(both[1], baseline[1]) > 0.01


def test_controlnet_is_conditioned_on_the_face_tokens_and_the_unet_on_the_text(pipe):
    seen = {}

    def spy(name):
        def hook(module, args, kwargs):
            seen.setdefault(name, []).append(kwargs)

        return hook

    hooks = [
        pipe.controlnet.register_forward_pre_hook(spy("controlnet"), with_kwargs=True),
        pipe.unet.register_forward_pre_hook(spy("unet"), with_kwargs=True),
    ]
    try:
        generate(pipe, face(3), guidance_scale=5.0)
    finally:
        for hook in hooks:
            hook.remove()

    # what InstantID feeds IdentityNet: the projected face, a zero face for the unconditional half
    embedding = torch.from_numpy(face(3)).reshape(1, 1, 512)
    with torch.no_grad():
        expected = pipe.face_projection(torch.cat([torch.zeros_like(embedding)] * 2 + [embedding] * 2))
    assert expected.shape == (4, 16, pipe.unet.config.cross_attention_dim)  # (uncond, cond) x 2 variants, 16 tokens
    assert len(seen["controlnet"]) == 2  # one call per step
    for call in seen["controlnet"]:
        torch.testing.assert_close(call["encoder_hidden_states"], expected)
        assert call["controlnet_cond"].shape == (4, 3, SIZE, SIZE)
    raw = np.concatenate([np.zeros((2, 512), np.float32), np.stack([face(3)] * 2)])
    for call in seen["unet"]:  # the UNet: the text, and the raw face for its IP-Adapter attention
        assert call["encoder_hidden_states"].shape == (4, pipe.tokenizer.model_max_length, expected.shape[-1])
        torch.testing.assert_close(call["added_cond_kwargs"]["image_embeds"][0].reshape(4, 512), torch.from_numpy(raw))


def test_starting_from_a_photo_runs_the_last_part_of_the_schedule(pipe):
    rng = np.random.default_rng(5)
    photo = (rng.uniform(0, 255, size=(SIZE, SIZE, 3))).astype(np.uint8)
    calls = []
    hook = pipe.unet.register_forward_pre_hook(lambda module, args: calls.append(args), with_kwargs=False)
    try:
        half = generate(pipe, image=Image.fromarray(photo), strength=0.5, num_inference_steps=4)
    finally:
        hook.remove()
    assert len(calls) == 2  # half of 4 steps
    assert half.shape == (2, SIZE, SIZE, 3)
    np.testing.assert_array_equal(half, generate(pipe, image=Image.fromarray(photo), strength=0.5, num_inference_steps=4))
    other = generate(pipe, image=Image.fromarray(255 - photo), strength=0.5, num_inference_steps=4)
    assert differ(half, other) > 0.01


def test_half_precision_runs_the_vae_in_float32(model_dir):
    half = load_instantid(model_dir, dtype="float16", device="cpu")
    assert half.unet.dtype == half.controlnet.dtype == half.face_projection.proj_in.weight.dtype == torch.float16
    assert half.vae.dtype == torch.float32  # SDXL's VAE overflows in float16 (force_upcast)
    photo = Image.fromarray(np.full((SIZE, SIZE, 3), 128, np.uint8))
    images = generate(half, image=photo, strength=0.5)
    assert images.shape == (2, SIZE, SIZE, 3) and np.isfinite(images).all()
    assert half.vae.dtype == torch.float32


def test_inputs_are_checked(pipe):
    with pytest.raises(ValueError, match="512-d"):
        generate(pipe, np.zeros(128, np.float32))
    with pytest.raises(ValueError, match="one per image"):
        pipe("x", face(0), KPS, height=SIZE, width=SIZE, num_images_per_prompt=2, generator=[torch.Generator()])
    with pytest.raises(ValueError, match="5x2"):
        generate(pipe, face_kps=KPS[:4])
    with pytest.raises(ValueError, match="starting `image`"):
        generate(pipe, strength=0.5)


# -- the face adapter in InstantID's layout ----------------------------------------------


class ReferenceResampler(nn.Module):
    """InstantID's `ip_adapter/resampler.py` (a perceiver resampler), written out to check
    that `ip-adapter.bin` has its exact key names and that diffusers computes the same."""

    def __init__(self, dim, depth, dim_head, heads, num_queries, embedding_dim, output_dim, ff_mult):
        super().__init__()
        self.heads, self.dim_head = heads, dim_head
        self.latents = nn.Parameter(torch.randn(1, num_queries, dim) / dim**0.5)
        self.proj_in = nn.Linear(embedding_dim, dim)
        self.proj_out = nn.Linear(dim, output_dim)
        self.norm_out = nn.LayerNorm(output_dim)
        inner = dim_head * heads
        self.layers = nn.ModuleList(
            nn.ModuleList(
                [
                    nn.ModuleDict(
                        {
                            "norm1": nn.LayerNorm(dim),
                            "norm2": nn.LayerNorm(dim),
                            "to_q": nn.Linear(dim, inner, bias=False),
                            "to_kv": nn.Linear(dim, 2 * inner, bias=False),
                            "to_out": nn.Linear(inner, dim, bias=False),
                        }
                    ),
                    nn.Sequential(
                        nn.LayerNorm(dim),
                        nn.Linear(dim, dim * ff_mult, bias=False),
                        nn.GELU(),
                        nn.Linear(dim * ff_mult, dim, bias=False),
                    ),
                ]
            )
            for _ in range(depth)
        )

    def attend(self, attn, x, latents):
        x, latents = attn["norm1"](x), attn["norm2"](latents)
        b, n, _ = latents.shape
        q = attn["to_q"](latents)
        k, v = attn["to_kv"](torch.cat([x, latents], dim=-2)).chunk(2, dim=-1)
        q, k, v = (t.reshape(b, -1, self.heads, self.dim_head).transpose(1, 2) for t in (q, k, v))
        scale = 1 / math.sqrt(math.sqrt(self.dim_head))
        weight = torch.softmax((q * scale) @ (k * scale).transpose(-2, -1), dim=-1)
        return attn["to_out"]((weight @ v).permute(0, 2, 1, 3).reshape(b, n, -1))

    def forward(self, x):
        latents = self.latents.repeat(x.size(0), 1, 1)
        x = self.proj_in(x)
        for attn, ff in self.layers:
            latents = self.attend(attn, x, latents) + latents
            latents = ff(latents) + latents
        return self.norm_out(self.proj_out(latents))


def test_ip_adapter_bin_is_instantids_layout_and_diffusers_projects_like_instantid(model_dir, pipe):
    state = torch.load(model_dir / "ip-adapter.bin", map_location="cpu", weights_only=True)
    assert sorted(state) == ["image_proj", "ip_adapter"]
    proj = state["image_proj"]
    dim, embedding_dim = proj["proj_in.weight"].shape[0], proj["proj_in.weight"].shape[1]
    reference = ReferenceResampler(
        dim=dim,
        depth=4,
        dim_head=64,
        heads=proj["layers.0.0.to_q.weight"].shape[0] // 64,
        num_queries=proj["latents"].shape[1],
        embedding_dim=embedding_dim,
        output_dim=pipe.unet.config.cross_attention_dim,
        ff_mult=4,
    )
    reference.load_state_dict(proj, strict=True)  # every key of InstantID's Resampler, nothing else
    assert (embedding_dim, proj["latents"].shape[1]) == (512, 16)

    faces = torch.from_numpy(np.stack([face(0), face(1)])).reshape(2, 1, 512)
    with torch.no_grad():
        torch.testing.assert_close(pipe.face_projection(faces), reference(faces), rtol=1e-4, atol=1e-5)

    # the cross-attention processors got the to_k_ip / to_v_ip weights, numbered as InstantID does
    processors = list(pipe.unet.attn_processors.items())
    loaded = 0
    for index, (name, processor) in enumerate(processors):
        if name.endswith("attn2.processor"):
            torch.testing.assert_close(processor.to_k_ip[0].weight, state["ip_adapter"][f"{index}.to_k_ip.weight"])
            torch.testing.assert_close(processor.to_v_ip[0].weight, state["ip_adapter"][f"{index}.to_v_ip.weight"])
            loaded += 1
    assert loaded == len(state["ip_adapter"]) // 2 > 0


# -- loading ------------------------------------------------------------------------------


def test_the_tiny_models_are_small_and_reproducible(model_dir, tmp_path):
    files = sorted(p.relative_to(model_dir) for p in model_dir.rglob("*") if p.is_file())
    assert sum((model_dir / p).stat().st_size for p in files) < 4_000_000
    again = write_tiny_instantid(tmp_path / "again")
    assert sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file()) == files
    for path in files:
        if path.suffix == ".safetensors":
            assert (model_dir / path).read_bytes() == (again / path).read_bytes(), path
    first, second = (torch.load(d / "ip-adapter.bin", weights_only=True) for d in (model_dir, again))
    for part in first:
        for key in first[part]:
            assert torch.equal(first[part][key], second[part][key]), key


def test_loading_is_cached_per_folder_dtype_and_device(model_dir, pipe):
    assert load_instantid(model_dir, dtype="float32", device="cpu") is pipe
    assert load_instantid(str(model_dir) + "/", dtype=torch.float32, device=torch.device("cpu")) is pipe
    assert missing_instantid_files(model_dir) == []
    assert dict(pipe.style_loras) == {}


@pytest.mark.parametrize(
    ("remove", "named"),
    [
        (["ip-adapter.bin"], ["ip-adapter.bin"]),
        (["controlnet"], ["controlnet/config.json"]),
        (["controlnet/diffusion_pytorch_model.safetensors"], ["controlnet/diffusion_pytorch_model.safetensors"]),
        (["sdxl/unet", "ip-adapter.bin"], ["sdxl/unet", "ip-adapter.bin"]),
        (["sdxl"], ["sdxl/model_index.json"]),
    ],
)
def test_a_missing_model_file_is_a_model_error_naming_it(model_dir, tmp_path, remove, named):
    broken = tmp_path / "models"
    shutil.copytree(model_dir, broken)
    for part in remove:
        target = broken / part
        shutil.rmtree(target) if target.is_dir() else target.unlink()
    with pytest.raises(ModelError) as error:
        load_instantid(broken, dtype="float32", device="cpu")
    for name in named:
        assert str(broken / name) in str(error.value)
    assert error.value.code == "model_error"


def test_a_wrong_dtype_or_an_absent_gpu_is_a_model_error(model_dir):
    with pytest.raises(ModelError, match="unknown torch dtype 'fp13'"):
        load_instantid(model_dir, dtype="fp13", device="cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ModelError, match="sees no CUDA GPU"):
            load_instantid(model_dir, dtype="float16", device="cuda")


def test_a_single_file_checkpoint_gets_a_conversion_hint(tmp_path):
    (tmp_path / "sdxl").mkdir()
    (tmp_path / "sdxl" / "juggernaut.safetensors").write_bytes(b"")
    with pytest.raises(ModelError, match="single-file checkpoint juggernaut.safetensors"):
        load_instantid(tmp_path, dtype="float32", device="cpu")


def test_a_corrupt_adapter_is_a_model_error(model_dir, tmp_path):
    broken = tmp_path / "models"
    shutil.copytree(model_dir, broken)
    (broken / "ip-adapter.bin").write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match="could not load InstantID"):
        load_instantid(broken, dtype="float32", device="cpu")


def test_an_unknown_style_lora_is_a_model_error(pipe):
    with pytest.raises(ModelError, match="no style LoRA 'watercolour'.*available: none"):
        pipe.use_style_lora("watercolour")
    pipe.use_style_lora(None)  # no LoRA: nothing to do


# -- the keypoint picture -----------------------------------------------------------------


def test_draw_keypoints_draws_instantids_limbs_and_points_on_a_blank_canvas():
    kps = np.array([[30, 40], [90, 40], [60, 70], [38, 100], [82, 100]], dtype=np.float64)
    picture = np.asarray(draw_keypoints((120, 130), kps))
    assert picture.shape == (130, 120, 3) and picture.dtype == np.uint8
    for (x, y), colour in zip(kps.astype(int), KEYPOINT_COLOURS, strict=True):
        assert tuple(picture[y, x]) == colour  # a full-colour disc on every point
    # the limb from the left eye to the nose, outside both discs: 60 % of the eye's red
    assert tuple(picture[55, 45]) == (153, 0, 0)
    # far from the face the canvas stays black
    assert not picture[:15].any() and not picture[:, :10].any()
    assert set(map(tuple, picture.reshape(-1, 3))) <= {(0, 0, 0)} | set(KEYPOINT_COLOURS) | {
        tuple(int(c * 0.6) for c in colour) for colour in KEYPOINT_COLOURS
    }


# -- the Stylizer adapter, as stages.render_candidate calls it ------------------------------


class FakeArcFace:
    """A `FaceAnalyzer` with a 512-d embedding: one face filling the middle of the picture,
    an 'identity' that follows the pixels (the insightface engine has its own tests)."""

    name, version, default_threshold = "fake-arcface", "test", 0.3

    def __init__(self, dim: int = 512):
        self.projection = np.random.default_rng(11).normal(size=(dim, 48))

    def detect(self, rgb, min_score=0.75):
        h, w = rgb.shape[:2]
        points = tuple((w * x, h * y) for x, y in [(0.35, 0.4), (0.65, 0.4), (0.5, 0.55), (0.38, 0.7), (0.62, 0.7)])
        return [Face(Box(w * 0.2, h * 0.2, w * 0.6, h * 0.6), 0.9, points, np.zeros(15, np.float32))]

    def embed(self, rgb, face):
        cells = np.asarray(Image.fromarray(rgb).resize((4, 4)), dtype=np.float64).ravel() / 255.0
        vector = self.projection @ (cells - cells.mean())
        return (vector / np.linalg.norm(vector)).astype(np.float32)


@pytest.fixture(scope="module")
def portrait() -> np.ndarray:
    rng = np.random.default_rng(3)
    base = np.linspace(40, 220, 80 * 64 * 3).reshape(64, 80, 3)
    return np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def stylizer(model_dir):
    return InstantIdStylizer(model_dir, FakeArcFace(), device="cpu", dtype="float32", steps=2, resolution=64)


def oil_style(**diffusion) -> Style:
    return Style(
        id="oil",
        name="Oil",
        description="Oil.",
        embedded=EmbeddedStyleParams(builtin={0: 1.0}),
        diffusion=DiffusionStyleParams(**{"prompt": "an oil painting, thick brush strokes", "strength": 0.5, **diffusion}),
        identity_threshold=0.3,
    )


def test_the_stylizer_renders_candidates_as_render_candidate_calls_it(stylizer, portrait, pipe):
    first = render_candidate(portrait, oil_style(), stylizer, seed=42, variant=0, round_no=0, retry_decay=0.6)
    assert first.image.shape == portrait.shape and first.image.dtype == np.uint8
    assert first.strength == 0.5
    again = render_candidate(portrait, oil_style(), stylizer, seed=42, variant=0, round_no=0, retry_decay=0.6)
    np.testing.assert_array_equal(first.image, again.image)  # a re-run reproduces the proof
    other = render_candidate(portrait, oil_style(), stylizer, seed=43, variant=1, round_no=0, retry_decay=0.6)
    assert differ(first.image, other.image) > 0
    retry = render_candidate(portrait, oil_style(), stylizer, seed=42, variant=0, round_no=2, retry_decay=0.6)
    assert retry.strength == pytest.approx(0.18) and retry.image.shape == portrait.shape
    assert stylizer.pipeline() is pipe  # the process-wide pipeline, loaded once
    assert stylizer.name and "sdxl+instantid" in stylizer.version


def test_a_round_of_variants_is_one_batch_and_each_picture_depends_on_its_seed_only(stylizer, portrait, pipe):
    batches = []
    hook = pipe.unet.register_forward_pre_hook(lambda module, args: batches.append(args[0].shape[0]))
    try:
        together = render_candidates(portrait, oil_style(), stylizer, 42, [0, 1, 2], 0, 0.6)
    finally:
        hook.remove()
    # 3 variants, classifier-free guidance doubles the batch: one UNet batch of 6 per step
    assert batches and set(batches) == {6}
    assert [c.variant for c in together] == [0, 1, 2] and len({c.seed for c in together}) == 3
    assert all(c.zoom == 1.0 and c.strength == 0.5 for c in together)  # variants differ by their seed alone
    alone = render_candidates(portrait, oil_style(), stylizer, 42, [1], 0, 0.6)[0]
    assert alone.seed == together[1].seed
    assert differ(alone.image, together[1].image) <= 2  # float rounding of a larger batch, not another picture
    assert differ(together[0].image, together[1].image) > 10
    retry = render_candidates(portrait, oil_style(), stylizer, 42, [1, 2], 1, 0.6)
    assert [c.strength for c in retry] == [0.3, 0.3] and [c.seed for c in retry] == [c.seed for c in together[1:]]


def test_the_memory_profile_caps_the_batch(model_dir, portrait):
    from photogen_pipelines.engines.memory_profiles import PROFILES

    one_at_a_time = dataclasses.replace(PROFILES["cpu"], name="cpu-batch-1", max_batch=1)
    stylizer = InstantIdStylizer(model_dir, FakeArcFace(), device="cpu", profile=one_at_a_time, steps=2, resolution=64)
    batches = []
    hook = stylizer.pipeline().unet.register_forward_pre_hook(lambda module, args: batches.append(args[0].shape[0]))
    try:
        stylizer.stylize_variants(portrait, oil_style().diffusion.model_dump(), 0.5, [1, 2, 3])
    finally:
        hook.remove()
    assert set(batches) == {2} and len(batches) == 3  # three calls, one image (and its unconditional twin) each


def test_strength_is_the_part_of_the_schedule_run_over_the_photo(model_dir, portrait):
    stylizer = InstantIdStylizer(model_dir, FakeArcFace(), device="cpu", dtype="float32", steps=4, resolution=64)
    params = oil_style().diffusion.model_dump(exclude_none=True)
    calls = []
    hook = stylizer.pipeline().unet.register_forward_pre_hook(lambda module, args: calls.append(1))
    try:
        for strength, steps_run in [(1.0, 4), (0.5, 2), (0.25, 1), (0.1, 1)]:
            calls.clear()
            stylizer.stylize(portrait, params, strength)
            assert len(calls) == steps_run, strength
    finally:
        hook.remove()


def test_the_stylizer_needs_a_diffusion_prompt_and_an_arcface_embedding(model_dir, stylizer, portrait):
    catalog_style = {"builtin": {19: 1.0}, "strength": 0.5, "preserve_color": False}  # today's styles.yaml
    with pytest.raises(ModelError, match="no diffusion prompt"):
        stylizer.stylize(portrait, catalog_style, 0.5)
    sface_like = InstantIdStylizer(model_dir, FakeArcFace(dim=128), device="cpu", dtype="float32", steps=2, resolution=64)
    with pytest.raises(ModelError, match="512-d ArcFace embedding; fake-arcface gives 128-d"):
        sface_like.stylize(portrait, oil_style().diffusion.model_dump(), 0.5)
    with pytest.raises(ModelError, match="no style LoRA 'watercolour'"):
        stylizer.stylize(portrait, {**oil_style().diffusion.model_dump(), "lora": "watercolour"}, 0.5)


def test_the_working_size_keeps_the_aspect_in_multiples_of_64():
    assert working_size(768, 1024, 1024) == (768, 1024)
    assert working_size(1000, 1500, 1024) == (704, 1024)
    assert working_size(80, 64, 64) == (64, 64)


# -- memory profiles -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("device", "gib", "expected"),
    [("cpu", None, "cpu"), ("cuda", 8.0, "low"), ("cuda", 11.5, "low"), ("cuda", 24.0, "medium"), ("cuda", 80.0, "high")],
)
def test_auto_picks_the_largest_profile_the_card_holds(device, gib, expected):
    from photogen_pipelines.engines.memory_profiles import resolve_profile

    assert resolve_profile("auto", device, gib).name == expected


def test_a_profile_is_a_known_name_and_gpu_profiles_need_a_gpu():
    from photogen_pipelines.engines.memory_profiles import PROFILES, resolve_profile

    assert resolve_profile("high-bf16", "cuda", 80.0).dtype == "bf16"
    assert PROFILES["low"].offload == "group" and PROFILES["low"].max_batch == 1
    assert PROFILES["high"].offload == "none" and not PROFILES["high"].vae_tiling
    with pytest.raises(ModelError, match="unknown memory profile 'huge'"):
        resolve_profile("huge", "cuda", 80.0)
    with pytest.raises(ModelError, match="needs a CUDA GPU"):
        resolve_profile("medium", "cpu")


def test_the_cpu_profile_loads_resident_and_the_fp16_fix_vae_is_a_folder(model_dir, tmp_path):
    pipe = load_instantid(model_dir, device="cpu", profile="cpu")
    assert pipe.memory_profile.name == "cpu" and pipe.unet.dtype == torch.float32 and pipe.device.type == "cpu"
    with pytest.raises(ModelError, match="vae-fp16-fix/config.json"):
        load_instantid(model_dir, device="cpu", profile="cpu", vae="fp16-fix")
    with pytest.raises(ModelError, match="unknown VAE 'tiny'"):
        load_instantid(model_dir, device="cpu", profile="cpu", vae="tiny")
    with_fix = tmp_path / "with-fix"
    shutil.copytree(model_dir, with_fix)
    shutil.copytree(model_dir / "sdxl" / "vae", with_fix / "vae-fp16-fix")
    fixed = load_instantid(with_fix, device="cpu", profile="cpu", vae="fp16-fix")
    assert fixed is not pipe and Path(fixed.vae.config._name_or_path) == with_fix / "vae-fp16-fix"


@pytest.mark.parametrize("offload", ["model", "group"])
def test_the_offloading_profiles_generate(model_dir, offload):
    """The offload hooks wired as on a GPU; on the CPU both devices are the CPU, so this
    proves the wiring (hooks, the face projection under model offload), not the memory."""
    from photogen_pipelines.engines.memory_profiles import PROFILES

    base = PROFILES["medium" if offload == "model" else "low"]
    profile = dataclasses.replace(base, name=f"{base.name}-on-cpu", dtype="fp32")
    pipe = load_instantid(model_dir, device="cpu", profile=profile)
    assert pipe.vae.use_tiling and pipe.vae.use_slicing
    face = np.random.default_rng(5).normal(size=512).astype(np.float32)
    images = pipe("a portrait", face, KPS, height=SIZE, width=SIZE, num_inference_steps=2, output_type="np").images
    assert images.shape == (1, SIZE, SIZE, 3) and np.isfinite(images).all()
