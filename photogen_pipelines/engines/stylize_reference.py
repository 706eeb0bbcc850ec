"""The reference-image stylizers: FLUX.2 [klein] 4B (`flux2-klein`, the default production
engine) and Qwen-Image-Edit-Plus (`qwen-edit`), on diffusers, behind `Stylizer`.

Both models paint from reference pictures in context (they carry no face encoder): every
photo of the customer goes in, the framed primary first, and the model keeps the person
it sees in them. The identity gate (SFace, another encoder) then checks the likeness.
The two families differ in their pipeline class, loader and latent layout only
(engines/flux2_klein.py, engines/qwen_edit.py); what they share is here.

How the stages map onto them (`paint_from_references(references, params, strength,
seeds, size)`; `stylize_variants` and `stylize` are the one-reference cases):

- references: the customer's photos, the primary first (the stage passes the portrait
  framed for the product, then the other uploads). A style may bring a style reference
  picture (`reference_image`, a file in the models folder's `style-references/`): it goes
  last and takes one of the model's `max_references` places (klein: 4; Qwen-Image-Edit-
  Plus: 3 reads well), so a style picture leaves room for one photo fewer.
- size: the picture is generated at the product's aspect, `size` (width, height), with
  sides snapped to the model's multiple of 16 and resized to exactly `size` when the
  caller asked for another multiple. `size_for(aspect)` is the engine's own choice: about
  `pixels` (2 MP by default, what both models do well; the models folder's
  photogen-engine.yaml sets tiny ones for tiny models).
- `strength`, the identity gate's knob: where the denoising starts. Both models are
  rectified flows (x_sigma = (1 - sigma) x_0 + sigma noise). At 1.0 a picture starts from
  pure noise and the references steer it, as the models are used. Below 1.0 it starts
  from the framed primary photo noised to sigma = strength and runs all its steps from
  there down (SDEdit): the photo's layout and face survive more the lower it is, while the
  references still condition every step. sigma is the scheduler's own noise level, after
  its resolution-dependent shift (which at klein's 4 steps turns 0.3 into ~0.75: a
  strength before the shift would barely keep the photo), so the schedule is scaled until
  it starts there. The gate's retry
  multiplies it by `retry_decay`, as for every engine. Not fewer steps (a distilled
  4-step klein gets worse with fewer), not the text guidance (klein is guidance-
  distilled and has none): the start point is the one knob both models share.
- seeds: one picture per seed; each has its own `torch.Generator` on the CPU, so the
  same seed gives the same noise on any device and a picture does not depend on the batch
  it was rendered in. `stylize` seeds with a digest of its inputs.
- `params`: the style's `diffusion` section (prompt, negative prompt, guidance for Qwen's
  true CFG, optional `lora`: `loras/<family>/<name>.safetensors`, optional
  `reference_image`).

One pipeline per process per (family, folder, placement), loaded once and cached; a lock
keeps generations one at a time, since a pipeline object is not re-entrant.
"""

from __future__ import annotations

import math
import threading
from pathlib import Path
from typing import Protocol

import numpy as np
from PIL import Image

from photogen_pipelines.engines.base import package_version
from photogen_pipelines.engines.stylize_instantid import content_seed, diffusion_params
from photogen_pipelines.errors import ModelError

SIDE_MULTIPLE = 16  # both VAEs downsample 8x and the transformers read 2x2 latent patches
DEFAULT_PIXELS = 2048 * 1024  # ~2 MP: what klein and Qwen-Image-Edit do well
DEFAULT_REFERENCE_PIXELS = 1024 * 1024  # klein resizes larger references to 1 MP itself
MIN_REFERENCE_SIDE = 64  # klein refuses smaller references
STYLE_REFERENCES_DIR = "style-references"
LORAS_DIR = "loras"
PROMPT_TEMPLATE = (
    "Repaint the person in the photos{style_picture}: {prompt}. "
    "Keep their face, identity and expression exactly; one person, no text."
)
_GENERATION_LOCK = threading.Lock()  # one pipeline per process is shared: one generation at a time
_CACHE: dict[tuple, object] = {}
_CACHE_LOCK = threading.Lock()


