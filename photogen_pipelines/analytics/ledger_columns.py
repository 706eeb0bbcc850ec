"""The generation ledger's columns, in plain Python: the Dagster code location lists them
on the asset at import, and a run process that never builds a ledger then never loads
pandas or pyarrow (photogen_pipelines/analytics/ledger.py builds the Parquet schema from them)."""

from __future__ import annotations

from photogen_pipelines.storage.artifacts import Stage

STAGES = tuple(Stage)

# (name, type, description); the types: string, timestamp (UTC, microseconds), int64,
# float64, list<int64>, list<float64>
LEDGER_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("order_id", "string", "the order"),
    ("created_at", "timestamp", "when the order was placed"),
    ("settled_at", "timestamp", "its latest move into ready, rejected, failed, cancelled or refunded"),
    ("day", "string", "settled_at's UTC date (YYYY-MM-DD): the day file holding the row"),
    ("style_id", "string", "the art style"),
    ("product_id", "string", "the print product"),
    ("approval", "string", "customer or auto"),
    ("tier", "string", "the quality tier the order was placed in; null: placed before tiers existed"),
    ("engine", "string", "the style engine's version; null if styling never ran"),
    ("face_encoder", "string", "the identity encoder's version"),
    ("upscaler", "string", "the upscaler's version; null if nothing was printed"),
    ("seeds", "list<int64>", "the seed of each variant"),
    ("identity_scores", "list<float64>", "each variant's final identity similarity (null: no face)"),
    ("best_identity_score", "float64", "the best final identity similarity"),
    ("identity_threshold", "float64", "the (encoder, style) threshold the gate applied"),
    ("attempts", "int64", "proofs scored, regenerations included"),
    ("rounds", "int64", "identity-gate rounds"),
    ("proofs_passed", "int64", "proofs that passed the identity gate"),
    ("outcome", "string", "the final state: ready, rejected, failed, cancelled or refunded"),
    ("verdict", "string", "passed (proofs reached the customer), rejected, or null: no verdict"),
    ("reason", "string", "why the order left the pipeline (a later refund's reason is not kept)"),
    *[(f"seconds_{stage}", "float64", f"seconds spent in {stage}; null if it never ran") for stage in STAGES],
    ("seconds_total", "float64", "seconds in all stages that ran"),
    ("effective_dpi", "float64", "the resolution the print master reached"),
    (
        "engine_backend",
        "string",
        "the backend that painted the first round of proofs (embedded, diffusers, service, replicate, runpod); "
        "null: never styled, or styled before generations were metered",
    ),
    (
        "generation_seconds",
        "float64",
        "compute seconds the engines were metered for, all stages (first round, regenerations, upscaling): "
        "a provider's billed seconds, or a local engine's own seconds; null: nothing metered",
    ),
    (
        "predict_seconds",
        "float64",
        "the serverless provider's own predict time, where it reports one; null: none did (a local engine)",
    ),
    ("predictions", "int64", "remote predictions paid for, all stages (0 on a local engine); null: nothing metered"),
    (
        "predictions_reused",
        "int64",
        "remote predictions found already done on a retried step, not paid again; null: nothing metered",
    ),
    (
        "generation_cost_usd",
        "float64",
        "what generating the order cost in USD, all stages summed (the provider's price, or a local engine's "
        "seconds at the configured price_per_second); null: never generated, or its first proofs were painted "
        "before generations were metered (a later stage's record alone is not the order's cost)",
    ),
    ("amount_cents", "int64", "the product's price"),
    ("amount_paid_cents", "int64", "what the customer paid (0 with payments off)"),
    ("refunded_cents", "int64", "what was refunded"),
    ("refund_id", "string", "the payment provider's refund id"),
    ("currency", "string", "ISO currency code, lower case"),
    ("payments", "string", "off or stripe"),
    (
        "margin_usd",
        "float64",
        "(amount_paid_cents - refunded_cents) / 100 - generation_cost_usd: what the order earned after refunds and "
        "generation (not printing or shipping); null unless the currency is usd and the cost is known; with "
        "payments off nothing was paid, so it is minus the cost",
    ),
)
