"""The imaging stages on real images: framing, the identity gate loop, the print master."""

import numpy as np
import pytest

from photogen_pipelines.catalog import load_products, load_styles
from photogen_pipelines.generation.stages import (
    identity_gate,
    make_print_master,
    native_dpi,
    plan_passes,
    prepare_selfie,
    render_candidate,
    render_candidates,
    score_candidate,
    variant_seed,
)
from photogen_pipelines.imaging.images import png_bytes

PRODUCTS = load_products()
STYLES = load_styles()


@pytest.fixture(scope="module")
def astronaut_selfie(analyzer, astronaut_png):
    return prepare_selfie(astronaut_png, PRODUCTS.get("poster_12x18"), analyzer, proof_long_side=512)


def test_selfie_is_framed_at_the_products_aspect_around_the_face(astronaut_selfie):
    portrait = astronaut_selfie.portrait
    width, height = PRODUCTS.get("poster_12x18").pixel_size
    assert max(portrait.shape[:2]) == 512
    assert portrait.shape[1] / portrait.shape[0] == pytest.approx(width / height, abs=0.01)
    face = astronaut_selfie.portrait_face.box
    # head and shoulders: the face is in the upper half, horizontally near the centre
    assert face.y + face.h / 2 < portrait.shape[0] / 2
    assert abs(face.x + face.w / 2 - portrait.shape[1] / 2) < portrait.shape[1] * 0.15


def test_variants_are_reproducible_and_differ_from_each_other(astronaut_selfie, stylizer):
    style = STYLES.get("sepia_oil")
    first = [render_candidate(astronaut_selfie.portrait, style, stylizer, variant_seed(42, v), v, 0, 0.6) for v in range(3)]
    again = render_candidate(astronaut_selfie.portrait, style, stylizer, variant_seed(42, 1), 1, 0, 0.6)
    assert np.array_equal(first[1].image, again.image)
    assert not np.array_equal(first[0].image, first[1].image)
    assert not np.array_equal(first[1].image, first[2].image)


def test_every_catalog_style_looks_different(astronaut_selfie, stylizer):
    renders = {
        s.id: render_candidate(astronaut_selfie.portrait, s, stylizer, 1, 0, 0, 0.6).image.astype(float) for s in STYLES.styles
    }
    assert len(renders) >= 6
    ids = list(renders)
    for i, a in enumerate(ids):
        for b in ids[i + 1 :]:
            assert np.abs(renders[a] - renders[b]).mean() > 8.0, (a, b)


def _gate(selfie, style, stylizer, analyzer, max_rounds, variants=1):
    # one variant, the classic take: at strength 1 no photograph is left in the face
    def render(variants, round_no):
        return render_candidates(selfie.portrait, style, stylizer, 7, variants, round_no, 0.6, selfie.portrait_face.box)

    return identity_gate(
        render(list(range(variants)), 0),
        render,
        lambda c: score_candidate(c, selfie.embedding, style.identity_threshold, analyzer),
        max_rounds,
    )


def test_full_strength_fails_the_gate_and_a_weaker_retry_recovers(astronaut_selfie, stylizer, analyzer):
    style = STYLES.get("pastel_cubist").model_copy(deep=True)
    style.embedded.strength = 1.0
    result = _gate(astronaut_selfie, style, stylizer, analyzer, max_rounds=3)
    first_round = [s for s in result.scores if s.round == 0]
    assert first_round and not any(s.passed for s in first_round)
    assert not result.rejected
    recovered = [s for s in result.scores if s.passed]
    assert all(s.round > 0 and s.strength < 1.0 for s in recovered)
    assert all(s.similarity >= style.identity_threshold for s in recovered)
    # each retry lowers the strength
    for variant in {s.variant for s in result.scores}:
        strengths = [s.strength for s in result.scores if s.variant == variant]
        assert strengths == sorted(strengths, reverse=True) and len(set(strengths)) == len(strengths)


def test_without_retries_full_strength_is_rejected_with_a_reason(astronaut_selfie, stylizer, analyzer):
    style = STYLES.get("pastel_cubist").model_copy(deep=True)
    style.embedded.strength = 1.0
    result = _gate(astronaut_selfie, style, stylizer, analyzer, max_rounds=1)
    assert result.rejected and result.best_variant() is None
    assert "after 1 rounds" in result.rejection_reason()


def test_a_proof_of_someone_else_fails_the_gate(astronaut_selfie, analyzer, face_images):
    from photogen_pipelines.generation.stages import Candidate

    stranger = Candidate(0, 0, 1, 0.5, 1.0, face_images["obama"])
    score = score_candidate(stranger, astronaut_selfie.embedding, 0.4, analyzer)
    assert not score.passed and score.similarity < 0.3 and "below" in score.reason


