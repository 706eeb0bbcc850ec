"""Proof assets: the selfie becomes a few styled proofs that keep the customer's face."""

import dagster as dg

from assets._helpers import STEP_RETRIES, OrderGroup, OrderStep, enter, order_asset, order_step, reject_order, timed_stage
from assets.partitions import approved_orders_partitions, orders_partitions
from photogen_pipelines import tiers
from photogen_pipelines.analytics.costs import metered
from photogen_pipelines.errors import BadInput
from photogen_pipelines.generation.proofs import (
    StoredSelfie,
    ValidatedProofs,
    set_identity,
    store_candidate,
    stored_selfie,
    validate_proofs,
)
from photogen_pipelines.generation.stages import Candidate, prepare_selfie, render_candidates
from photogen_pipelines.imaging.images import png_bytes
from photogen_pipelines.orders import lifecycle, photo_sets
from photogen_pipelines.orders.states import OrderState
from photogen_pipelines.storage.artifacts import NO_FACE, CandidateParams, CandidatesInfo, SelfieInfo, Stage, Usage
from resources import ArtifactStorage, CatalogResource, FaceEngine, OrdersDatabase, SafetyEngine, StyleEngine
from resources.credentials import ContentCredentialsResource

# A proof step works for a paid order (or one its run is generating); an operator may
# regenerate proofs the customer has not approved yet, in a run tagged photogen/rerun=true.
PROOFS = OrderGroup(
    "proofs",
    orders_partitions,
    runs_in=frozenset({OrderState.PAID, OrderState.GENERATING}),
    rerun_from=frozenset({OrderState.PROOFS_READY}),
)


@order_asset(PROOFS, {"opencv", "image"})
def selfie(
    context: dg.AssetExecutionContext,
    orders: OrdersDatabase,
    storage: ArtifactStorage,
    catalog: CatalogResource,
    faces: FaceEngine,
    styles: StyleEngine,
) -> dg.MaterializeResult:
    """The customer's selfie: upright, sRGB, stripped, exactly one face, framed for the product.
    With several photos of the customer, the primary is framed and the proofs are compared
    with the set's identity (the mean of their faces' embeddings)."""
    step = order_step(context, orders, storage)
    store, keys, order = step.store, step.keys, step.order
    enter(lifecycle.start_generation, step)
    product = catalog.products().get(order.product_id)
    photos = photo_sets.photos_of(orders.database(), order)  # the primary first; it is order.upload_key
    with timed_stage(step, Stage.SELFIE) as timer:
        try:
            result = prepare_selfie(store.get_bytes(order.upload_key), product, faces.analyzer(), styles.proof_long_side)
            mean = None
            if len(photos) > 1:
                mean = set_identity(result.embedding, [store.get_bytes(p.key) for p in photos[1:]], faces.analyzer())
        except BadInput as exc:
            raise reject_order(step, exc) from None
        store.put_bytes(keys.selfie, png_bytes(result.image))
        store.put_bytes(keys.portrait, png_bytes(result.portrait))
        keys.save(
            store,
            SelfieInfo(
                face=result.face.to_json(),
                portrait_face=result.portrait_face.to_json(),
                embedding=[round(float(v), 6) for v in result.embedding],
                encoder=faces.analyzer().version,
                # the set's identity lives here, beside the primary's, and goes with the order's files
                photos=[p.key for p in photos] if mean is not None else None,
                mean_embedding=[round(float(v), 6) for v in mean] if mean is not None else None,
            ),
        )
    context.log.info(  # how many photos, never what their faces are
        f"selfie: one face, score {result.face.score:.2f}; portrait {result.portrait.shape[1]}x{result.portrait.shape[0]}; "
        f"{len(photos)} photo(s) of the customer"
    )
    return dg.MaterializeResult(
        metadata={
            "photos": dg.IntMetadataValue(len(photos)),
            "face_score": dg.FloatMetadataValue(result.face.score),
            "face_px": dg.IntMetadataValue(int(min(result.face.box.w, result.face.box.h))),
            "portrait": dg.MetadataValue.path(store.uri(keys.portrait)),
            "seconds": dg.FloatMetadataValue(round(timer.seconds, 3)),
        }
    )


