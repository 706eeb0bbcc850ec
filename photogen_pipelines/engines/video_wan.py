"""Wan image-to-video on diffusers (`WanImageToVideoPipeline`): a few seconds of video from
one approved portrait, the `living_portrait` job's engine (`Animator`).

Its folder is the models folder's `wan-i2v/`: the model's diffusers folder as Wan-AI
publishes it (`transformer/`, `vae/`, `text_encoder/` umt5-xxl, `tokenizer/`, `scheduler/`,
and for Wan 2.1 `image_encoder/` CLIP ViT-H with `image_processor/`), read with
`from_pretrained`. Two Apache-2.0 releases are supported, told apart by the folder itself:

- Wan 2.2 TI2V-5B (`Wan-AI/Wan2.2-TI2V-5B-Diffusers`, the default): the portrait's latents
  are the first latent frame (`expand_timesteps`); 24 fps, 720p (1280x704, about 0.9 MP);
  sides in multiples of 32 (its VAE compresses 16x, its transformer reads 2x2 patches).
  Its `model_index.json` names `WanPipeline`: the same folder serves text-to-video.
- Wan 2.1 I2V 14B (`Wan-AI/Wan2.1-I2V-14B-480P-Diffusers` or `-720P-`): a CLIP encoder
  reads the portrait too; 16 fps, 480p (832x480); sides in multiples of 16.

Wan 2.2 I2V-A14B (two transformers) is refused by name: it is not tested here.

`animate(portrait, prompt, seconds, fps, seed, size)` makes round(seconds x fps) frames at
`size` (width, height). The model makes 4k + 1 frames (its VAE packs four frames into one
latent after the first), so it makes the next such count and the extra frames are dropped;
`fps` is the video's frame rate, and motion looks natural at the model's own
(`native_fps`). The frames are generated at `size` rounded up to the model's side multiple
(the portrait cropped around its centre to that aspect: the caller frames it at the
video's aspect first) and cropped back to exactly `size` around the centre, so no frame
is stretched or resampled.

As the reference-image engines do (engines/stylize_reference.py): the pipeline is loaded
once per process per (folder, device, placement) and cached; a lock keeps generations one
at a time (a pipeline object is not re-entrant); the noise comes from a `torch.Generator`
on the CPU, so a seed gives the same video on any device. bf16 on a GPU (Wan is trained in
bf16; the VAE and the CLIP encoder stay in float32, as Wan-AI runs them), float32 on the
CPU. `memory_profile` auto moves whole models in and out of a card smaller than the
variant needs (diffusers' model CPU offload, with the VAE decoding in tiles).
"""

from __future__ import annotations

import json
import math
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from photogen_pipelines.engines.base import package_version
from photogen_pipelines.engines.models_folder import engine_defaults
from photogen_pipelines.errors import BadInput, ModelError

FOLDER = "wan-i2v"
COMPONENTS = ("transformer", "vae", "text_encoder", "tokenizer", "scheduler")
MAX_SECONDS = 10.0  # a living portrait is a few seconds; Wan is trained on ~5 s clips
MAX_FPS = 60
PROMPT_TEMPLATE = (
    "{prompt}. The same person as in the picture, their face and identity unchanged; gentle natural motion, steady camera."
)
NEGATIVE_PROMPT = (
    "still picture, morphing face, a different person, several people, deformed face, extra fingers, "
    "blurred details, overexposed, text, subtitles, watermark, worst quality, compression artefacts"
)
_GENERATION_LOCK = threading.Lock()  # one pipeline per process is shared: one video at a time
_CACHE: dict[tuple, object] = {}
_CACHE_LOCK = threading.Lock()


@dataclass(frozen=True)
class WanVariant:
    key: str  # its entry in catalog/models.yaml
    name: str
    native_fps: int  # the frame rate it was trained at: motion looks natural at it
    pixels: int  # the picture size it was trained at, in pixels
    default_steps: int
    guidance: float
    resident_gib: float  # a GPU with less memory gets model CPU offload


VARIANTS = {
    "wan2.2-ti2v-5b": WanVariant("wan2.2-ti2v-5b", "Wan 2.2 TI2V-5B", 24, 1280 * 704, 50, 5.0, 40.0),
    "wan2.1-i2v-14b": WanVariant("wan2.1-i2v-14b", "Wan 2.1 I2V 14B", 16, 832 * 480, 40, 5.0, 64.0),
}


