"""Production upscale engine: Real-ESRGAN x4plus in our own short RRDBNet on torch, tiled,
fp16 on GPU (docs/architecture.md §3). The GPU counterpart of `upscale_ncnn.NcnnRealEsrgan`.

Weights: `RealESRGAN_x4plus.pth` from the authors' v0.1.0 release,
https://github.com/xinntao/Real-ESRGAN/releases/download/v0.1.0/RealESRGAN_x4plus.pth
(~64 MB, fp32, a dict whose one key `params_ema` holds the EMA generator's state dict).
`RealESRGAN_x2plus.pth` (release v0.2.1) and `RealESRNet_x4plus.pth` load the same way.
Real-ESRGAN's code and weights are under the BSD-3-Clause licence, as published by the
authors (Xintao Wang et al., https://github.com/xinntao/Real-ESRGAN): keep their copyright
notice and licence text next to the weights wherever we ship them. The weights cannot be
downloaded at run time here; operators put the file on the GPU host and set `model_path`.

The network is ESRGAN's RRDBNet with the parameter names of BasicSR's `rrdbnet_arch`, so the
official state dict loads strictly. It is written here because torchvision does not work
with our CPU torch build and the realesrgan/basicsr/spandrel packages do not import.
"""

from __future__ import annotations

import functools
import re
import threading
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from photogen_pipelines.engines.base import check_upscale_input, require_file
from photogen_pipelines.engines.torch_device import DTYPES, select_device_dtype  # noqa: F401  (tests import them here)
from photogen_pipelines.errors import ModelError

# Model scale -> pixel-unshuffle factor applied to the input (the trunk always upsamples x4).
UNSHUFFLE = {4: 1, 2: 2, 1: 4}


def _lrelu(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, 0.2, inplace=True)