def _stylizer(styles: StyleEngine, catalog: CatalogResource, order):
    """The stylizer the order's quality tier asks for."""
    tier = catalog.products().tier(order.tier)
    return styles.stylizer_for(tier.engine, tier.steps)


def _render(
    styles: StyleEngine, catalog: CatalogResource, order, selfie: StoredSelfie, variants: list[int], round_no: int
) -> tuple[list[Candidate], Usage]:
    """The variants of one round, and what painting them used (for the order's cost)."""
    style_catalog = catalog.styles()
    stylizer = _stylizer(styles, catalog, order)
    style = style_catalog.get(order.style_id)
    image, face = selfie.portrait, selfie.face
    return metered(
        stylizer,
        _backend(styles, catalog, order),
        styles.price_per_second,
        lambda: render_candidates(
            image, style, stylizer, order.seed, variants, round_no, style_catalog.retry_decay, face, selfie.engine_references
        ),
    )


def _render_or_reject(
    step: OrderStep, styles: StyleEngine, catalog: CatalogResource, selfie: StoredSelfie, variants: list[int], round_no: int
) -> tuple[list[Candidate], Usage]:
    """`_render`; a picture a remote model's safety filter refused rejects the order: no retry helps."""
    try:
        return _render(styles, catalog, step.order, selfie, variants, round_no)
    except BadInput as refused:
        raise reject_order(step, refused) from None


def _backend(styles: StyleEngine, catalog: CatalogResource, order) -> str:
    engine = catalog.products().tier(order.tier).engine
    return tiers.style_engine(styles.engine_settings(), engine).backend


@order_asset(PROOFS, {"onnx", "image"}, deps=[selfie], retry_policy=STEP_RETRIES)
def styled_candidates(
    context: dg.AssetExecutionContext,
    orders: OrdersDatabase,
    storage: ArtifactStorage,
    catalog: CatalogResource,
    styles: StyleEngine,
) -> dg.MaterializeResult:
    """The order's variants in its style, seeded by the order id so re-runs reproduce them."""
    step = order_step(context, orders, storage)
    store, keys, order = step.store, step.keys, step.order
    selfie = stored_selfie(store, keys)
    with timed_stage(step, Stage.STYLED_CANDIDATES) as timer:
        candidates, usage = _render_or_reject(step, styles, catalog, selfie, list(range(order.variants)), 0)
        for candidate in candidates:
            store_candidate(store, keys, candidate)
        keys.save(
            store,
            CandidatesInfo(
                style=order.style_id,
                engine=_stylizer(styles, catalog, order).version,
                candidates=[CandidateParams(**c.params()) for c in candidates],
                tier=order.tier,
                usage=usage.rounded(),
            ),
        )
    context.log.info(f"styled_candidates: {len(candidates)} variants of {order.style_id}")
    return dg.MaterializeResult(
        metadata={
            "variants": dg.IntMetadataValue(len(candidates)),
            "style": dg.TextMetadataValue(order.style_id),
            "strengths": dg.JsonMetadataValue([c.strength for c in candidates]),
            "seeds": dg.JsonMetadataValue([c.seed for c in candidates]),
            "seconds": dg.FloatMetadataValue(round(timer.seconds, 3)),
            **_cost_metadata(usage),
        }
    )


def _cost_metadata(usage: Usage | None) -> dict:
    """What the UI plots per order: the generation's cost, and what it was billed for."""
    if usage is None:
        return {}
    return {
        "engine_backend": dg.TextMetadataValue(usage.backend),
        "cost_usd": dg.FloatMetadataValue(round(usage.cost_usd, 6)),
        "engine_seconds": dg.FloatMetadataValue(round(usage.seconds, 3)),
        "predictions": dg.IntMetadataValue(usage.predictions),
        "predictions_reused": dg.IntMetadataValue(usage.reused),
    }


