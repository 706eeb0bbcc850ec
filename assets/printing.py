"""Print assets: the approved proof becomes the provider's print-ready file."""

import dagster as dg
import numpy as np

from assets._helpers import STEP_RETRIES, OrderGroup, core_failure, enter, order_asset, order_step, timed_stage
from assets.partitions import approved_orders_partitions
from assets.proofs import validated_proofs
from photogen_pipelines.analytics.costs import metered
from photogen_pipelines.errors import PhotoGenError
from photogen_pipelines.generation.proofs import proof_models
from photogen_pipelines.generation.stages import make_print_master
from photogen_pipelines.imaging.images import EXTENSIONS, encode_print_file, open_png, png_bytes
from photogen_pipelines.orders import lifecycle
from photogen_pipelines.orders.states import OrderState
from photogen_pipelines.storage.artifacts import CandidatesInfo, EngineVersions, Manifest, MasterInfo, Stage, Validation
from resources import ArtifactStorage, CatalogResource, OrdersDatabase, UpscaleEngine
from resources.credentials import ContentCredentialsResource

# A print step works for an approved order (or one its run is rendering); an operator may
# re-render a ready order's file before the provider has it, in a run tagged photogen/rerun=true.
PRINTING = OrderGroup(
    "printing",
    approved_orders_partitions,
    runs_in=frozenset({OrderState.APPROVED, OrderState.RENDERING}),
    rerun_from=frozenset({OrderState.READY}),
)


# the order's key in `approved_orders` depends on the same key in `orders`
@order_asset(PRINTING, {"ncnn", "image"}, deps=[dg.AssetDep(validated_proofs, partition_mapping=dg.IdentityPartitionMapping())])
def print_master(
    context: dg.AssetExecutionContext,
    orders: OrdersDatabase,
    storage: ArtifactStorage,
    catalog: CatalogResource,
    upscale: UpscaleEngine,
) -> dg.MaterializeResult:
    """The approved proof upscaled to the product's exact pixels at print resolution."""
    step = order_step(context, orders, storage)
    store, keys, order = step.store, step.keys, step.order
    if order.approved_proof is None:
        raise dg.Failure(description=f"order {order.id} has no approved proof (state {order.state.value})", allow_retries=False)
    enter(lifecycle.start_rendering, step)
    product = catalog.products().get(order.product_id)
    proof = np.asarray(open_png(store.get_bytes(keys.proof(order.approved_proof))))
    tier = catalog.products().tier(order.tier)
    engine = upscale.upscaler_for(tier.upscale_model)
    with timed_stage(step, Stage.PRINT_MASTER) as timer:
        try:
            (master, info), usage = metered(
                engine,
                upscale.backend,
                upscale.price_per_second,
                lambda: make_print_master(
                    proof,
                    product,
                    engine,
                    upscale.target_dpi,
                    upscale.max_passes,
                    variant=order.approved_proof,
                    ensemble=tier.print_ensemble,
                ),
            )
        except PhotoGenError as exc:
            lifecycle.fail(step.book, order.id, reason=f"{exc.code}: {exc}")
            raise core_failure(exc) from None
        # fast PNG compression: the master is an intermediate, read back once by print_file
        store.put_bytes(keys.print_master, png_bytes(master))
        keys.save(store, info.model_copy(update={"usage": usage.rounded()}))
    context.log.info(
        f"print_master: passes x{info.passes}, {info.pixel_size[0]}x{info.pixel_size[1]} px, {info.effective_dpi} DPI"
    )
    return dg.MaterializeResult(
        metadata={
            "effective_dpi": dg.FloatMetadataValue(info.effective_dpi),
            "source_dpi": dg.FloatMetadataValue(info.source_dpi),
            "soften_sigma": dg.FloatMetadataValue(info.soften_sigma),
            "ensemble": dg.IntMetadataValue(info.ensemble),
            "min_dpi": dg.IntMetadataValue(product.min_dpi),
            "upscale_passes": dg.JsonMetadataValue(info.passes),
            "width_px": dg.IntMetadataValue(info.pixel_size[0]),
            "height_px": dg.IntMetadataValue(info.pixel_size[1]),
            "seconds": dg.FloatMetadataValue(round(timer.seconds, 3)),
        }
    )


