"""The premium tier's print is the cleanest print, by the pattern score the print_detail_clean
check uses, and the check holds back a premium print that fails it (issue: "the premium print
is the worst print").

Real parts: the embedded style network and Real-ESRGAN (ncnn) on a reference face, a real
Dagster instance for the check. The unit tests of the self-ensemble use a fake upscaler
with a pattern of its own, since only a fake has a pattern we know exactly."""

from __future__ import annotations

import statistics

import dagster as dg
import numpy as np
import pytest
import yaml
from PIL import Image

import assets
from photogen_pipelines.catalog import load_products, load_quality, load_styles
from photogen_pipelines.definitions import build_defs, register_local_order
from photogen_pipelines.imaging.print_detail import ensemble_upscale, print_pattern_scores
from photogen_pipelines.orders.states import OrderState
from photogen_pipelines.storage.artifacts import MasterInfo, OrderKeys


def _nearest(image: np.ndarray, scale: int) -> np.ndarray:
    return image.repeat(scale, axis=0).repeat(scale, axis=1)


def _nearest_with_stripes(image: np.ndarray, scale: int) -> np.ndarray:
    """An upscaler that draws its own diagonal stripes over everything, as Real-ESRGAN draws
    its fine grid: the same pattern whichever picture it is given."""
    out = _nearest(image, scale).astype(np.int16)
    rows, cols = np.indices(out.shape[:2])
    out += np.where((rows + 2 * cols) % 6 < 3, 24, -24)[..., None].astype(np.int16)
    return np.clip(out, 0, 255).astype(np.uint8)


def test_the_self_ensemble_puts_every_copy_back_where_it_was():
    """An upscaler that invents nothing gives the same picture with or without the ensemble:
    each mirrored or rotated copy is turned back exactly (a wrong inverse would smear it)."""
    rng = np.random.default_rng(7)
    image = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)  # neither square nor symmetric
    plain = _nearest(image, 2)
    for ensemble in (2, 4, 8):
        assert np.array_equal(ensemble_upscale(_nearest, image, 2, ensemble), plain), ensemble
    with pytest.raises(ValueError, match="ensemble"):
        ensemble_upscale(_nearest, image, 2, 3)


def test_the_self_ensemble_averages_away_what_the_model_invents():
    image = np.full((40, 40, 3), 128, np.uint8)
    pattern = {n: np.abs(ensemble_upscale(_nearest_with_stripes, image, 2, n).astype(int) - 128).mean() for n in (1, 4, 8)}
    assert pattern[1] == pytest.approx(24, abs=1)
    assert pattern[8] < pattern[4] < pattern[1] / 2


@pytest.fixture(scope="module")
def painted_proof() -> np.ndarray:
    """A real proof: the embedded style network's starry_swirl on a reference face, the case
    whose print drew the worst maze (BENCHMARKS.md, "Print detail at 100 %")."""
    from skimage import data

    from photogen_pipelines.engines.faces_opencv import OpenCvFaceAnalyzer
    from photogen_pipelines.engines.stylize_magenta import MagentaStylizer
    from photogen_pipelines.generation import stages
    from photogen_pipelines.imaging.images import png_bytes

    product = load_products().get("poster_12x18")
    style = next(s for s in load_styles().styles if s.id == "starry_swirl")
    selfie = stages.prepare_selfie(png_bytes(Image.fromarray(data.astronaut())), product, OpenCvFaceAnalyzer(), 1024)
    return stages.render_candidates(selfie.portrait, style, MagentaStylizer(), 12345, [0], 0, 0.6)[0].image


@pytest.mark.slow
def test_the_premium_print_is_cleaner_than_the_standard_one(painted_proof):
    """Premium's print, made as its tier says, scores lower than standard's on every crop
    statistic the check reads, and both pass the check."""
    from photogen_pipelines.engines.upscale_ncnn import NcnnRealEsrgan
    from photogen_pipelines.generation.stages import make_print_master

    catalog, limit = load_products(), load_quality().print_detail_clean.max_pattern_score
    product = catalog.get("poster_12x18")
    scores = {}
    for tier_id in ("standard", "premium"):
        tier = catalog.tier(tier_id)
        upscaler = NcnnRealEsrgan(tier.upscale_model or "REALESRGAN_ANIMAVIDEOV3")
        master, info = make_print_master(painted_proof, product, upscaler, ensemble=tier.print_ensemble)
        assert info.ensemble == tier.print_ensemble
        scores[tier_id] = print_pattern_scores(Image.fromarray(painted_proof), master)
    standard, premium = scores["standard"], scores["premium"]
    assert max(premium) <= limit and max(standard) <= limit
    assert max(premium) < max(standard)
    assert statistics.median(premium) < statistics.median(standard)


def _catalogs(tmp_path, max_pattern_score: float) -> dict[str, str]:
    """The packaged catalogs with a small print (fast to render) and a check so strict that
    every print fails it."""
    products = load_products().model_dump()
    products["products"].append(
        {"id": "print_2x3", "name": "2 x 3", "width_in": 2, "height_in": 3, "price_cents": 900, "tier_prices": {"premium": 1500}}
    )
    quality = load_quality().model_dump()
    quality["print_detail_clean"]["max_pattern_score"] = max_pattern_score
    (tmp_path / "products.yaml").write_text(yaml.safe_dump(products))
    (tmp_path / "quality.yaml").write_text(yaml.safe_dump(quality))
    return {"products_path": str(tmp_path / "products.yaml"), "quality_path": str(tmp_path / "quality.yaml")}


@pytest.mark.slow
@pytest.mark.parametrize("tier", ["standard", "premium"])
def test_a_patterned_print_is_held_back_only_where_the_tier_promises_quality(tmp_path, astronaut_png, tier):
    """With a limit every print fails: the standard print only warns and is delivered; the
    premium print is held back, its order failed with the score (the failure sensor refunds)."""
    assert load_quality().print_detail_clean.severity_for(tier) == ("error" if tier == "premium" else "warn")
    defs = build_defs(str(tmp_path / "home"), **_catalogs(tmp_path, max_pattern_score=0.01))
    (tmp_path / "dagster").mkdir()
    with dg.DagsterInstance.local_temp(str(tmp_path / "dagster")) as instance:
        order = register_local_order(defs, astronaut_png, "ink_etching", "print_2x3", approval="auto", tier=tier, variants=2)
        all_assets = [*assets.proof_assets, *assets.print_assets, *assets.order_checks]
        for selection in (assets.proof_assets, assets.print_assets):
            for partitions in {a.partitions_def.name for a in selection if a.partitions_def is not None}:
                instance.add_dynamic_partitions(partitions, [order.id])
            result = dg.materialize(
                all_assets,
                selection=selection,
                partition_key=order.id,
                instance=instance,
                resources=defs.resources,
                raise_on_error=False,
            )
        checks = {evaluation.check_name: evaluation for evaluation in result.get_asset_check_evaluations()}
        detail = checks["print_detail_clean"]
        assert not detail.passed
        assert detail.severity == (dg.AssetCheckSeverity.ERROR if tier == "premium" else dg.AssetCheckSeverity.WARN)
    book = defs.resources["orders"].book()
    settled = book.get(order.id)
    store = defs.resources["storage"].store()
    assert OrderKeys(order.id).load(store, MasterInfo).ensemble == load_products().tier(tier).print_ensemble
    if tier == "premium":
        assert settled.state is OrderState.FAILED and settled.reason.startswith("print_detail_failed: a 100 % crop scores")
        assert not store.exists(OrderKeys(order.id).print_file("jpeg"))
    else:
        assert settled.state is OrderState.READY
