"""Where an order's print is once a provider has it: its status and its shipments.

Defined with the order, because the order's lifecycle moves on them (submitted, shipped,
delivered); each provider adapter maps its own words to these. `FulfilmentStatus` is our
record of the submission (the `fulfilments` table): pending until the provider answers,
then the provider's status, with the same stored words.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class ProviderStatus(enum.StrEnum):
    """Where the provider's order is, in our words (each adapter maps its own statuses)."""

    SUBMITTED = "submitted"  # accepted, not yet in production (Printful: a draft too)
    IN_PRODUCTION = "in_production"
    SHIPPED = "shipped"  # at least one shipment left the lab
    DELIVERED = "delivered"  # the provider or carrier says it arrived
    CANCELLED = "cancelled"
    FAILED = "failed"  # the provider gave up on it (e.g. the file could not be printed)


class FulfilmentStatus(enum.StrEnum):
    """An order's submission to its print provider, as the `fulfilments` table stores it:
    PENDING while we submit, then the ProviderStatus the provider last reported (the same
    words, so the stored values are the provider statuses plus `pending`). Written only
    by `photogen_pipelines.fulfilment.submission`."""

    PENDING = "pending"  # we are submitting; the provider has not accepted yet
    SUBMITTED = ProviderStatus.SUBMITTED.value
    IN_PRODUCTION = ProviderStatus.IN_PRODUCTION.value
    SHIPPED = ProviderStatus.SHIPPED.value
    DELIVERED = ProviderStatus.DELIVERED.value
    CANCELLED = ProviderStatus.CANCELLED.value
    FAILED = ProviderStatus.FAILED.value

    @classmethod
    def of(cls, status: ProviderStatus) -> FulfilmentStatus:
        """The record's status once the provider reports `status`."""
        return cls(status.value)

    @property
    def closed(self) -> bool:
        """Nothing more will happen to the provider's order."""
        return self in _CLOSED

    @property
    def accepted(self) -> bool:
        """The provider took the order and has not given up on it (delivered included)."""
        return self not in _NOT_ACCEPTED


_CLOSED = frozenset({FulfilmentStatus.DELIVERED, FulfilmentStatus.CANCELLED, FulfilmentStatus.FAILED})
_NOT_ACCEPTED = frozenset({FulfilmentStatus.PENDING, FulfilmentStatus.CANCELLED, FulfilmentStatus.FAILED})


@dataclass(frozen=True)
class Shipment:
    carrier: str | None
    tracking_number: str | None
    tracking_url: str | None
    status: str | None = None  # the provider's own word for it
