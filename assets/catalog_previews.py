"""Catalog previews: each style rendered on the reference faces, for the storefront's catalog page."""

import time
import warnings
from collections.abc import Mapping
from datetime import UTC, datetime

import dagster as dg

from photogen_pipelines.catalog import load_styles
from photogen_pipelines.generation.previews import catalog_version, reference_faces, render_style_preview, store_style_preview
from photogen_pipelines.storage.artifacts import NO_FACE
from resources import ArtifactStorage, CatalogResource, FaceEngine, SafetyEngine, StyleEngine

GROUP = "catalog"

# One partition per style of the packaged catalog. A catalog an operator points
# CatalogResource at must keep these ids: partitions are fixed when the code loads.
styles_partitions = dg.StaticPartitionsDefinition(load_styles().ids())
# backfill_policy is marked beta in the Dagster we pin (1.13.27); it would print on every
# command that loads the definitions
warnings.filterwarnings("ignore", message="Parameter `backfill_policy`", category=dg.BetaWarning)


@dg.asset(
    partitions_def=styles_partitions,
    group_name=GROUP,
    kinds={"onnx", "image"},
    # a backfill of many styles is one run: the style engine's models load once (on the
    # GPU engine loading SDXL costs more than rendering one style)
    backfill_policy=dg.BackfillPolicy.single_run(),
)
def style_previews(
    context: dg.AssetExecutionContext,
    storage: ArtifactStorage,
    catalog: CatalogResource,
    faces: FaceEngine,
    styles: StyleEngine,
    safety: SafetyEngine,
) -> dg.MaterializeResult:
    """Each style on the reference faces, as a contact sheet the storefront shows; identity scored per face."""
    style_catalog = catalog.styles()
    stylizer = styles.stylizer()
    version = catalog_version(style_catalog, stylizer.version)
    store = storage.store()
    rendered = []
    for style_id in context.partition_keys:
        start = time.perf_counter()
        style = style_catalog.get(style_id)
        preview = render_style_preview(
            style, faces.analyzer(), stylizer, reference_faces(), safety=safety.gate(catalog.quality())
        )
        record = store_style_preview(store, preview, version, datetime.now(UTC))
        rendered.append((style, preview, record, time.perf_counter() - start))
        passed, scores = sum(f.passed for f in preview.faces), preview.identity_scores()
        context.log.info(f"style_previews[{style.id}]: version {version}, {passed}/{len(scores)} faces pass, {scores}")
    # the same catalog and engine render the same sheet: the UI sees it as one data version
    metadata = _style_metadata(*rendered[0], store) if len(rendered) == 1 else _backfill_metadata(rendered)
    return dg.MaterializeResult(
        metadata={"version": dg.TextMetadataValue(version), **metadata}, data_version=dg.DataVersion(version)
    )


def _style_metadata(style, preview, record, seconds, store) -> dict:
    scores = preview.identity_scores()
    return {
        "preview": dg.MetadataValue.path(store.uri(record.key)),
        # -1 where no face was found in the styled image, as the proofs' metadata does
        **{f"identity_{name}": dg.FloatMetadataValue(s if s is not None else NO_FACE) for name, s in scores.items()},
        "threshold": dg.FloatMetadataValue(style.identity_threshold),
        "faces_passed": dg.IntMetadataValue(sum(f.passed for f in preview.faces)),
        "faces": dg.IntMetadataValue(len(scores)),
        "seconds": dg.FloatMetadataValue(round(seconds, 3)),
    }


def _backfill_metadata(rendered) -> dict:
    """Dagster records one materialization for every style of a multi-style run, so the
    numbers per style go into a table (each style's own record is in storage)."""
    rows = ["| style | faces passed | lowest identity | threshold | seconds |", "|---|---|---|---|---|"]
    for style, preview, _, seconds in rendered:
        scores = [s for s in preview.identity_scores().values() if s is not None]
        lowest = f"{min(scores):.2f}" if scores else "no face"
        passed = sum(f.passed for f in preview.faces)
        rows.append(f"| {style.id} | {passed}/{len(preview.faces)} | {lowest} | {style.identity_threshold:.2f} | {seconds:.1f} |")
    return {
        "styles": dg.IntMetadataValue(len(rendered)),
        "faces_passed": dg.IntMetadataValue(sum(f.passed for _, p, _, _ in rendered for f in p.faces)),
        "faces": dg.IntMetadataValue(sum(len(p.faces) for _, p, _, _ in rendered)),
        "per_style": dg.MetadataValue.md("\n".join(rows)),
        "seconds": dg.FloatMetadataValue(round(sum(seconds for *_, seconds in rendered), 3)),
    }


catalog_assets = [style_previews]


def define_catalog_preview_job(tags: Mapping[str, str] | None = None):
    """The job that renders previews; `tags`: the GPU run tags when the style engine needs a GPU."""
    return dg.define_asset_job(
        "catalog_preview_job",
        selection=[style_previews],
        description="Render one style's catalog preview on the reference faces.",
        tags=tags,
    )


# untagged: what sensors and tests name; the code location's own comes from assets.define_jobs
catalog_preview_job = define_catalog_preview_job()
