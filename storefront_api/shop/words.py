"""Numbers and refusals in the customer's words: prices, waits, and why a photo or an order
was refused (the core's codes mapped to sentences; the core's English where none is)."""

from __future__ import annotations

from collections.abc import Callable

from photogen_pipelines.workflows.quotes import Quote
from storefront_api.shop.access import ShopError


def money(t: Callable[..., str], cents: int, currency: str) -> str:
    whole, part = divmod(cents, 100)
    return t("money", amount=f"{whole}{t('decimal_mark')}{part:02d}", currency=currency.upper())


def duration(t: Callable[..., str], seconds: int) -> str:
    """About how long, rounded as people say it: 45 s, 3 min, 2 h."""
    if seconds < 90:
        return t("duration.seconds", n=max(1, round(seconds)))
    if seconds < 90 * 60:
        return t("duration.minutes", n=round(seconds / 60))
    return t("duration.hours", n=round(seconds / 3600))


def quote_words(t: Callable[..., str], quote: Quote) -> dict:
    return {
        "ok": True,
        "id": quote.id,  # the order names it: the price shown is the price charged
        "price": money(t, quote.amount_cents, quote.currency),
        "wait": t("quote.wait", proofs=duration(t, quote.proofs_seconds), print=duration(t, quote.print_seconds)),
        "amount_cents": quote.amount_cents,
        "currency": quote.currency,
    }


def refusal_words(t: Callable[..., str], refused: ShopError) -> str:
    return t(refused.key, default=refused.detail or t("error.generic"), **refused.params)
