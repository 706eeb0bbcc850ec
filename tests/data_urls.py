"""What the fake hosted APIs share: the pictures clients send them as base64 data URLs."""

from __future__ import annotations

import base64
import binascii
import io

import numpy as np
from PIL import Image


def data_url_bytes(url: str) -> bytes | None:
    """The bytes of a base64 `data:` URL; None for any other URL or a payload that is not base64."""
    header, _, payload = url.partition(",")
    if not (header.startswith("data:") and header.endswith(";base64")):
        return None
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        return None


def picture_of(data: bytes) -> np.ndarray | None:
    """The bytes as an RGB picture; None when they are not an image."""
    try:
        return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    except OSError:
        return None
