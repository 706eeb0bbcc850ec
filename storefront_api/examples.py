"""Examples in the OpenAPI document (/docs): request and response bodies as a storefront sends
and reads them. tests/test_api_browser.py validates each against its model. (FastAPI leaves
null values out of the whole document, so an example's nulls do not show there.)"""

from __future__ import annotations

ORDER_ID = "ord_5f3c9a1b2d4e6f70"
RECIPIENT = {
    "name": "Wanjiru Mwangi",
    "email": "wanjiru@example.com",
    "phone": "+254 20 7946 000",
    "address": {
        "line1": "12 Riverside Drive",
        "line2": "Apartment 4B",
        "city": "Nairobi",
        "state": "Nairobi County",
        "postal_code": "00100",
        "country_code": "KE",
    },
}

ORDER_IN = {
    "upload_id": "upl_8d2f6a0c4e1b3957",
    "style_id": "ink_etching",
    "product_id": "poster_a3",
    "variants": 4,
    "approval": "customer",
    "tier": "standard",
    "recipient": RECIPIENT,
    "shipping_method": "standard",
}
ORDER_IN_DOWNLOAD = {key: ORDER_IN[key] for key in ("upload_id", "style_id", "product_id", "approval", "tier")}

# named examples of POST /v1/orders's body (Swagger UI's drop-down)
ORDER_IN_EXAMPLES = {
    "shipped": {
        "summary": "shipped to the customer by the shop's print provider",
        "value": ORDER_IN,
    },
    "download": {
        "summary": "no recipient: the order ends at ready with a print file to download",
        "value": ORDER_IN_DOWNLOAD,
    },
}

APPROVE_IN = {"proof": 2}


def _stage(name: str, seconds: float | None) -> dict:
    return {"name": name, "status": "done" if seconds is not None else "pending", "seconds": seconds}


def _link(key: str) -> str:
    return f"https://photogen.example/v1/files/orders/{ORDER_ID}/{key}?expires=1767225600&signature=3q2-7w"


ORDER_OUT = {
    "id": ORDER_ID,
    "state": "proofs_ready",
    "reason": None,
    "style_id": "ink_etching",
    "product_id": "poster_a3",
    "variants": 4,
    "approval": "customer",
    "tier": "standard",
    "payment": {
        "mode": "stripe",
        "label": "Stripe PaymentIntent",
        "amount_cents": 3900,
        "currency": "usd",
        "paid_cents": 3900,
        "refunded_cents": 0,
        "refund_id": None,
        "cancellation_fee_cents": 0,
        "payment_intent_id": "pi_3PqR8sT2uV4wX6yZ",
        "client_secret": None,
    },
    "stage": "validated_proofs",
    "stages": [
        _stage("selfie", 0.41),
        _stage("styled_candidates", 38.2),
        _stage("validated_proofs", 1.7),
        _stage("print_master", None),
        _stage("print_file", None),
    ],
    "identity_threshold": 0.4,
    "proofs": [
        {
            "variant": 0,
            "take": "classic",
            "label": "As catalogued",
            "url": _link("previews/proof_0.jpg"),
            "preview": True,
            "identity_score": 0.62,
            "passed": True,
            "round": 0,
        },
        {"variant": 1, "take": "bold", "label": "Bold strokes", "url": None, "identity_score": 0.31, "passed": False, "round": 1},
        {
            "variant": 2,
            "take": "close",
            "label": "Close-up",
            "url": _link("previews/proof_2.jpg"),
            "preview": True,
            "identity_score": 0.71,
            "passed": True,
            "round": 0,
        },
        {
            "variant": 3,
            "take": "palette",
            "label": "Second palette",
            "url": _link("previews/proof_3.jpg"),
            "preview": True,
            "identity_score": 0.55,
            "passed": True,
            "round": 0,
        },
    ],
    "approved_proof": None,
    "proofs_downloaded_at": None,
    "print_file_ready": False,
    "expected_wait": {"proofs_seconds": 45, "print_seconds": 45, "basis": "catalog"},
    "expected_at": None,  # proofs_ready: the order waits for its customer
    "shipping_method": "standard",
    "recipient": {
        "name": "W•••• M••••",
        "email": "w•••@example.com",
        "phone": "•••00",
        "city": "Nairobi",
        "postal_code": "00•••",
        "country_code": "KE",
    },
    "fulfilment": None,
    "events": [
        {"at": "2026-01-05T10:00:00Z", "from_state": None, "to_state": "awaiting_payment", "reason": "order placed"},
        {"at": "2026-01-05T10:00:41Z", "from_state": "awaiting_payment", "to_state": "paid", "reason": "payment succeeded"},
        {"at": "2026-01-05T10:00:47Z", "from_state": "paid", "to_state": "generating", "reason": "proof run started"},
        {"at": "2026-01-05T10:01:29Z", "from_state": "generating", "to_state": "proofs_ready", "reason": "3 of 4 proofs passed"},
    ],
    "consent": [{"upload_id": "upl_8d2f6a0c4e1b3957", "consented_at": "2026-01-05T09:58:12Z", "api_key_id": "key_3e7a91c04b5d"}],
    "created_at": "2026-01-05T10:00:00Z",
    "updated_at": "2026-01-05T10:01:29Z",
    "customer_token": None,
}
