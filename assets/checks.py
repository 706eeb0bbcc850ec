"""Quality gates, as asset checks with numbers the UI can plot."""

import warnings

import dagster as dg
import numpy as np

from assets.partitions import approved_orders_partitions, orders_partitions
from assets.printing import print_file, print_master
from assets.proofs import validated_proofs
from photogen_pipelines.generation.gates import print_spec_report, upscale_ssim
from photogen_pipelines.generation.safety import stored_proofs_safety
from photogen_pipelines.generation.stages import count_people
from photogen_pipelines.imaging.images import open_png
from photogen_pipelines.imaging.print_detail import print_pattern_scores
from photogen_pipelines.orders import lifecycle
from photogen_pipelines.storage.artifacts import Manifest, MasterInfo, OrderKeys, Validation
from resources import ArtifactStorage, CatalogResource, FaceEngine, OrdersDatabase

SEVERITY = {"warn": dg.AssetCheckSeverity.WARN, "error": dg.AssetCheckSeverity.ERROR}

# Partitioned checks are "preview" in Dagster 1.13 but are what a per-order gate needs.
warnings.filterwarnings("ignore", message="Specifying a partitions_def on an AssetCheckSpec", category=dg.PreviewWarning)


@dg.asset_check(asset=validated_proofs, partitions_def=orders_partitions, blocking=True)
def identity_preserved(context: dg.AssetCheckExecutionContext, storage: ArtifactStorage) -> dg.AssetCheckResult:
    """At least one proof is recognisably the customer: its similarity to the selfie
    reaches the style's threshold. Blocking: nothing is printed from a failed gate."""
    validation = OrderKeys(context.partition_key).load(storage.store(), Validation)
    passing = validation.passing_similarities()
    best = validation.best_similarity()  # as validated_proofs' own metadata reports it
    return dg.AssetCheckResult(
        passed=bool(passing),
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "best_similarity": dg.FloatMetadataValue(best),
            "threshold": dg.FloatMetadataValue(validation.threshold),
            "proofs_passed": dg.IntMetadataValue(len(passing)),
            "rounds": dg.IntMetadataValue(validation.rounds),
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
    validation = OrderKeys(context.partition_key).load(store, Validation)
    analyzer = faces.analyzer()
    counts = {
        variant: count_people(analyzer.detect(np.asarray(open_png(store.get_bytes(key))), min_score=gate.min_face_score))
        for variant, key in validation.proofs.items()
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


@dg.asset_check(asset=validated_proofs, partitions_def=orders_partitions, blocking=True)
def proofs_are_safe(
    context: dg.AssetCheckExecutionContext, storage: ArtifactStorage, catalog: CatalogResource
) -> dg.AssetCheckResult:
    """No stored proof is explicit: each was scored by the content-safety detector under
    quality.yaml's content_safe threshold for outputs (an attempt over it was regenerated,
    and an order with none under it rejected and refunded). Blocking: a proof that was not
    checked, or is over the line, is never shown or printed."""
    gate = catalog.quality().content_safe
    validation = OrderKeys(context.partition_key).load(storage.store(), Validation)
    report = stored_proofs_safety(validation, gate.max_explicit_score.output)
    problems = report.problems()
    return dg.AssetCheckResult(
        passed=not problems,
        severity=SEVERITY[gate.severity],
        metadata={
            "highest_explicit_score": dg.FloatMetadataValue(report.highest if report.highest is not None else -1.0),
            "max_explicit_score": dg.FloatMetadataValue(report.max_explicit),
            "proofs_checked": dg.IntMetadataValue(len(report.scores)),
            "attempts_flagged": dg.IntMetadataValue(report.flagged_attempts),
        },
        description="; ".join(problems) or None,
    )


def _approved_proof_and_master(storage: ArtifactStorage, order_id: str):
    """The proof the master was made from and the master, read back from storage."""
    store, keys = storage.store(), OrderKeys(order_id)
    approved = keys.load(store, MasterInfo).proof
    return open_png(store.get_bytes(keys.proof(approved))), open_png(store.get_bytes(keys.print_master))


@dg.asset_check(asset=print_master, partitions_def=approved_orders_partitions, blocking=True)
def upscale_faithful(
    context: dg.AssetCheckExecutionContext, storage: ArtifactStorage, catalog: CatalogResource
) -> dg.AssetCheckResult:
    """The print master, scaled back to the proof's size, is structurally the proof the
    customer approved (SSIM): the upscaler invented no new picture."""
    gate = catalog.quality().upscale_faithful
    proof, master = _approved_proof_and_master(storage, context.partition_key)
    ssim = upscale_ssim(proof, master)
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


@dg.asset_check(asset=print_master, partitions_def=approved_orders_partitions, blocking=True)
def print_detail_clean(
    context: dg.AssetCheckExecutionContext, storage: ArtifactStorage, orders: OrdersDatabase, catalog: CatalogResource
) -> dg.AssetCheckResult:
    """At 100 % the print master shows no pattern the proof does not hold: on crops spread
    over the master, its band-pass energy stays within max_pattern_score of the proof
    upscaled by Lanczos. A Real-ESRGAN pass over the style's brush texture draws a maze
    over the whole print, face included. `warn` by default: the score is a measurement of
    a few styles and faces, and a flagged file is still printable. A tier that promises a
    better print makes it `error` (quality.yaml tier_severity): the file is held back and
    the order fails with the score, and the failure sensor refunds."""
    gate = catalog.quality().print_detail_clean
    book = orders.book()
    severity = gate.severity_for(book.get(context.partition_key).tier)
    proof, master = _approved_proof_and_master(storage, context.partition_key)
    scores = print_pattern_scores(proof, master)
    worst, median = max(scores), float(np.median(scores))
    if worst > gate.max_pattern_score and severity == "error":
        lifecycle.fail(
            book,
            context.partition_key,
            reason=f"print_detail_failed: a 100 % crop scores {worst:.2f} (limit {gate.max_pattern_score})",
        )
    return dg.AssetCheckResult(
        passed=worst <= gate.max_pattern_score,
        severity=SEVERITY[severity],
        metadata={
            "pattern_score": dg.FloatMetadataValue(round(worst, 3)),
            "median_pattern_score": dg.FloatMetadataValue(round(median, 3)),
            "max_pattern_score": dg.FloatMetadataValue(gate.max_pattern_score),
            "crops": dg.IntMetadataValue(len(scores)),
        },
        description=None
        if worst <= gate.max_pattern_score
        else f"a 100 % crop scores {worst:.2f} against the proof by Lanczos (limit {gate.max_pattern_score}): a maze",
    )


@dg.asset_check(asset=print_file, partitions_def=approved_orders_partitions, blocking=True)
def print_spec_met(
    context: dg.AssetCheckExecutionContext, storage: ArtifactStorage, orders: OrdersDatabase, catalog: CatalogResource
) -> dg.AssetCheckResult:
    """The file a provider receives has the product's exact pixels, DPI tags, the sRGB
    profile and a resolution above the provider's minimum, read back from storage.
    Blocking: the `delivery` step after it delivers only a file that passed (or only
    warned); an `error` failure fails the order with the problems, and the failure sensor
    refunds."""
    store, keys = storage.store(), OrderKeys(context.partition_key)
    book = orders.book()
    product = catalog.products().get(book.get(context.partition_key).product_id)
    gate = catalog.quality().print_spec_met
    manifest = keys.load(store, Manifest)
    report = print_spec_report(store.get_bytes(manifest.file), manifest, product, gate.max_megabytes)
    problems = report.problems
    if problems and gate.severity == "error":
        lifecycle.fail(book, context.partition_key, reason="print_spec_failed: " + "; ".join(problems))
    return dg.AssetCheckResult(
        passed=not problems,
        severity=SEVERITY[gate.severity],
        metadata={
            "max_megabytes": dg.FloatMetadataValue(gate.max_megabytes),
            "width_px": dg.IntMetadataValue(report.pixel_size[0]),
            "height_px": dg.IntMetadataValue(report.pixel_size[1]),
            "effective_dpi": dg.FloatMetadataValue(manifest.effective_dpi),
            "megabytes": dg.FloatMetadataValue(round(manifest.bytes / 2**20, 2)),
        },
        description="; ".join(problems) or None,
    )