def missing_files(models_dir: Path) -> list[str]:
    """What `models_dir` lacks of a Wan image-to-video folder, described."""
    folder = Path(models_dir) / FOLDER
    if not (folder / "model_index.json").is_file():
        return [f"{folder}/model_index.json (Wan 2.2 TI2V-5B or Wan 2.1 I2V as a diffusers folder)"]
    needed = list(COMPONENTS)
    if _index(folder).get("image_encoder", [None])[0] is not None:
        needed += ["image_encoder", "image_processor"]
    return [f"{folder / part}/" for part in needed if not (folder / part).is_dir()]


def folder_variant(folder: Path) -> WanVariant:
    """Which Wan release a diffusers folder holds, from its model_index.json."""
    index = _index(folder)
    if index.get("transformer_2", [None])[0] is not None or index.get("boundary_ratio") is not None:
        raise ModelError(f"{folder} holds a two-expert Wan (2.2 A14B), which this engine does not run; use TI2V-5B or 2.1 I2V")
    if index.get("expand_timesteps"):
        return VARIANTS["wan2.2-ti2v-5b"]
    if index.get("image_encoder", [None])[0] is not None:
        return VARIANTS["wan2.1-i2v-14b"]
    raise ModelError(f"{folder} is a Wan text-to-video folder (no image conditioning); use TI2V-5B or 2.1 I2V")


def _index(folder: Path) -> dict:
    try:
        return json.loads((Path(folder) / "model_index.json").read_text())
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot read {folder}/model_index.json: {exc}") from None


def load_pipeline(models_dir: Path, device: str = "auto", memory_profile: str = "auto"):
    """The Wan pipeline from `models_dir`/wan-i2v, loaded once per process per placement."""
    import torch
    from diffusers import WanImageToVideoPipeline

    from photogen_pipelines.engines.instantid import quiet_loading
    from photogen_pipelines.engines.torch_device import select_device_dtype

    models_dir = Path(models_dir).expanduser().resolve()
    try:
        dev, _ = select_device_dtype(device)
    except ValueError as exc:
        raise ModelError(f"wan-i2v: {exc}") from None
    missing = missing_files(models_dir)
    if missing:
        raise ModelError(f"wan-i2v models incomplete in {models_dir}; missing: " + "; ".join(missing))
    folder = models_dir / FOLDER
    variant = folder_variant(folder)
    offload = dev.type == "cuda" and _wants_offload(memory_profile, dev, variant.resident_gib)
    key = (str(models_dir), str(dev), offload)
    with _CACHE_LOCK:
        if key not in _CACHE:
            default = torch.bfloat16 if dev.type == "cuda" else torch.float32
            dtypes = {"default": default, "vae": torch.float32, "image_encoder": torch.float32}
            with quiet_loading():
                try:
                    pipe = WanImageToVideoPipeline.from_pretrained(folder, torch_dtype=dtypes, local_files_only=True)
                except (OSError, ValueError, KeyError, RuntimeError, TypeError) as exc:
                    raise ModelError(f"could not load Wan image-to-video from {folder}: {exc}") from exc
            if offload:
                pipe.enable_model_cpu_offload(device=dev)
                pipe.vae.enable_tiling()  # a 720p decode is the peak of a small card
            else:
                pipe.to(dev)
            pipe.set_progress_bar_config(disable=True)
            _CACHE[key] = pipe
        return _CACHE[key]


def _wants_offload(profile: str, device, resident_gib: float) -> bool:
    """memory_profile: auto (offload on a card smaller than the variant needs), low |
    medium (offload), high | high-bf16 (resident)."""
    if profile in ("low", "medium"):
        return True
    if profile in ("high", "high-bf16"):
        return False
    if profile != "auto":
        raise ModelError(f"unknown memory profile {profile!r} for the Wan engine; known: auto, low, medium, high")
    from photogen_pipelines.engines.memory_profiles import cuda_memory_gib

    return cuda_memory_gib(device) < resident_gib


def clear_wan_cache() -> None:
    with _CACHE_LOCK:
        _CACHE.clear()


def frame_count(seconds: float, fps: int) -> int:
    """The frames of `seconds` of video at `fps`, at least one."""
    return max(1, round(seconds * fps))


def model_frame_count(frames: int, temporal: int = 4) -> int:
    """The smallest count the model makes (temporal x k + 1) that holds `frames`."""
    return temporal * math.ceil((frames - 1) / temporal) + 1