@order_asset(PROOFS, {"opencv", "image"}, deps=[styled_candidates])
def validated_proofs(
    context: dg.AssetExecutionContext,
    orders: OrdersDatabase,
    storage: ArtifactStorage,
    catalog: CatalogResource,
    faces: FaceEngine,
    styles: StyleEngine,
    safety: SafetyEngine,
    credentials: ContentCredentialsResource,
) -> dg.MaterializeResult:
    """Proofs that pass the identity gate and the content-safety check; failures are
    regenerated at lower strength. Each stored proof carries signed C2PA Content Credentials."""
    step = order_step(context, orders, storage)
    style_catalog = catalog.styles()
    style = style_catalog.get(step.order.style_id)
    selfie = stored_selfie(step.store, step.keys)
    analyzer = faces.analyzer()
    with timed_stage(step, Stage.VALIDATED_PROOFS) as timer:
        validated = validate_proofs(
            step.store,
            step.keys,
            selfie,
            style.identity_threshold,
            analyzer,
            style_catalog.max_rounds,
            lambda variants, round_no: _render_or_reject(step, styles, catalog, selfie, variants, round_no),
            safety=safety.gate(catalog.quality()),
            credentials=credentials.credentials(),
        )
    _move_on_the_verdict(context, step, validated)
    return dg.MaterializeResult(
        metadata={
            **_validation_metadata(validated),
            "seconds": dg.FloatMetadataValue(round(timer.seconds, 3)),
            **_cost_metadata(validated.validation.usage),
        }
    )


def _move_on_the_verdict(context: dg.AssetExecutionContext, step: OrderStep, validated: ValidatedProofs) -> None:
    """Reject the order, or make its proofs ready (approved at once with auto approval)."""
    validation = validated.validation
    if validation.rejected:
        reason = validated.gate.rejection_reason()
        lifecycle.reject(step.book, step.order_id, reason=reason)
        context.log.warning(f"validated_proofs: order rejected: {reason}")
        return
    best = validation.best_variant
    order = lifecycle.proofs_validated(step.book, step.store, step.order_id, best)
    context.log.info(f"validated_proofs: {len(validation.proofs)} proofs passed in {validation.rounds} round(s)")
    if order.approved_proof is not None:
        # the order joins the print assets' partitions now, so a print run may follow at once
        # (`photogen demo` runs it in this process; the approved_orders sensor adds it too)
        context.instance.add_dynamic_partitions(approved_orders_partitions.name, [step.order_id])
        context.log.info(f"validated_proofs: auto-approved proof {best}; the print run follows")


def _validation_metadata(validated: ValidatedProofs) -> dict:
    """The verdict's numbers, for the UI: each variant's last attempt (NO_FACE: -1 where no
    face was found), the best of any attempt, the gate's effort."""
    validation, variety = validated.validation, validated.variety()
    return {
        **{
            f"similarity_variant_{v}": dg.FloatMetadataValue(s.similarity if s.similarity is not None else NO_FACE)
            for v, s in sorted(validation.final_scores().items())
        },
        "best_similarity": dg.FloatMetadataValue(validation.best_similarity()),
        "threshold": dg.FloatMetadataValue(validation.threshold),
        "proofs_passed": dg.IntMetadataValue(len(validation.proofs)),
        # how far apart the proofs look (variety.py); -1 with fewer than two
        "proof_variety": dg.FloatMetadataValue(round(variety, 4) if variety is not None else -1.0),
        "attempts": dg.IntMetadataValue(len(validation.scores)),
        "rounds": dg.IntMetadataValue(validation.rounds),
        "rejected": dg.BoolMetadataValue(validation.rejected),
    }