class ResidualDenseBlock(nn.Module):
    """Five 3x3 convs, each seeing the input and every earlier output; 0.2-scaled residual."""

    def __init__(self, num_feat: int, num_grow_ch: int) -> None:
        super().__init__()
        for i in range(1, 5):
            setattr(self, f"conv{i}", nn.Conv2d(num_feat + (i - 1) * num_grow_ch, num_grow_ch, 3, 1, 1))
        self.conv5 = nn.Conv2d(num_feat + 4 * num_grow_ch, num_feat, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for conv in (self.conv1, self.conv2, self.conv3, self.conv4):
            features.append(_lrelu(conv(torch.cat(features, 1))))
        return self.conv5(torch.cat(features, 1)) * 0.2 + x


class RRDB(nn.Module):
    """Residual in residual dense block: three dense blocks, 0.2-scaled residual."""

    def __init__(self, num_feat: int, num_grow_ch: int) -> None:
        super().__init__()
        self.rdb1 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb2 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb3 = ResidualDenseBlock(num_feat, num_grow_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rdb3(self.rdb2(self.rdb1(x))) * 0.2 + x


class RRDBNet(nn.Module):
    """Real-ESRGAN's generator. Defaults are x4plus; scale 2 and 1 pixel-unshuffle the input
    by 2 and 4 first (input sides must then be multiples of 2 and 4), as the official code does.
    Input and output are NCHW RGB in 0..1."""

    def __init__(
        self,
        num_in_ch: int = 3,
        num_out_ch: int = 3,
        *,
        num_feat: int = 64,
        num_block: int = 23,
        num_grow_ch: int = 32,
        scale: int = 4,
    ) -> None:
        super().__init__()
        if scale not in UNSHUFFLE:
            raise ValueError(f"RRDBNet supports scales {tuple(UNSHUFFLE)}, not {scale}")
        self.scale = scale
        self.unshuffle = UNSHUFFLE[scale]
        self.conv_first = nn.Conv2d(num_in_ch * self.unshuffle**2, num_feat, 3, 1, 1)
        self.body = nn.Sequential(*(RRDB(num_feat, num_grow_ch) for _ in range(num_block)))
        self.conv_body = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_up1 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_up2 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_hr = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_last = nn.Conv2d(num_feat, num_out_ch, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.unshuffle > 1:
            x = F.pixel_unshuffle(x, self.unshuffle)
        feat = self.conv_first(x)
        feat = feat + self.conv_body(self.body(feat))
        feat = _lrelu(self.conv_up1(F.interpolate(feat, scale_factor=2, mode="nearest")))
        feat = _lrelu(self.conv_up2(F.interpolate(feat, scale_factor=2, mode="nearest")))
        return self.conv_last(_lrelu(self.conv_hr(feat)))


def infer_config(state: dict[str, torch.Tensor]) -> dict[str, int]:
    """RRDBNet's constructor arguments, read off the tensors' shapes (in = out channels)."""
    first, last = state["conv_first.weight"], state["conv_last.weight"]
    num_out_ch = last.shape[0]
    scale = next((s for s, u in UNSHUFFLE.items() if first.shape[1] == num_out_ch * u * u), None)
    if scale is None:
        raise ValueError(f"conv_first takes {first.shape[1]} channels, which fits no scale for {num_out_ch}-channel images")
    blocks = {int(m.group(1)) for key in state if (m := re.match(r"body\.(\d+)\.", key))}
    num_block = max(blocks, default=-1) + 1
    return {
        "num_in_ch": num_out_ch,
        "num_out_ch": num_out_ch,
        "num_feat": first.shape[0],
        "num_block": num_block,
        "num_grow_ch": state["body.0.rdb1.conv1.weight"].shape[0] if num_block else 32,
        "scale": scale,
    }


def load_rrdbnet(path: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> RRDBNet:
    """An RRDBNet in eval mode on `device`/`dtype` from a `.pth` holding `{"params_ema": sd}`
    (the official files), `{"params": sd}` or a bare state dict. The architecture comes from
    the tensors' shapes, so any RRDBNet size loads; a file that is not one is a ModelError."""
    path = require_file(Path(path))
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle, zip and torch errors all mean "not a weights file"
        raise ModelError(f"cannot read {path} as torch weights: {type(exc).__name__}: {str(exc)[:200]}") from exc
    if isinstance(loaded, dict):
        loaded = next((loaded[key] for key in ("params_ema", "params") if key in loaded), loaded)
    if not isinstance(loaded, dict) or not isinstance(loaded.get("conv_first.weight"), torch.Tensor):
        raise ModelError(
            f"{path} holds no RRDBNet weights: expected a state dict with conv_first.weight, bare or under 'params_ema'/'params'"
        )
    try:
        with torch.device("meta"):  # no time spent initialising weights that are replaced next
            net = RRDBNet(**infer_config(loaded))
        net.load_state_dict(loaded, strict=True, assign=True)
    except (KeyError, IndexError, RuntimeError, ValueError) as exc:
        raise ModelError(f"{path} is not a Real-ESRGAN RRDBNet state dict: {str(exc)[:300]}") from exc
    return net.to(device=device, dtype=dtype).eval().requires_grad_(False)


@functools.cache
def _cached_rrdbnet(path: str, device: str, dtype: str) -> RRDBNet:
    return load_rrdbnet(path, device, getattr(torch, dtype))


_cache_lock = threading.Lock()


def cached_rrdbnet(path: str | Path, device: str | torch.device, dtype: torch.dtype) -> RRDBNet:
    """load_rrdbnet, once per process for each (file, device, dtype): Dagster builds resources
    anew for every run, and a 64 MB model should reach the GPU once. Failures are not cached."""
    # Locked so two threads starting at once do not both load the file.
    with _cache_lock:
        return _cached_rrdbnet(str(Path(path).resolve()), str(torch.device(device)), str(dtype).removeprefix("torch."))


def tile_windows(n: int, tile: int, pad: int) -> list[tuple[int, int, int, int]]:
    """Along one axis of length n: (core start, core end, window start, window end) per tile.
    Cores split the axis into equal parts of at most `tile` px. Every window has the same
    length (so tiles batch together) and holds its core plus >= `pad` px of context on each
    side that is not the image border: it is shifted inwards at the borders, not shrunk."""
    if n <= tile + 2 * pad:
        return [(0, n, 0, n)]
    step = -(-n // -(-n // tile))  # ceil(n / number of tiles)
    size = min(step + 2 * pad, n)
    windows = []
    for c0 in range(0, n, step):
        w0 = min(max(c0 - pad, 0), n - size)
        windows.append((c0, min(c0 + step, n), w0, w0 + size))
    return windows


class TorchRealEsrgan:
    """Real-ESRGAN (RRDBNet, x4plus weights) on torch: GPU fp16 in production, CPU fp32 in tests.

    The image is cut into tiles of at most `tile` px with `tile_pad` px of context on each
    side; `batch` tiles go through the net per forward pass and the context is cropped off
    after scaling, so tiles meet without seams (with a context as wide as the net's receptive
    field the result equals the untiled one). The model is loaded when the engine is built, so
    a missing or broken weights file fails at start-up, and is cached process-wide.
    """

    name = "realesrgan-torch"

    def __init__(
        self,
        model_path: str | Path,
        device: str = "auto",
        dtype: str = "auto",
        tile: int = 256,
        tile_pad: int = 16,
        batch: int = 4,
    ) -> None:
        if tile < 1 or tile_pad < 0 or batch < 1:
            raise ValueError(f"tile and batch must be >= 1 and tile_pad >= 0, got {tile}, {tile_pad}, {batch}")
        self.model_path = Path(model_path)
        self.device, self.dtype = select_device_dtype(device, dtype)
        self.tile, self.tile_pad, self.batch = tile, tile_pad, batch
        self.net = cached_rrdbnet(self.model_path, self.device, self.dtype)
        self.scales: tuple[int, ...] = (self.net.scale,)
        dtype_name = str(self.dtype).removeprefix("torch.")
        self.version = (
            f"{self.model_path.name} RRDBNet x{self.net.scale} {len(self.net.body)} blocks"
            f" (torch {torch.__version__}, {dtype_name} on {self.device.type})"
        )

    def upscale(self, image: np.ndarray, scale: int) -> np.ndarray:
        """HxWx3 uint8 RGB -> (H*scale)x(W*scale)x3 uint8 RGB."""
        return self._upscale(image, scale, raw=False)

    def upscale_float(self, image: np.ndarray, scale: int) -> np.ndarray:
        """The net's raw output as float32 (nominally 0..1, not clipped): for tests and diagnostics."""
        return self._upscale(image, scale, raw=True)

    def _check(self, image: np.ndarray, scale: int) -> None:
        check_upscale_input(image, scale, self.scales, self.model_path.name)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        # x2/x1 models pixel-unshuffle their input: pad to a multiple of the factor, crop after.
        h, w = x.shape[-2:]
        m = self.net.unshuffle
        if h % m or w % m:
            x = F.pad(x, (0, -w % m, 0, -h % m), mode="replicate")
        return self.net(x)[..., : h * self.net.scale, : w * self.net.scale]

    def _upscale(self, image: np.ndarray, scale: int, raw: bool) -> np.ndarray:
        self._check(image, scale)
        h, w = image.shape[:2]
        tiles = [(r, c) for r in tile_windows(h, self.tile, self.tile_pad) for c in tile_windows(w, self.tile, self.tile_pad)]
        out = np.empty((h * scale, w * scale, 3), dtype=np.float32 if raw else np.uint8)
        pixels = torch.tensor(np.ascontiguousarray(image), device=self.device).permute(2, 0, 1)  # a 3xHxW uint8 copy
        s = scale
        with torch.inference_mode():
            for i in range(0, len(tiles), self.batch):
                chunk = tiles[i : i + self.batch]
                x = torch.stack([pixels[:, r[2] : r[3], c[2] : c[3]] for r, c in chunk]).to(self.dtype).div_(255)
                try:
                    y = self._forward(x).float()
                except torch.OutOfMemoryError as exc:
                    raise ModelError(
                        f"out of {self.device} memory on {len(chunk)} tiles of {x.shape[-1]}x{x.shape[-2]} px;"
                        f" lower batch ({self.batch}) or tile ({self.tile})"
                    ) from exc
                if not raw:  # on the device: a quarter of the bytes to copy back
                    y = y.clamp_(0, 1).mul_(255).add_(0.5).to(torch.uint8)
                y = y.permute(0, 2, 3, 1).cpu().numpy()
                for ((y0, y1, wy, _), (x0, x1, wx, _)), scaled in zip(chunk, y, strict=True):
                    oy, ox = (y0 - wy) * s, (x0 - wx) * s
                    out[y0 * s : y1 * s, x0 * s : x1 * s] = scaled[oy : oy + (y1 - y0) * s, ox : ox + (x1 - x0) * s]
        return out
