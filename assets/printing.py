"""Print assets: the approved proof becomes the provider's print-ready file."""

import json

import dagster as dg
import numpy as np

from assets._helpers import core_failure, enter_state, timed_stage
from assets.partitions import orders_partitions
from assets.proofs import validated_proofs
from photogen_pipelines.errors import PhotoGenError
from photogen_pipelines.imaging import EXTENSIONS, encode_print_file, open_png, png_bytes
from photogen_pipelines.orders import OrderState
from photogen_pipelines.stages import make_print_master
from photogen_pipelines.storage import OrderKeys, get_json, put_json
from resources import ArtifactStorage, CatalogResource, OrdersDatabase, UpscaleEngine

GROUP = "printing"


@dg.asset(partitions_def=orders_partitions, group_name=GROUP, kinds={"ncnn", "image"}, deps=[validated_proofs])
def print_master(
    context: dg.AssetExecutionContext,
    orders: OrdersDatabase,
    storage: ArtifactStorage,
    catalog: CatalogResource,
    upscale: UpscaleEngine,
) -> dg.MaterializeResult:
    """The approved proof upscaled to the product's exact pixels at print resolution."""
    order_id = context.partition_key
    book, store, keys = orders.book(), storage.store(), OrderKeys(order_id)
    order = book.get(order_id)
    if order.approved_proof is None:
        raise dg.Failure(description=f"order {order_id} has no approved proof (state {order.state.value})", allow_retries=False)
    enter_state(book, order_id, OrderState.RENDERING)
    product = catalog.products().get(order.product_id)
    proof = np.asarray(open_png(store.get_bytes(keys.proof(order.approved_proof))))
    engine = upscale.upscaler()
    with timed_stage(book, order_id, "print_master") as timer:
        try:
            master, info = make_print_master(proof, product, engine, upscale.target_dpi, upscale.max_passes)
        except PhotoGenError as exc:
            book.transition(order_id, OrderState.FAILED, reason=f"{exc.code}: {exc}")
            raise core_failure(exc) from None
        # fast PNG compression: the master is an intermediate, read back once by print_file
        store.put_bytes(keys.print_master, png_bytes(master, compress_level=1))
        put_json(store, keys.master_info, {**vars(info), "proof": order.approved_proof, "upscaler": engine.version})
    context.log.info(
        f"print_master: passes x{info.passes}, {info.pixel_size[0]}x{info.pixel_size[1]} px, {info.effective_dpi} DPI"
    )
    return dg.MaterializeResult(
        metadata={
            "effective_dpi": dg.FloatMetadataValue(info.effective_dpi),
            "min_dpi": dg.IntMetadataValue(product.min_dpi),
            "upscale_passes": dg.JsonMetadataValue(info.passes),
            "width_px": dg.IntMetadataValue(info.pixel_size[0]),
            "height_px": dg.IntMetadataValue(info.pixel_size[1]),
            "seconds": dg.FloatMetadataValue(round(timer.seconds, 3)),
        }
    )


@dg.asset(
    partitions_def=orders_partitions,
    group_name=GROUP,
    kinds={"pillow", "image"},
    deps=[print_master],
    retry_policy=dg.RetryPolicy(max_retries=2, delay=1.0),
)
def print_file(
    context: dg.AssetExecutionContext,
    orders: OrdersDatabase,
    storage: ArtifactStorage,
    catalog: CatalogResource,
) -> dg.MaterializeResult:
    """The provider's file: sRGB with its ICC profile, DPI tags, JPEG q95 or TIFF, and a manifest."""
    order_id = context.partition_key
    book, store, keys = orders.book(), storage.store(), OrderKeys(order_id)
    order = book.get(order_id)
    product = catalog.products().get(order.product_id)
    with timed_stage(book, order_id, "print_file") as timer:
        master = open_png(store.get_bytes(keys.print_master))
        data = encode_print_file(master, product.format, product.dpi)
        key = keys.print_file(EXTENSIONS[product.format])
        store.put_bytes(key, data)
        master_info = get_json(store, keys.master_info)
        validation = get_json(store, keys.validation)
        candidates = get_json(store, keys.candidates_info)
        approved = [s for s in validation["scores"] if s["variant"] == order.approved_proof and s["passed"]][-1]
        manifest = {
            "order_id": order_id,
            "style_id": order.style_id,
            "product_id": order.product_id,
            "file": key,
            "format": product.format,
            "bytes": len(data),
            "pixel_size": list(product.pixel_size),
            "dpi": product.dpi,
            "effective_dpi": master_info["effective_dpi"],
            "bleed_px": product.bleed_px,
            "trim_inches": [round(v, 3) for v in product.trim_inches],
            "color_profile": "sRGB IEC61966-2.1 (embedded)",
            "approved_proof": order.approved_proof,
            "identity_score": approved["similarity"],
            "identity_threshold": validation["threshold"],
            "seeds": [c["seed"] for c in candidates["candidates"]],
            "engines": {
                # as recorded by the stages that used them: no model is loaded to print
                "faces": validation["encoder"],
                "style": candidates["engine"],
                "upscale": master_info["upscaler"],
                "upscale_passes": master_info["passes"],
            },
        }
        store.put_bytes(keys.manifest, json.dumps(manifest, indent=2).encode())
    # the order becomes `ready` when print_spec_met passes: a file that fails it is never delivered
    context.log.info(f"print_file: {key} ({len(data) / 2**20:.1f} MiB)")
    return dg.MaterializeResult(
        metadata={
            "path": dg.MetadataValue.path(store.uri(key)),
            "manifest": dg.MetadataValue.path(store.uri(keys.manifest)),
            "megabytes": dg.FloatMetadataValue(round(len(data) / 2**20, 2)),
            "effective_dpi": dg.FloatMetadataValue(master_info["effective_dpi"]),
            "seconds": dg.FloatMetadataValue(round(timer.seconds, 3)),
        }
    )