@pytest.mark.parametrize(
    ("product_id", "expected_passes"),
    [("poster_12x18", [4]), ("poster_a3", [4]), ("poster_a2", [4, 2]), ("canvas_24x36", [4, 2])],
)
def test_large_products_get_a_second_upscale_pass(product_id, expected_passes):
    product = PRODUCTS.get(product_id)
    width, height = product.pixel_size
    proof_size = (round(1024 * width / height), 1024)
    passes = plan_passes(proof_size, product, (2, 3, 4), target_dpi=200, max_passes=2)
    assert passes == expected_passes
    assert native_dpi((proof_size[0] * np.prod(passes), 1024 * np.prod(passes)), product) >= 200


def test_a_second_x4_pass_starts_from_a_smaller_picture_rather_than_overshoot(tmp_path):
    """With a x4-only model, as the production x4plus weights are (a tiny random RRDBNet here)."""
    import torch

    from photogen_pipelines.catalog import Product
    from photogen_pipelines.engines.upscale_torch import RRDBNet, TorchRealEsrgan

    torch.save({"params_ema": RRDBNet(num_feat=8, num_block=1, num_grow_ch=4).state_dict()}, tmp_path / "x4.pth")
    upscaler = TorchRealEsrgan(tmp_path / "x4.pth", device="cpu", tile=128, batch=4)
    inputs, upscale = [], upscaler.upscale
    upscaler.upscale = lambda image, scale: inputs.append(image.shape[:2]) or upscale(image, scale)
    product = Product(id="small", name="Small", width_in=4, height_in=6, dpi=300, min_dpi=150, price_cents=100)
    proof = np.full((180, 120, 3), 128, dtype=np.uint8)  # 30 DPI: x4 reaches 120, short of 200
    master, info = make_print_master(proof, product, upscaler, target_dpi=200, max_passes=2)
    assert info.passes == [4, 4]
    # the first pass needs all of x4; the second only x1.67, so it starts from 300x200, not 720x480
    assert inputs == [(180, 120), (300, 200)]
    assert info.native_size == (800, 1200) and info.effective_dpi == 200.0
    assert master.size == product.pixel_size == (1200, 1800)


def test_print_master_has_the_products_exact_pixels(upscaler, face_images):
    from PIL import Image

    from photogen_pipelines.catalog import Product

    # a 2 x 3 in print keeps the test fast; the catalog's sizes run the same code
    product = Product(id="mini", name="Mini", width_in=2, height_in=3, bleed_mm=2, price_cents=100)
    proof = np.asarray(Image.fromarray(face_images["ardern"]).resize((171, 256)))
    master, info = make_print_master(proof, product, upscaler, target_dpi=300, max_passes=2)
    assert master.size == product.pixel_size == (647, 947)
    assert info.passes == [4] and info.native_size == (684, 1024)
    bleed_in = 2 * 2 / 25.4
    assert info.effective_dpi == pytest.approx(min(684 / (2 + bleed_in), 1024 / (3 + bleed_in)), abs=0.1)
    # what the customer approved, per inch: the picture's own detail, whatever the file's tag says
    assert info.source_dpi == pytest.approx(min(171 / (2 + bleed_in), 256 / (3 + bleed_in)), abs=0.1)
    assert info.soften_sigma > 0  # the model sees the proof without its brush texture
    # the master is the proof, larger: scaled back down it matches the proof closely
    back = np.asarray(master.resize(proof.shape[1::-1], Image.LANCZOS), dtype=float)
    assert np.abs(back - proof).mean() < 12


def test_print_master_refuses_a_resolution_below_the_products_minimum(upscaler):
    from photogen_pipelines.errors import PhotoGenError

    product = PRODUCTS.get("canvas_24x36")
    proof = np.zeros((64, 43, 3), dtype=np.uint8)
    with pytest.raises(PhotoGenError) as raised:
        make_print_master(proof, product, upscaler, target_dpi=200, max_passes=1)
    assert raised.value.code == "dpi_below_minimum"


def test_png_roundtrip_keeps_pixels(face_images):
    from photogen_pipelines.imaging.images import open_png

    image = face_images["ardern"]
    assert np.array_equal(np.asarray(open_png(png_bytes(image))), image)


def test_the_embedded_srgb_profile_is_the_same_bytes_in_every_process():
    # the print_spec_met check runs in another process than print_file; LittleCMS used to
    # stamp the time into the profile, so the check saw "a different profile" (found end to end)
    import io
    import subprocess
    import sys
    import time

    from PIL import ImageCms

    from photogen_pipelines.imaging.images import SRGB_ICC

    time.sleep(1.1)
    other = subprocess.run(
        [sys.executable, "-c", "from photogen_pipelines.imaging.images import SRGB_ICC; print(SRGB_ICC.hex())"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert bytes.fromhex(other.stdout.strip()) == SRGB_ICC
    assert "sRGB" in ImageCms.getProfileDescription(ImageCms.ImageCmsProfile(io.BytesIO(SRGB_ICC)))
