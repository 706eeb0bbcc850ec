"""Shared fixtures: real images, the real embedded engines (loaded once per session)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from skimage import data

from photogen_pipelines.imaging import decode_upload, png_bytes

FACES_DIR = Path(__file__).parent / "data" / "faces"
FACE_FILES = ["ardern_2022.jpg", "macron_2025.jpg", "obama_senate.jpg"]


@pytest.fixture(scope="session")
def face_images() -> dict[str, np.ndarray]:
    """Four public-domain portraits of four different people, as RGB arrays."""
    images = {"astronaut": data.astronaut()}
    for name in FACE_FILES:
        images[name.split("_")[0]] = np.asarray(decode_upload((FACES_DIR / name).read_bytes()))
    return images


@pytest.fixture(scope="session")
def astronaut_png() -> bytes:
    return png_bytes(data.astronaut())


@pytest.fixture(scope="session")
def analyzer():
    from resources.engines import _face_analyzer

    return _face_analyzer("embedded", None)


@pytest.fixture(scope="session")
def stylizer():
    from resources.engines import _stylizer

    return _stylizer("embedded", None, None)


@pytest.fixture(scope="session")
def upscaler():
    from resources.engines import _upscaler

    return _upscaler("embedded", "REALESRGAN_ANIMAVIDEOV3", None, 256, None)