class WanAnimator:
    """A few seconds of video of the person in an approved portrait (GPU; tiny models on a CPU)."""

    def __init__(
        self,
        model_dir: str | Path,
        *,
        device: str = "auto",
        memory_profile: str = "auto",
        steps: int | None = None,
        guidance: float | None = None,
    ):
        self.model_dir = Path(model_dir).expanduser()
        self.device, self.memory_profile = device, memory_profile
        missing = missing_files(self.model_dir)
        if missing:
            raise ModelError(f"wan-i2v models incomplete in {self.model_dir}; missing: " + "; ".join(missing))
        self.variant = folder_variant(self.model_dir / FOLDER)
        folder_defaults = engine_defaults(self.model_dir)  # tiny models ask for few steps and small pictures
        self.steps = steps or folder_defaults.get("steps") or self.variant.default_steps
        self.pixels = folder_defaults.get("pixels") or self.variant.pixels
        self.guidance = self.variant.guidance if guidance is None else guidance
        self.native_fps = self.variant.native_fps
        self.name = "wan-i2v-diffusers"
        self.version = (
            f"{self.variant.name} {self.model_dir.name}/{FOLDER} (diffusers {package_version('diffusers')}; "
            f"{self.steps} steps, guidance {self.guidance:g})"
        )

    def pipeline(self):
        """The loaded pipeline (the first call loads it; the process keeps it)."""
        return load_pipeline(self.model_dir, self.device, self.memory_profile)

    def load(self) -> None:
        """Load the pipeline now rather than at the first video."""
        with _GENERATION_LOCK:
            self.pipeline()

    def size_for(self, aspect: float) -> tuple[int, int]:
        """(width, height) of about the variant's trained pixels at `aspect` (width / height),
        even sides (what an H.264 yuv420p video needs)."""
        width = math.sqrt(self.pixels * aspect)
        return max(2, 2 * round(width / 2)), max(2, 2 * round(width / aspect / 2))

    def animate(
        self, portrait: np.ndarray, prompt: str, seconds: float, fps: int, seed: int, size: tuple[int, int]
    ) -> list[np.ndarray]:
        """round(seconds x fps) HxWx3 uint8 frames at `size` (width, height), the first
        being the portrait; the same seed gives the same frames."""
        import torch

        _check_request(portrait, seconds, fps, size)
        wanted = frame_count(seconds, fps)
        with _GENERATION_LOCK:
            pipe = self.pipeline()
            multiple = pipe.vae_scale_factor_spatial * pipe.transformer.config.patch_size[1]
            work = (_round_up(size[0], multiple), _round_up(size[1], multiple))
            picture = ImageOps.fit(Image.fromarray(np.ascontiguousarray(portrait)).convert("RGB"), work, Image.LANCZOS)
            video = pipe(
                image=picture,
                prompt=PROMPT_TEMPLATE.format(prompt=prompt.strip().rstrip(".") or "a portrait"),
                negative_prompt=NEGATIVE_PROMPT,
                height=work[1],
                width=work[0],
                num_frames=model_frame_count(wanted, pipe.vae_scale_factor_temporal),
                num_inference_steps=self.steps,
                guidance_scale=self.guidance,
                # on the CPU: the same noise on any GPU
                generator=torch.Generator().manual_seed(seed),
                output_type="np",
            ).frames[0]
        frames = [np.clip(np.rint(frame * 255.0), 0, 255).astype(np.uint8) for frame in video[:wanted]]
        return [_centre_crop(frame, size) for frame in frames]


def _check_request(portrait: np.ndarray, seconds: float, fps: int, size: tuple[int, int]) -> None:
    if not isinstance(portrait, np.ndarray) or portrait.dtype != np.uint8 or portrait.ndim != 3 or portrait.shape[2] != 3:
        got = f"{portrait.dtype} {portrait.shape}" if isinstance(portrait, np.ndarray) else type(portrait).__name__
        raise ValueError(f"animate needs an HxWx3 uint8 RGB portrait, got {got}")
    if not (isinstance(seconds, (int, float)) and 0 < seconds <= MAX_SECONDS):
        raise BadInput(
            f"a living portrait lasts more than 0 and at most {MAX_SECONDS:g} seconds, not {seconds}", code="bad_video_length"
        )
    if not (isinstance(fps, int) and 1 <= fps <= MAX_FPS):
        raise BadInput(f"the frame rate must be a whole number from 1 to {MAX_FPS}, not {fps}", code="bad_video_fps")
    width, height = size
    if not (isinstance(width, int) and isinstance(height, int) and width >= 2 and height >= 2):
        raise BadInput(f"the video size must be two whole numbers of at least 2 pixels, not {size}", code="bad_video_size")


def _round_up(side: int, multiple: int) -> int:
    return multiple * math.ceil(side / multiple)


def _centre_crop(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    width, height = size
    top, left = (frame.shape[0] - height) // 2, (frame.shape[1] - width) // 2
    return np.ascontiguousarray(frame[top : top + height, left : left + width])
