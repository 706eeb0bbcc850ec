"""Catalog previews: each style rendered on the reference faces, for the storefront's catalog page."""

import time
from datetime import UTC, datetime

import dagster as dg

from assets.run_tags import gpu_run_tags
from photogen_pipelines.catalog import load_styles
from photogen_pipelines.previews import catalog_version, reference_faces, render_style_preview, store_style_preview
from resources import ArtifactStorage, CatalogResource, FaceEngine, StyleEngine

GROUP = "catalog"

# One partition per style of the packaged catalog. A catalog an operator points
# CatalogResource at must keep these ids: partitions are fixed when the code loads.
styles_partitions = dg.StaticPartitionsDefinition(load_styles().ids())


@dg.asset(partitions_def=styles_partitions, group_name=GROUP, kinds={"onnx", "image"})
def style_previews(
    context: dg.AssetExecutionContext,
    storage: ArtifactStorage,
    catalog: CatalogResource,
    faces: FaceEngine,
    styles: StyleEngine,
) -> dg.MaterializeResult:
    """One style on the reference faces, as a contact sheet the storefront shows; identity scored per face."""
    start = time.perf_counter()
    style_catalog = catalog.styles()
    style = style_catalog.get(context.partition_key)
    stylizer = styles.stylizer()
    version = catalog_version(style_catalog, stylizer.version)
    preview = render_style_preview(style, faces.analyzer(), stylizer, reference_faces())
    store = storage.store()
    record = store_style_preview(store, preview, version, datetime.now(UTC))
    seconds = time.perf_counter() - start
    scores = preview.identity_scores()
    passed = sum(f.passed for f in preview.faces)
    context.log.info(f"style_previews[{style.id}]: version {version}, {passed}/{len(scores)} faces pass, {scores}")
    return dg.MaterializeResult(
        metadata={
            "version": dg.TextMetadataValue(version),
            "preview": dg.MetadataValue.path(store.uri(record["key"])),
            # -1 where no face was found in the styled image, as the proofs' metadata does
            **{f"identity_{name}": dg.FloatMetadataValue(s if s is not None else -1.0) for name, s in scores.items()},
            "threshold": dg.FloatMetadataValue(style.identity_threshold),
            "faces_passed": dg.IntMetadataValue(passed),
            "faces": dg.IntMetadataValue(len(scores)),
            "seconds": dg.FloatMetadataValue(round(seconds, 3)),
        },
        # the same catalog and engine render the same sheet: the UI sees it as one data version
        data_version=dg.DataVersion(version),
    )


catalog_assets = [style_previews]

catalog_preview_job = dg.define_asset_job(
    "catalog_preview_job",
    selection=[style_previews],
    description="Render one style's catalog preview on the reference faces.",
    tags=gpu_run_tags(),
)