@order_asset(PRINTING, {"pillow", "image"}, deps=[print_master], retry_policy=STEP_RETRIES)
def print_file(
    context: dg.AssetExecutionContext,
    orders: OrdersDatabase,
    storage: ArtifactStorage,
    catalog: CatalogResource,
    credentials: ContentCredentialsResource,
) -> dg.MaterializeResult:
    """The provider's file: sRGB with its ICC profile, DPI tags, JPEG q95 or TIFF, signed C2PA
    Content Credentials, and a manifest."""
    step = order_step(context, orders, storage)
    store, keys, order = step.store, step.keys, step.order
    product = catalog.products().get(order.product_id)
    with timed_stage(step, Stage.PRINT_FILE) as timer:
        master = open_png(store.get_bytes(keys.print_master))
        master_info = keys.load(store, MasterInfo)
        validation = keys.load(store, Validation)
        candidates = keys.load(store, CandidatesInfo)
        # C2PA: the file says it is AI-generated, by which models, for which shop; the manifest
        # goes in its own segment, so pixels, ICC profile and DPI tags stay as print_spec_met reads them
        signer = credentials.credentials()
        models = proof_models(candidates, validation.encoder, master_info.upscaler)
        data = signer.sign(encode_print_file(master, product.format, product.dpi), models, title=f"print {order.product_id}")
        verified = signer.verify(data)
        key = keys.print_file(EXTENSIONS[product.format])
        store.put_bytes(key, data)
        manifest = Manifest(
            order_id=order.id,
            style_id=order.style_id,
            product_id=order.product_id,
            file=key,
            format=product.format,
            bytes=len(data),
            pixel_size=product.pixel_size,
            dpi=product.dpi,
            effective_dpi=master_info.effective_dpi,
            source_dpi=master_info.source_dpi,
            bleed_px=product.bleed_px,
            trim_inches=tuple(round(v, 3) for v in product.trim_inches),
            color_profile="sRGB IEC61966-2.1 (embedded)",
            approved_proof=order.approved_proof,
            identity_score=validation.approved_score(order.approved_proof).similarity,
            identity_threshold=validation.threshold,
            seeds=[c.seed for c in candidates.candidates],
            # as recorded by the stages that used them: no model is loaded to print
            engines=EngineVersions(
                faces=validation.encoder,
                style=candidates.engine,
                upscale=master_info.upscaler,
                upscale_passes=master_info.passes,
            ),
            # the embedded manifest read back: its label, signer and validation state
            content_credentials=verified.record() if verified else None,
        )
        keys.save(store, manifest)
    # the order becomes `ready` in `delivery`, after print_spec_met: a file that fails it is never delivered
    context.log.info(f"print_file: {key} ({len(data) / 2**20:.1f} MiB)")
    return dg.MaterializeResult(
        metadata={
            "path": dg.MetadataValue.path(store.uri(key)),
            "manifest": dg.MetadataValue.path(store.uri(keys.manifest)),
            "megabytes": dg.FloatMetadataValue(round(len(data) / 2**20, 2)),
            "effective_dpi": dg.FloatMetadataValue(master_info.effective_dpi),
            # C2PA: Trusted, Valid (a signer no configured anchor vouches for) or Invalid
            "content_credentials": dg.TextMetadataValue(verified.state if verified else "missing"),
            "seconds": dg.FloatMetadataValue(round(timer.seconds, 3)),
        }
    )


@order_asset(PRINTING, {"photogen"}, deps=[print_file])
def delivery(context: dg.AssetExecutionContext, orders: OrdersDatabase, storage: ArtifactStorage) -> dg.MaterializeResult:
    """The order delivered: runs only once the blocking print_spec_met check let its print file through."""
    step = order_step(context, orders, storage)
    order = enter(lifecycle.deliver, step)
    context.log.info(f"delivery: order {order.id} is {order.state.value}")
    return dg.MaterializeResult(metadata={"state": dg.TextMetadataValue(order.state.value)})
