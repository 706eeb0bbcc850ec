"""Quality gates, as asset checks with numbers the UI can plot."""

import io
import warnings

import dagster as dg
import numpy as np
from PIL import Image
from skimage.metrics import structural_similarity

from assets.partitions import orders_partitions
from assets.printing import print_file, print_master
from assets.proofs import validated_proofs
from photogen_pipelines.imaging import SRGB_ICC, open_png
from photogen_pipelines.orders import OrderState
from photogen_pipelines.stages import count_people
from photogen_pipelines.storage import OrderKeys, get_json
from resources import ArtifactStorage, CatalogResource, FaceEngine, OrdersDatabase

SEVERITY = {"warn": dg.AssetCheckSeverity.WARN, "error": dg.AssetCheckSeverity.ERROR}

# Partitioned checks are "preview" in Dagster 1.13 but are what a per-order gate needs.
warnings.filterwarnings("ignore", message="Specifying a partitions_def on an AssetCheckSpec", category=dg.PreviewWarning)


@dg.asset_check(asset=validated_proofs, partitions_def=orders_partitions, blocking=True)
def identity_preserved(context: dg.AssetCheckExecutionContext, storage: ArtifactStorage) -> dg.AssetCheckResult:
    """At least one proof is recognisably the customer: its similarity to the selfie
    reaches the style's threshold. Blocking: nothing is printed from a failed gate."""
    validation = get_json(storage.store(), OrderKeys(context.partition_key).validation)
    passing = [s["similarity"] for s in validation["scores"] if s["passed"]]
    best = max((s["similarity"] or -1.0 for s in validation["scores"]), default=-1.0)
    return dg.AssetCheckResult(
        passed=bool(passing),
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "best_similarity": dg.FloatMetadataValue(best),
            "threshold": dg.FloatMetadataValue(validation["threshold"]),
            "proofs_passed": dg.IntMetadataValue(len(passing)),
            "rounds": dg.IntMetadataValue(validation["rounds"]),
        },
        description=None if passing else "no proof reached the identity threshold; the order is rejected",
    )


@dg.asset_check(asset=validated_proofs, partitions_def=orders_partitions)
def one_face_per_proof(
    context: dg.AssetCheckExecutionContext, storage: ArtifactStorage, catalog: CatalogResource, faces: FaceEngine
) -> dg.AssetCheckResult:
    """Every stored proof shows exactly one person, read back from storage: no face lost to
    the style, no second face painted into the background."""
    gate = catalog.quality().one_face_per_proof
    store = storage.store()
    validation = get_json(store, OrderKeys(context.partition_key).validation)
    analyzer = faces.analyzer()
    counts = {
        int(variant): count_people(analyzer.detect(np.asarray(open_png(store.get_bytes(key))), min_score=gate.min_face_score))
        for variant, key in validation["proofs"].items()
    }
    wrong = {v: n for v, n in counts.items() if n != 1}
    return dg.AssetCheckResult(
        passed=not wrong,
        severity=SEVERITY[gate.severity],
        metadata={
            "proofs_checked": dg.IntMetadataValue(len(counts)),
            "proofs_with_one_face": dg.IntMetadataValue(len(counts) - len(wrong)),
            "max_faces": dg.IntMetadataValue(max(counts.values(), default=0)),
        },
        description="; ".join(f"proof {v} shows {n} faces" for v, n in sorted(wrong.items())) or None,
    )


@dg.asset_check(asset=print_master, partitions_def=orders_partitions, blocking=True)
def upscale_faithful(
    context: dg.AssetCheckExecutionContext, storage: ArtifactStorage, catalog: CatalogResource
) -> dg.AssetCheckResult:
    """The print master, scaled back to the proof's size, is structurally the proof the
    customer approved (SSIM): the upscaler invented no new picture."""
    gate = catalog.quality().upscale_faithful
    store, keys = storage.store(), OrderKeys(context.partition_key)
    approved = get_json(store, keys.master_info)["proof"]
    proof = open_png(store.get_bytes(keys.proof(approved))).convert("L")
    master = open_png(store.get_bytes(keys.print_master)).convert("L")
    scaled = master.resize(proof.size, Image.LANCZOS)
    ssim = float(structural_similarity(np.asarray(proof), np.asarray(scaled), data_range=255))
    return dg.AssetCheckResult(
        passed=ssim >= gate.min_ssim,
        severity=SEVERITY[gate.severity],
        metadata={
            "ssim": dg.FloatMetadataValue(round(ssim, 4)),
            "min_ssim": dg.FloatMetadataValue(gate.min_ssim),
            "master_px": dg.TextMetadataValue(f"{master.width}x{master.height}"),
        },
        description=None if ssim >= gate.min_ssim else f"SSIM {ssim:.3f} is below {gate.min_ssim}",
    )


@dg.asset_check(asset=print_file, partitions_def=orders_partitions, blocking=True)
def print_spec_met(
    context: dg.AssetCheckExecutionContext, storage: ArtifactStorage, orders: OrdersDatabase, catalog: CatalogResource
) -> dg.AssetCheckResult:
    """The file a provider receives has the product's exact pixels, DPI tags, the sRGB
    profile and a resolution above the provider's minimum, read back from storage.
    Passing delivers the order (`ready`); failing fails it, and the failure sensor refunds."""
    store, keys = storage.store(), OrderKeys(context.partition_key)
    order = orders.book().get(context.partition_key)
    product = catalog.products().get(order.product_id)
    gate = catalog.quality().print_spec_met
    manifest = get_json(store, keys.manifest)
    with Image.open(io.BytesIO(store.get_bytes(manifest["file"]))) as image:
        size, dpi, icc = image.size, image.info.get("dpi", (0, 0)), image.info.get("icc_profile")
    problems = []
    if size != product.pixel_size:
        problems.append(f"pixel size {size} is not {product.pixel_size}")
    if round(float(dpi[0])) != product.dpi or round(float(dpi[1])) != product.dpi:
        problems.append(f"DPI tags {dpi} are not {product.dpi}")
    if icc != SRGB_ICC:
        problems.append("the sRGB profile is missing")
    if manifest["effective_dpi"] < product.min_dpi:
        problems.append(f"effective DPI {manifest['effective_dpi']} is below {product.min_dpi}")
    megabytes = manifest["bytes"] / 2**20
    if megabytes > gate.max_megabytes:
        problems.append(f"the file is {megabytes:.0f} MB; providers take up to {gate.max_megabytes:.0f} MB")
    book = orders.book()
    if problems and gate.severity == "error":
        book.transition(context.partition_key, OrderState.FAILED, reason="print_spec_failed: " + "; ".join(problems))
    else:
        book.transition(context.partition_key, OrderState.READY, reason="print file checked and delivered")
    return dg.AssetCheckResult(
        passed=not problems,
        severity=SEVERITY[gate.severity],
        metadata={
            "max_megabytes": dg.FloatMetadataValue(gate.max_megabytes),
            "width_px": dg.IntMetadataValue(size[0]),
            "height_px": dg.IntMetadataValue(size[1]),
            "effective_dpi": dg.FloatMetadataValue(manifest["effective_dpi"]),
            "megabytes": dg.FloatMetadataValue(round(manifest["bytes"] / 2**20, 2)),
        },
        description="; ".join(problems) or None,
    )
