"""Errors the core raises. Each carries a stable `code` that the CLI, the API and the
assets report to people, so bad input ends with a clear reason instead of a traceback."""

from __future__ import annotations


class PhotoGenError(Exception):
    """Base class: `code` is stable and machine-readable, the message is for people."""

    code = "photogen_error"

    def __init__(self, message: str, *, code: str | None = None, details: dict | None = None):
        super().__init__(message)
        if code is not None:
            self.code = code
        self.details = details or {}  # machine-readable facts a client acts on (e.g. when a limit resets)


class BadInput(PhotoGenError):
    """The customer's input cannot be used (not an image, no face, too large...)."""

    code = "bad_input"


class ModelError(PhotoGenError):
    """A model file is missing or an engine failed; not the customer's fault."""

    code = "model_error"


class IllegalTransition(PhotoGenError):
    """An order was asked to move to a state its current state does not allow."""

    code = "illegal_transition"


class NotFound(PhotoGenError):
    code = "not_found"


class Conflict(PhotoGenError):
    """The request contradicts an earlier one (an idempotency key reused with another body)."""

    code = "conflict"


class PaymentRequired(PhotoGenError):
    """What was asked must be paid for first: too few credits, or an unpaid preview."""

    code = "payment_required"


class LimitReached(PhotoGenError):
    """A quota is spent until `details["resets_at"]` (a free allowance)."""

    code = "limit_reached"
