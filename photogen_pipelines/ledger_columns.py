"""The generation ledger's columns, in plain Python: the Dagster code location lists them
on the asset at import, and a run process that never builds a ledger then never loads
pandas or pyarrow (photogen_pipelines/ledger.py builds the Parquet schema from them)."""

from __future__ import annotations

from photogen_pipelines.artifacts import Stage

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
    ("amount_cents", "int64", "the product's price"),
    ("amount_paid_cents", "int64", "what the customer paid (0 with payments off)"),
    ("refunded_cents", "int64", "what was refunded"),
    ("refund_id", "string", "the payment provider's refund id"),
    ("currency", "string", "ISO currency code, lower case"),
    ("payments", "string", "off or stripe"),
)
