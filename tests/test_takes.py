"""The takes of an order on the embedded engine: proofs a customer can tell apart, the
whole picture painted, and dark skin painted as well as light, on real portraits with
the real style networks."""

from pathlib import Path

import numpy as np
import pytest

from photogen_pipelines.catalog import load_products, load_styles
from photogen_pipelines.engines.faces_opencv import OpenCvFaceAnalyzer
from photogen_pipelines.engines.stylize_magenta import MagentaStylizer
from photogen_pipelines.generation import stages, takes
from photogen_pipelines.imaging.variety import VARIETY_FLOOR, proof_distance, proof_variety

FACES = Path(__file__).parents[1] / "photogen_pipelines" / "catalog" / "reference_faces"
SEED = 20261129


@pytest.fixture(scope="module")
def engines():
    return OpenCvFaceAnalyzer(), MagentaStylizer()


@pytest.fixture(scope="module")
def portraits(engines):
    faces, _ = engines
    product = load_products().get("poster_12x18")
    return {
        name: stages.prepare_selfie((FACES / f"{name}.jpg").read_bytes(), product, faces, 1024)
        for name in ("obama_senate", "ardern_2022")
    }


def render(selfie, style, stylizer, variants):
    return stages.render_candidates(selfie.portrait, style, stylizer, SEED, variants, 0, 0.6, selfie.portrait_face.box)


@pytest.mark.slow
@pytest.mark.parametrize("style_id", load_styles().ids())
def test_the_proofs_of_an_order_are_different_takes_above_the_variety_floor(engines, portraits, style_id):
    _, stylizer = engines
    style = load_styles().get(style_id)
    for name, selfie in portraits.items():
        candidates = render(selfie, style, stylizer, [0, 1, 2, 3, 6])
        assert [c.take for c in candidates] == ["classic", "palette", "close", "bold", "classic"]
        variety = proof_variety([c.image for c in candidates[:4]])
        assert variety >= VARIETY_FLOOR, f"{style_id} on {name}: variety {variety:.3f}"
        # variant 6 is the classic take again with its own jitter: the same picture to a
        # customer, and the metric says so
        assert proof_distance(candidates[0].image, candidates[4].image) < VARIETY_FLOOR


def test_a_take_is_reproduced_by_its_seed(engines, portraits):
    _, stylizer = engines
    style = load_styles().get("sepia_oil")
    first = render(portraits["ardern_2022"], style, stylizer, [1, 4])
    again = render(portraits["ardern_2022"], style, stylizer, [1, 4])
    assert all(np.array_equal(a.image, b.image) for a, b in zip(first, again, strict=True))
    assert [c.take for c in first] == ["palette", "backdrop"]


def test_the_whole_picture_is_painted_and_the_face_keeps_the_photograph_by_strength(engines, portraits):
    _, stylizer = engines
    selfie = portraits["ardern_2022"]
    style = load_styles().get("crimson_expression")
    proof = render(selfie, style, stylizer, [0])[0].image.astype(np.float32)
    photo = selfie.portrait.astype(np.float32)
    face = takes.ellipse_mask(photo.shape[:2], selfie.portrait_face.box, grow=0.6, feather=0.01) > 0.5
    backdrop = takes.bust_mask(photo.shape[:2], selfie.portrait_face.box) < 0.01
    difference = np.abs(proof - photo).mean(axis=2)
    # clothing and backdrop carry none of the photograph's colours; the face keeps some
    assert difference[backdrop].mean() > 80
    assert difference[face].mean() < 0.6 * difference[backdrop].mean()


def test_a_face_in_shadow_is_lifted_for_the_network_and_keeps_its_own_depth(engines, portraits):
    faces, stylizer = engines
    dark, light = portraits["obama_senate"], portraits["ardern_2022"]
    dark_curve = takes.lift_curve(dark.portrait, dark.portrait_face.box)
    light_curve = takes.lift_curve(light.portrait, light.portrait_face.box)
    # the network sees both faces near the same bright mid-tone: the darker one lifted more
    dark_tone = takes.face_tone(dark.portrait, dark.portrait_face.box)
    light_tone = takes.face_tone(light.portrait, light.portrait_face.box)
    assert dark_tone < 0.45 < light_tone
    assert dark_curve[round(dark_tone * 255)] / 255 > max(0.65, dark_tone + 0.3)  # (MAX_LIFT_GAMMA caps it)
    assert light_curve is None or light_curve[round(light_tone * 255)] / 255 == pytest.approx(takes.FACE_MID_TONE, abs=0.02)
    inner = takes.ellipse_mask(dark.portrait.shape[:2], dark.portrait_face.box, grow=0.6, feather=0.01) > 0.5
    photo_tone = float(np.median(takes.luma(dark.portrait)[inner]))
    for style_id in ("sepia_oil", "ink_etching", "golden_mosaic"):
        proof = render(dark, load_styles().get(style_id), stylizer, [0])[0].image
        # the painting is not lightened: no whitening of the customer's skin
        assert abs(float(np.median(takes.luma(proof)[inner])) - photo_tone) < 0.12, style_id


def test_the_second_palette_is_a_blend_the_catalog_checks():
    from pydantic import ValidationError

    from photogen_pipelines.catalog import EmbeddedStyleParams

    assert EmbeddedStyleParams(builtin={10: 1.0}, second_palette={18: 1.0}).second_palette == {18: 1.0}
    with pytest.raises(ValidationError, match="second_palette"):
        EmbeddedStyleParams(builtin={10: 1.0}, second_palette="coffee")
    with pytest.raises(ValidationError, match="second_palette"):
        EmbeddedStyleParams(style_image="retina", second_palette={18: 1.0})
