"""Where an order's print is once a provider has it: its status and its shipments.

Defined with the order, because the order's lifecycle moves on them (submitted, shipped,
delivered); each provider adapter maps its own words to these.
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


@dataclass(frozen=True)
class Shipment:
    carrier: str | None
    tracking_number: str | None
    tracking_url: str | None
    status: str | None = None  # the provider's own word for it
