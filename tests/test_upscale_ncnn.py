"""The embedded ncnn Real-ESRGAN engine, run for real on a small photo."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from skimage import data

from photogen_pipelines.engines.upscale_ncnn import NcnnRealEsrgan, blob_names
from photogen_pipelines.errors import ModelError
from tests.contracts import BAD_UPSCALE_INPUTS

W, H = 96, 80


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return np.asarray(Image.fromarray(data.astronaut()).resize((W, H), Image.LANCZOS))


@pytest.fixture(scope="module")
def engine() -> NcnnRealEsrgan:
    return NcnnRealEsrgan(tile=256)


def _mae(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).mean())


def _downscale(image: np.ndarray) -> np.ndarray:
    return np.asarray(Image.fromarray(image).resize((W, H), Image.BOX))


@pytest.mark.parametrize("scale", [2, 4])
def test_upscaled_photo_is_the_same_photo(engine, photo, scale):
    out = engine.upscale(photo, scale)
    assert out.shape == (H * scale, W * scale, 3)
    assert out.dtype == np.uint8

    back = _downscale(out)
    # Measured ~6.3-6.8 grey levels for x2/x4; a wrong normalisation gives 40+.
    err = _mae(back, photo)
    assert err < 10
    # Unrelated images sit around 90-100.
    assert err * 5 < _mae(back, photo[::-1])
    noise = np.random.default_rng(0).integers(0, 256, photo.shape, dtype=np.uint8)
    assert err * 5 < _mae(back, noise)
    # Channel order: a swapped R/B would move the red mean by ~45 on this photo.
    mean_shift = back.reshape(-1, 3).mean(0) - photo.reshape(-1, 3).mean(0)
    assert np.abs(mean_shift).max() < 3


def _distance_to_seams(n: int, tile: int, scale: int) -> np.ndarray:
    """Per output row/column: distance in input px to the nearest tile seam."""
    seams = np.arange(tile, n, tile) * scale
    idx = np.arange(n * scale)
    return np.abs(idx[:, None] - seams[None, :]).min(axis=1) / scale


def test_tiled_matches_untiled_away_from_seams(engine, photo):
    whole = engine.upscale(photo, 4).astype(int)
    tiled = NcnnRealEsrgan(tile=32, tile_pad=8).upscale(photo, 4).astype(int)
    assert tiled.shape == whole.shape

    diff = np.abs(whole - tiled).max(axis=2)
    dist = np.minimum(_distance_to_seams(H, 32, 4)[:, None], _distance_to_seams(W, 32, 4)[None, :])
    # Measured: max 1 grey level >= 8 input px from a seam, mean ~0.2 overall and
    # max 14 right at a seam. A misplaced paste or missing padding gives ~100.
    assert diff[dist >= 8].max() <= 2
    assert diff.mean() < 0.5
    assert diff.max() < 30


def test_missing_model_dir_names_the_file(tmp_path):
    with pytest.raises(ModelError) as info:
        NcnnRealEsrgan(model_dir=tmp_path / "nowhere")
    assert str(tmp_path / "nowhere" / "REALESRGAN_ANIMAVIDEOV3_UP2X.param") in str(info.value)


def test_missing_weights_file_is_named(tmp_path, engine):
    (tmp_path / "REALESRGAN_X4PLUS_UP4X.param").symlink_to(engine.model_dir / "REALESRGAN_X4PLUS_UP4X.param")
    with pytest.raises(ModelError, match="REALESRGAN_X4PLUS_UP4X.bin"):
        NcnnRealEsrgan("REALESRGAN_X4PLUS", model_dir=tmp_path)


@pytest.mark.parametrize(("image", "message"), BAD_UPSCALE_INPUTS)
def test_bad_input_is_a_clear_value_error(engine, image, message):
    with pytest.raises(ValueError, match=message):
        engine.upscale(image, 2)


def test_unsupported_scale(engine, photo):
    assert engine.scales == (2, 3, 4)
    assert NcnnRealEsrgan("REALESRGAN_X4PLUS").scales == (4,)
    with pytest.raises(ValueError, match=r"\(2, 3, 4\)"):
        engine.upscale(photo, 8)


def test_blob_names_come_from_the_param_file(tmp_path):
    param = tmp_path / "m.param"
    param.write_text(
        "7767517\n3 3\n"
        "Input            in0   0 1 pixels\n"
        "Convolution      conv  1 1 pixels x 0=3 1=3\n"
        "PixelShuffle     ps    1 1 x upscaled 0=2\n"
    )
    assert blob_names(param) == ("pixels", "upscaled")
