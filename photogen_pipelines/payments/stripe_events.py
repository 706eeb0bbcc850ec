"""What a Stripe webhook must be before PhotoGen acts on it: signed no further ahead in
time than Stripe's tolerance allows behind, and shaped like the events PhotoGen reads
(every field it uses present, with the type it expects). A signed event that is not is
refused whole, so nothing half-applies it and no bad value reaches the database."""

from __future__ import annotations

import time

from photogen_pipelines.errors import PhotoGenError

HANDLED_EVENTS = ("payment_intent.succeeded", "payment_intent.payment_failed", "charge.refunded")
# a Stripe event nests about 6 levels (a charge's refunds' data); one much deeper is not one
# (the API refuses it before parsing, storefront_api/limits.py; a parser recursing into
# ~1000 levels raises RecursionError, which the webhook route answers as malformed too)
MAX_EVENT_DEPTH = 32


class PaymentError(PhotoGenError):
    code = "payment_error"


class MalformedEvent(PaymentError):
    """A (signed) Stripe event without the fields PhotoGen reads: nothing is applied."""

    code = "malformed_event"


def refuse_future_timestamp(signature_header: str, tolerance: int) -> None:
    # Stripe's library only refuses old timestamps; a signature dated ahead could be
    # replayed until that date, so the tolerance applies both ways
    timestamp = int(next(v for k, _, v in (item.partition("=") for item in signature_header.split(",")) if k == "t"))
    ahead = timestamp - time.time()
    if ahead > tolerance:
        raise PaymentError(
            f"the Stripe signature does not verify: its timestamp is {ahead:.0f} s in the future (tolerance {tolerance} s)",
            code="bad_signature",
        )


def is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _id_problem(name: str, value: object, longest: int) -> str | None:
    # Stripe's ids are short and plain; anything else could not be stored (a NUL, a
    # too-long id on PostgreSQL) and would fail the request instead of being refused
    if not isinstance(value, str) or not 0 < len(value) <= longest or not (value.isascii() and value.isprintable()):
        return f"{name} is not an id of 1 to {longest} plain characters"
    return None


def _depth_problem(event: object) -> str | None:
    pending = [(event, 1)]
    while pending:  # not recursive: the point is not to recurse
        value, depth = pending.pop()
        if depth > MAX_EVENT_DEPTH:
            return f"it nests deeper than {MAX_EVENT_DEPTH} levels"
        children = value.values() if isinstance(value, dict) else value
        pending.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return None


def _envelope_problem(event: object) -> str | None:
    if not isinstance(event, dict):
        return "it is not a JSON object"
    if problem := _depth_problem(event):
        return problem
    if problem := _id_problem("id", event.get("id"), 255) or _id_problem("type", event.get("type"), 100):
        return problem
    created = event.get("created")
    if not is_int(created) or not 0 <= created < 10**11:
        return "created is not a Unix time"
    data = event.get("data")
    if not isinstance(data, dict) or not isinstance(data.get("object"), dict):
        return "data.object is not an object"
    return None


def _amount_problem(name: str, value: object) -> str | None:
    if not is_int(value) or not 0 <= value < 2**31:  # the amount columns are 32-bit
        return f"data.object.{name} is not a whole number"
    return None


def _fields_problem(obj: dict, amounts: tuple[str, ...]) -> str | None:
    for name in amounts:
        if problem := _amount_problem(name, obj.get(name)):
            return problem
    if obj.get("amount_received") is not None and (problem := _amount_problem("amount_received", obj["amount_received"])):
        return problem
    currency = obj.get("currency")
    if not isinstance(currency, str) or len(currency) != 3 or not (currency.isascii() and currency.isalpha()):
        return "data.object.currency is not a currency code"
    metadata = obj.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        return "data.object.metadata is not an object"
    order_id = (metadata or {}).get("order_id", "")
    if not isinstance(order_id, str):
        return "data.object.metadata.order_id is not a string"
    if order_id and _id_problem("data.object.metadata.order_id", order_id, 64):
        # looked up in the orders database: a NUL there is a 500 on PostgreSQL, not a refusal
        return "data.object.metadata.order_id is not an order id"
    return None


def _object_problem(event: dict) -> str | None:
    """What an event PhotoGen acts on must carry; other events only need the envelope."""
    obj = event["data"]["object"]
    if event["type"].startswith("payment_intent."):
        error = obj.get("last_payment_error")
        if error is not None and not (isinstance(error, dict) and isinstance(error.get("message", ""), str | None)):
            return "data.object.last_payment_error is not an error"
        return _id_problem("data.object.id", obj.get("id"), 64) or _fields_problem(obj, ("amount",))
    if obj.get("payment_intent") is not None and _id_problem("data.object.payment_intent", obj["payment_intent"], 64):
        return "data.object.payment_intent is not an id"
    return _refunds_problem(obj.get("refunds")) or _fields_problem(obj, ("amount", "amount_refunded"))


def _refunds_problem(refunds: object) -> str | None:
    if refunds is None:
        return None
    listed = refunds.get("data", []) if isinstance(refunds, dict) else None
    if not isinstance(listed, list) or not all(isinstance(r, dict) for r in listed):
        return "data.object.refunds is not a list of refunds"
    if listed and listed[0].get("id") is not None:
        return _id_problem("data.object.refunds.data[0].id", listed[0]["id"], 64)
    return None


def check_event(event: object) -> dict:
    """The event if it has every field PhotoGen reads, with the right types; else MalformedEvent."""
    problem = _envelope_problem(event)
    if problem is None and event["type"] in HANDLED_EVENTS:
        problem = _object_problem(event)
    if problem:
        raise MalformedEvent(f"the Stripe event is malformed: {problem}")
    return event
