"""The pages' words, in the customer's language: English, French or German, chosen from the
browser's Accept-Language (English when none of them matches). One JSON file per language in
translations/; a key missing from one falls back to English, so a new string never shows a
key name (tests/test_shop_pages.py checks every file has every key)."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from importlib import resources

LANGUAGES = ("en", "fr", "de")
DEFAULT = "en"


def negotiate(accept_language: str | None) -> str:
    """The best of LANGUAGES for an Accept-Language header (`fr-CH, fr;q=0.9, en;q=0.8`)."""
    ranked = []
    for position, item in enumerate((accept_language or "").split(",")):
        tag, _, params = item.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                quality = 0.0
        primary = tag.strip().lower().split("-")[0]
        if primary in LANGUAGES and quality > 0:
            ranked.append((-quality, position, primary))
    return min(ranked)[2] if ranked else DEFAULT


@functools.cache
def _catalog(language: str) -> dict[str, str]:
    text = resources.files("storefront_api.shop").joinpath(f"translations/{language}.json").read_text("utf-8")
    return json.loads(text)


def words(language: str) -> dict[str, str]:
    """Every key, in `language` where it has the words, else in English."""
    return {**_catalog(DEFAULT), **_catalog(language)}


def translator(language: str) -> Callable[..., str]:
    catalog = words(language)

    def t(key: str, default: str | None = None, **params) -> str:
        """The words for `key`, filled in with `params`; else `default` as it stands."""
        if key not in catalog:
            return default if default is not None else key
        return catalog[key].format(**params) if params else catalog[key]

    return t
