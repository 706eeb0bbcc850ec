"""The shop's brand from its settings (PHOTOGEN_SHOP_*), with no code change: its name, logo
and colour. The colour reaches the pages as CSS custom properties in a small stylesheet of its
own (/shop/theme.css), never as inline styles (the pages' CSP allows only our stylesheets).

Readable whatever colour a shop picks: text on a button of the colour is white or near-black,
whichever contrasts more, and links use the colour darkened until they reach WCAG AA (4.5:1)
on the white page."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from urllib.parse import urlsplit

from storefront_api.config import Settings

AA = 4.5
INK = "#1a1a1a"  # the pages' text colour
PAGE = "#ffffff"


def _channel(value: int) -> float:
    c = value / 255
    return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4


def luminance(colour: str) -> float:
    r, g, b = (int(colour[i : i + 2], 16) for i in (1, 3, 5))
    return 0.2126 * _channel(r) + 0.7152 * _channel(g) + 0.0722 * _channel(b)


def contrast(a: str, b: str) -> float:
    """WCAG 2's contrast ratio of two #rrggbb colours, 1 to 21."""
    high, low = sorted((luminance(a), luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def _darker(colour: str, step: float = 0.9) -> str:
    return "#" + "".join(f"{round(int(colour[i : i + 2], 16) * step):02x}" for i in (1, 3, 5))


def readable_on_page(colour: str) -> str:
    """`colour`, darkened until it reads as text on the white page (AA)."""
    while contrast(colour, PAGE) < AA:
        colour = _darker(colour)
    return colour


def text_on(colour: str) -> str:
    return PAGE if contrast(PAGE, colour) >= contrast(INK, colour) else INK


@dataclass(frozen=True)
class Brand:
    name: str
    logo_url: str | None
    primary: str
    return_url: str | None

    @classmethod
    def of(cls, settings: Settings) -> Brand:
        return cls(settings.shop_name, settings.shop_logo_url, settings.shop_primary_color, settings.shop_return_url)

    @property
    def logo_origin(self) -> str | None:
        """The origin the CSP must allow for the logo: only an https:// logo needs one."""
        if not self.logo_url or not self.logo_url.startswith(("http://", "https://")):
            return None
        parts = urlsplit(self.logo_url)
        return f"{parts.scheme}://{parts.netloc}"

    def stylesheet(self) -> str:
        # the button's colour, darkened if needed so its text reaches AA too
        button = self.primary
        while max(contrast(PAGE, button), contrast(INK, button)) < AA:
            button = _darker(button)
        return f":root{{--primary:{button};--on-primary:{text_on(button)};--link:{readable_on_page(self.primary)}}}\n"

    @property
    def version(self) -> str:
        """Changes with the stylesheet: its URL's cache buster."""
        return hashlib.sha256(self.stylesheet().encode()).hexdigest()[:10]