class ReferenceModel(Protocol):
    """One family of reference-image pipelines: its folder, loader and latent layout
    (engines/flux2_klein.py, engines/qwen_edit.py)."""

    family: str  # the style backend's name: flux2-klein | qwen-edit
    folder: str  # its diffusers folder inside the models folder
    max_references: int
    default_steps: int
    tier_steps: bool  # whether a quality tier's steps make it better (not a step-distilled model)
    max_batch: int  # pictures per denoising batch on a GPU that holds the whole pipeline
    resident_gib: float  # a GPU with less memory gets model CPU offload

    def missing_files(self, model_dir: Path) -> list[str]: ...

    def from_pretrained(self, folder: Path, dtype):
        """The pipeline read from its diffusers folder (what save_pretrained wrote)."""

    def start_latents(self, pipe, photo: Image.Image | None, size: tuple[int, int], sigma: float, generators: list):
        """The latents denoising starts from, one row per generator: the photo's VAE
        latents noised to `sigma`, or pure noise without a photo, in the layout the
        pipeline's `latents=` takes."""

    def first_sigma(self, pipe, sigmas: np.ndarray, size: tuple[int, int], steps: int) -> float:
        """The noise level the pipeline's scheduler starts at for these `sigmas` (after
        its resolution-dependent shift)."""

    def call_kwargs(self, pipe, style) -> dict:
        """The family's own arguments of the pipeline call (guidance, text layers)."""


def load_pipeline(model: ReferenceModel, model_dir: Path, device: str = "auto", memory_profile: str = "auto"):
    """`model`'s pipeline from `model_dir`, loaded once per process per placement."""
    import torch

    from photogen_pipelines.engines.instantid import quiet_loading
    from photogen_pipelines.engines.torch_device import select_device_dtype

    model_dir = Path(model_dir).expanduser().resolve()
    try:
        dev, _ = select_device_dtype(device)
    except ValueError as exc:
        raise ModelError(f"{model.family}: {exc}") from None
    # both models are trained in bf16; fp16 overflows in their attention
    dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
    offload = dev.type == "cuda" and _wants_offload(memory_profile, dev, model.resident_gib)
    key = (model.family, str(model_dir), str(dev), offload)
    with _CACHE_LOCK:
        if key not in _CACHE:
            missing = model.missing_files(model_dir)
            if missing:
                raise ModelError(f"{model.family} models incomplete in {model_dir}; missing: " + "; ".join(missing))
            with quiet_loading():
                try:
                    pipe = model.from_pretrained(model_dir / model.folder, dtype)
                except (OSError, ValueError, KeyError, RuntimeError) as exc:
                    raise ModelError(f"could not load {model.family} from {model_dir / model.folder}: {exc}") from exc
            pipe.enable_model_cpu_offload(device=dev) if offload else pipe.to(dev)
            pipe.set_progress_bar_config(disable=True)
            pipe.offloaded = offload
            pipe.loaded_loras = set()  # the adapters loaded into it, by style LoRA name
            pipe.active_lora, pipe.active_lora_scale = None, 0.0
            _CACHE[key] = pipe
        return _CACHE[key]


def _wants_offload(profile: str, device, resident_gib: float) -> bool:
    """memory_profile: auto (offload when the card is smaller than the family needs),
    low | medium (offload), high | high-bf16 (resident)."""
    if profile in ("low", "medium"):
        return True
    if profile in ("high", "high-bf16"):
        return False
    if profile != "auto":
        raise ModelError(f"unknown memory profile {profile!r} for a reference-image engine; known: auto, low, medium, high")
    from photogen_pipelines.engines.memory_profiles import cuda_memory_gib

    return cuda_memory_gib(device) < resident_gib


def clear_reference_cache() -> None:
    with _CACHE_LOCK:
        _CACHE.clear()


def reference_model(family: str) -> ReferenceModel:
    if family == "flux2-klein":
        from photogen_pipelines.engines.flux2_klein import Flux2Klein

        return Flux2Klein()
    if family == "qwen-edit":
        from photogen_pipelines.engines.qwen_edit import QwenImageEditPlus

        return QwenImageEditPlus()
    raise ModelError(f"unknown reference-image engine {family!r}; known: flux2-klein, qwen-edit")


def generation_size(aspect: float, pixels: int) -> tuple[int, int]:
    """(width, height) of about `pixels` at `aspect` (width / height), sides multiples of 16."""
    width = math.sqrt(pixels * aspect)
    return snap(width), snap(width / aspect)


def snap(side: float) -> int:
    return max(SIDE_MULTIPLE, round(side / SIDE_MULTIPLE) * SIDE_MULTIPLE)


