"""Print providers behind one interface (base.PrintProvider): Prodigi and Printful adapters,
and `print_provider` to make the shop's from its settings."""

from __future__ import annotations

from photogen_pipelines.fulfilment.providers.base import PrintProvider

PROVIDER_NAMES = ("none", "prodigi", "printful")


def print_provider(
    name: str,
    *,
    api_key: str | None = None,
    api_base: str | None = None,
    store_id: str | None = None,
    confirm: bool = False,
) -> PrintProvider | None:
    """The shop's print provider, or None when it fulfils nothing (`name` "none").

    `api_base` defaults to Prodigi's sandbox / Printful's API; `store_id` and `confirm`
    (submit for fulfilment instead of leaving a draft) are Printful's."""
    normalized = (name or "none").strip().lower()
    if normalized == "none":
        return None
    if normalized not in PROVIDER_NAMES:
        raise ValueError(f"unknown print provider {name!r}; known: {', '.join(PROVIDER_NAMES)}")
    if not api_key:
        raise ValueError(f"the {normalized} print provider needs an API key")
    # imported here so that reading the interface does not load an HTTP client
    if normalized == "prodigi":
        from photogen_pipelines.fulfilment.providers.prodigi import SANDBOX_URL, ProdigiProvider

        return ProdigiProvider(api_key, api_base or SANDBOX_URL)
    from photogen_pipelines.fulfilment.providers.printful import LIVE_URL, PrintfulProvider

    return PrintfulProvider(api_key, api_base or LIVE_URL, store_id=store_id, confirm=confirm)
