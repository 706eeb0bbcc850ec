"""Proof assets: the selfie becomes a few styled proofs that keep the customer's face."""

import dagster as dg
import numpy as np

from assets._helpers import enter, order_step, reject_order, timed_stage
from assets.partitions import orders_partitions
from photogen_pipelines.analytics import costs
from photogen_pipelines.analytics.costs import metered
from photogen_pipelines.engines.base import Usage
from photogen_pipelines.errors import BadInput
from photogen_pipelines.generation.stages import Candidate, identity_gate, prepare_selfie, render_candidates, score_candidate
from photogen_pipelines.imaging.images import Box, open_png, png_bytes
from photogen_pipelines.imaging.variety import proof_variety
from photogen_pipelines.orders import lifecycle
from photogen_pipelines.storage.artifacts import (
    CandidateParams,
    CandidatesInfo,
    OrderKeys,
    ProofScore,
    SelfieInfo,
    Stage,
    Validation,
)
from resources import ArtifactStorage, CatalogResource, FaceEngine, OrdersDatabase, StyleEngine

GROUP = "proofs"


@dg.asset(partitions_def=orders_partitions, group_name=GROUP, kinds={"opencv", "image"})
def selfie(
    context: dg.AssetExecutionContext,
    orders: OrdersDatabase,
    storage: ArtifactStorage,
    catalog: CatalogResource,
    faces: FaceEngine,
    styles: StyleEngine,
) -> dg.MaterializeResult:
    """The customer's selfie: upright, sRGB, stripped, exactly one face, framed for the product."""
    step = order_step(context, orders, storage)
    store, keys, order = step.store, step.keys, step.order
    enter(lifecycle.start_generation, step)
    product = catalog.products().get(order.product_id)
    with timed_stage(step, Stage.SELFIE) as timer:
        try:
            result = prepare_selfie(store.get_bytes(order.upload_key), product, faces.analyzer(), styles.proof_long_side)
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
            ),
        )
    context.log.info(
        f"selfie: one face, score {result.face.score:.2f}; portrait {result.portrait.shape[1]}x{result.portrait.shape[0]}"
    )
    return dg.MaterializeResult(
        metadata={
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


Portrait = tuple[np.ndarray, Box]  # the framed portrait and its face box


def _render(
    styles: StyleEngine, catalog: CatalogResource, order, portrait: Portrait, variants: list[int], round_no: int
) -> tuple[list[Candidate], Usage]:
    """The variants of one round, and what painting them used (for the order's cost)."""
    style_catalog = catalog.styles()
    stylizer = _stylizer(styles, catalog, order)
    style = style_catalog.get(order.style_id)
    image, face = portrait
    return metered(
        stylizer,
        _backend(styles, catalog, order),
        styles.price_per_second,
        lambda: render_candidates(image, style, stylizer, order.seed, variants, round_no, style_catalog.retry_decay, face),
    )


def _portrait(store, keys: OrderKeys) -> Portrait:
    """The framed portrait and where its face is, as `selfie` stored them."""
    x, y, w, h = keys.load(store, SelfieInfo).portrait_face.box
    return np.asarray(open_png(store.get_bytes(keys.portrait))), Box(x, y, w, h)


def _backend(styles: StyleEngine, catalog: CatalogResource, order) -> str:
    engine = catalog.products().tier(order.tier).engine
    return styles.engine_settings().backend if engine == "default" else engine


def _store_candidate(store, keys: OrderKeys, candidate: Candidate) -> None:
    store.put_bytes(keys.candidate(candidate.round, candidate.variant), png_bytes(candidate.image))


@dg.asset(
    partitions_def=orders_partitions,
    group_name=GROUP,
    kinds={"onnx", "image"},
    deps=[selfie],
    retry_policy=dg.RetryPolicy(max_retries=2, delay=1.0),
)
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
    portrait = _portrait(store, keys)
    with timed_stage(step, Stage.STYLED_CANDIDATES) as timer:
        try:
            candidates, usage = _render(styles, catalog, order, portrait, list(range(order.variants)), 0)
        except BadInput as refused:  # a remote model's safety filter refused the picture: no retry helps
            raise reject_order(step, refused) from None
        for candidate in candidates:
            _store_candidate(store, keys, candidate)
        keys.save(
            store,
            CandidatesInfo(
                style=order.style_id,
                engine=_stylizer(styles, catalog, order).version,
                candidates=[CandidateParams(**c.params()) for c in candidates],
                tier=order.tier,
                usage=costs.record(usage),
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


@dg.asset(partitions_def=orders_partitions, group_name=GROUP, kinds={"opencv", "image"}, deps=[styled_candidates])
def validated_proofs(
    context: dg.AssetExecutionContext,
    orders: OrdersDatabase,
    storage: ArtifactStorage,
    catalog: CatalogResource,
    faces: FaceEngine,
    styles: StyleEngine,
) -> dg.MaterializeResult:
    """Proofs that pass the identity gate; failures are regenerated at lower strength."""
    step = order_step(context, orders, storage)
    store, keys, order = step.store, step.keys, step.order
    style_catalog = catalog.styles()
    style = style_catalog.get(order.style_id)
    reference = np.asarray(keys.load(store, SelfieInfo).embedding, dtype=np.float32)
    portrait = _portrait(store, keys)
    analyzer = faces.analyzer()

    regenerated: list[Usage] = []

    def regenerate(variants: list[int], round_no: int) -> list[Candidate]:
        try:
            candidates, usage = _render(styles, catalog, order, portrait, variants, round_no)
        except BadInput as refused:
            raise reject_order(step, refused) from None
        regenerated.append(usage)
        for candidate in candidates:
            _store_candidate(store, keys, candidate)
        return candidates

    with timed_stage(step, Stage.VALIDATED_PROOFS) as timer:
        first_round = [
            Candidate(
                variant=p.variant,
                round=p.round,
                seed=p.seed,
                strength=p.strength,
                zoom=p.zoom,
                take=p.take,
                image=np.asarray(open_png(store.get_bytes(keys.candidate(0, p.variant)))),
            )
            for p in keys.load(store, CandidatesInfo).candidates
        ]
        gate = identity_gate(
            first_round,
            regenerate,
            lambda c: score_candidate(c, reference, style.identity_threshold, analyzer),
            style_catalog.max_rounds,
        )
        for old in store.list(f"{keys.prefix}/proofs/"):
            store.delete(old)  # a re-run must not leave an earlier run's proofs behind
        for variant, candidate in gate.proofs.items():
            store.put_bytes(keys.proof(variant), png_bytes(candidate.image))
        keys.save(
            store,
            Validation(
                threshold=style.identity_threshold,
                encoder=analyzer.version,
                rounds=gate.rounds,
                proofs={v: keys.proof(v) for v in sorted(gate.proofs)},
                best_variant=gate.best_variant(),
                scores=[ProofScore(**vars(s)) for s in gate.scores],
                rejected=gate.rejected,
                usage=costs.record(sum(regenerated[1:], regenerated[0])) if regenerated else None,
            ),
        )
    if gate.rejected:
        lifecycle.reject(step.book, step.order_id, reason=gate.rejection_reason())
        context.log.warning(f"validated_proofs: order rejected: {gate.rejection_reason()}")
    else:
        best = gate.best_variant()
        validated = lifecycle.proofs_validated(step.book, store, step.order_id, best)
        context.log.info(f"validated_proofs: {len(gate.proofs)} proofs passed in {gate.rounds} round(s)")
        if validated.approved_proof is not None:
            context.log.info(f"validated_proofs: auto-approved proof {best}; the print run follows")
    final = {s.variant: s for s in gate.scores}  # the last attempt of each variant
    return dg.MaterializeResult(
        metadata={
            **{
                f"similarity_variant_{v}": dg.FloatMetadataValue(s.similarity if s.similarity is not None else -1.0)
                for v, s in sorted(final.items())
            },
            "best_similarity": dg.FloatMetadataValue(max((s.similarity or -1.0) for s in final.values())),
            "threshold": dg.FloatMetadataValue(style.identity_threshold),
            "proofs_passed": dg.IntMetadataValue(len(gate.proofs)),
            # how far apart the proofs look (variety.py); -1 with fewer than two
            "proof_variety": dg.FloatMetadataValue(round(proof_variety([c.image for c in gate.proofs.values()]) or -1.0, 4)),
            "attempts": dg.IntMetadataValue(len(gate.scores)),
            "rounds": dg.IntMetadataValue(gate.rounds),
            "rejected": dg.BoolMetadataValue(gate.rejected),
            "seconds": dg.FloatMetadataValue(round(timer.seconds, 3)),
            **_cost_metadata(sum(regenerated[1:], regenerated[0]) if regenerated else None),
        }
    )