class ReferenceEditStylizer:
    """Paints the customer from their photos with a reference-image model (GPU)."""

    params_section = "diffusion"

    def __init__(
        self,
        family: str,
        model_dir: str | Path,
        *,
        device: str = "auto",
        memory_profile: str = "auto",
        steps: int | None = None,
        pixels: int = DEFAULT_PIXELS,
        reference_pixels: int = DEFAULT_REFERENCE_PIXELS,
    ):
        self.model = reference_model(family)
        self.name = f"{family}-diffusers"
        self.model_dir = Path(model_dir).expanduser()
        self.device, self.memory_profile = device, memory_profile
        self.steps = steps or self.model.default_steps
        self.pixels, self.reference_pixels = pixels, reference_pixels
        self.max_references = self.model.max_references
        self.takes_tier_steps = self.model.tier_steps  # tiers.steps_for_call reads it
        self.version = (
            f"{family} {self.model_dir.name}/{self.model.folder} (diffusers {package_version('diffusers')}; "
            f"{self.steps} steps at {pixels / 1e6:.2g} MP)"
        )

    # -- loading ------------------------------------------------------------------------

    def pipeline(self):
        """The loaded pipeline (the first call loads it; the process keeps it)."""
        return load_pipeline(self.model, self.model_dir, self.device, self.memory_profile)

    def load(self) -> None:
        """Load the pipeline now rather than at the first order (the warm service's readiness)."""
        with _GENERATION_LOCK:
            self.pipeline()

    def load_style(self, params: dict) -> None:
        """Load the style's LoRA, if it has one, so its orders find it resident."""
        if lora := diffusion_params(params).lora:
            with _GENERATION_LOCK:
                self._load_lora(self.pipeline(), lora)

    def unload_style(self, params: dict) -> None:
        if lora := diffusion_params(params).lora:
            with _GENERATION_LOCK:
                pipe = self.pipeline()
                if lora in pipe.loaded_loras:
                    pipe.delete_adapters(lora)
                    pipe.loaded_loras.discard(lora)
                    # deleting may leave another adapter active: back to what was in use
                    self._use_lora(pipe, None if pipe.active_lora == lora else pipe.active_lora, pipe.active_lora_scale)

    def lora_path(self, name: str) -> Path:
        return self.model_dir / LORAS_DIR / self.model.family / f"{name}.safetensors"

    def _load_lora(self, pipe, name: str) -> None:
        """Load the LoRA `name` once per pipeline, switched off: it is on only while a
        style that names it paints (`_use_lora`)."""
        if name in pipe.loaded_loras:
            return
        path = self.lora_path(name)
        if not path.is_file():
            raise ModelError(f"no {self.model.family} style LoRA {name!r}: {path} is missing")
        from diffusers.utils import USE_PEFT_BACKEND

        if not USE_PEFT_BACKEND:
            raise ModelError("style LoRAs need the `peft` package (the gpu extra), which is not installed")
        try:
            pipe.load_lora_weights(str(path.parent), weight_name=path.name, adapter_name=name, local_files_only=True)
        except (OSError, ValueError, KeyError, RuntimeError) as exc:
            raise ModelError(f"could not load the {self.model.family} style LoRA {name!r} from {path}: {exc}") from exc
        pipe.loaded_loras.add(name)
        # peft makes a freshly loaded adapter active: a style that only loads it (the warm
        # service's load_style) must not leave it painting the next LoRA-less style
        self._use_lora(pipe, pipe.active_lora, pipe.active_lora_scale)

    def _use_lora(self, pipe, name: str | None, scale: float) -> None:
        if name is None:
            # off whatever `active_lora` says: loading and deleting adapters switch them
            # on behind its back, and a LoRA-less style must paint as if none were loaded
            if pipe.loaded_loras:
                pipe.disable_lora()
            pipe.active_lora, pipe.active_lora_scale = None, 0.0
            return
        self._load_lora(pipe, name)
        pipe.enable_lora()
        pipe.set_adapters([name], adapter_weights=[scale])
        pipe.active_lora, pipe.active_lora_scale = name, scale

    # -- painting -----------------------------------------------------------------------

    def size_for(self, aspect: float) -> tuple[int, int]:
        """The engine's generation size at `aspect` (width / height): about `pixels`."""
        return generation_size(aspect, self.pixels)

    def stylize(self, rgb: np.ndarray, params: dict, strength: float) -> np.ndarray:
        """Paint an RGB uint8 portrait in a style; the output has the input's size."""
        return self.stylize_variants(rgb, params, strength, [content_seed(rgb, params, strength)])[0]

    def stylize_variants(self, rgb: np.ndarray, params: dict, strength: float, seeds: list[int]) -> list[np.ndarray]:
        """One picture per seed from one photo, at the photo's size."""
        height, width = rgb.shape[:2]
        return self.paint_from_references([rgb], params, strength, seeds, (width, height))

    def paint_from_references(
        self, references: list[np.ndarray], params: dict, strength: float, seeds: list[int], size: tuple[int, int]
    ) -> list[np.ndarray]:
        """One picture per seed, of the person in `references` (the primary first), at
        `size` (width, height); each depends on its seed only, not on its batch."""
        import torch

        if not 0.0 < strength <= 1.0:
            raise ValueError(f"strength must be within (0, 1], got {strength}")
        if not references:
            raise ValueError("paint_from_references needs at least one photo of the customer")
        style = diffusion_params(params)
        width, height = size
        work = (snap(width), snap(height))
        style_picture = self._style_picture(style.reference_image)
        photos = references[: self.max_references - (style_picture is not None)]
        pictures = [self._reference(photo) for photo in photos] + ([style_picture] if style_picture else [])
        prompt = PROMPT_TEMPLATE.format(
            prompt=style.prompt, style_picture=", in the style of the last picture" if style_picture else ""
        )
        start_photo = None if strength >= 1.0 else Image.fromarray(references[0]).convert("RGB")
        painted: list[Image.Image] = []
        with _GENERATION_LOCK:
            pipe = self.pipeline()
            self._use_lora(pipe, style.lora, style.lora_scale)
            sigmas, sigma = self._schedule(pipe, strength, work)
            batch = 1 if pipe.offloaded else self.model.max_batch  # offloaded: a small card, one picture at a time
            for start in range(0, len(seeds), batch):
                # on the CPU: the same noise on any GPU, and per image, so batching changes nothing
                generators = [torch.Generator().manual_seed(seed) for seed in seeds[start : start + batch]]
                latents = self.model.start_latents(pipe, start_photo, work, sigma, generators)
                painted += pipe(
                    image=pictures,
                    prompt=prompt,
                    height=work[1],
                    width=work[0],
                    num_inference_steps=self.steps,
                    sigmas=list(sigmas),
                    num_images_per_prompt=len(generators),
                    generator=generators,
                    latents=latents,
                    **self.model.call_kwargs(pipe, style),
                ).images
        return [np.asarray(_exactly(p.convert("RGB"), size)) for p in painted]

    def _schedule(self, pipe, strength: float, size: tuple[int, int]) -> tuple[np.ndarray, float]:
        """The sigmas handed to the pipeline, and the noise level they start at: the full
        schedule at 1.0, else the full schedule scaled so that, after the scheduler's
        shift, it starts at `strength` (the shift is monotone: bisection finds the scale)."""
        full = np.linspace(1.0, 1.0 / self.steps, self.steps)
        if strength >= 1.0:
            return full, 1.0
        low, high = 0.0, 1.0
        for _ in range(30):
            middle = (low + high) / 2
            if self.model.first_sigma(pipe, full * middle, size, self.steps) < strength:
                low = middle
            else:
                high = middle
        return full * high, self.model.first_sigma(pipe, full * high, size, self.steps)

    def _reference(self, photo: np.ndarray) -> Image.Image:
        """A photo as the model reads it: at most `reference_pixels`, each side at least 64 px."""
        picture = Image.fromarray(np.ascontiguousarray(photo)).convert("RGB")
        width, height = picture.size
        scale = min(1.0, math.sqrt(self.reference_pixels / (width * height)))
        scale = max(scale, MIN_REFERENCE_SIDE / min(width, height))
        if scale != 1.0:
            picture = picture.resize((max(1, round(width * scale)), max(1, round(height * scale))), Image.LANCZOS)
        return picture

    def _style_picture(self, name: str | None) -> Image.Image | None:
        if not name:
            return None
        path = self.model_dir / STYLE_REFERENCES_DIR / name
        if not path.is_file():
            raise ModelError(f"the style's reference picture is missing: {path}")
        with Image.open(path) as picture:
            return self._reference(np.asarray(picture.convert("RGB")))


def _exactly(picture: Image.Image, size: tuple[int, int]) -> Image.Image:
    return picture if picture.size == tuple(size) else picture.resize(size, Image.LANCZOS)
