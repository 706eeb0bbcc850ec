"""SDXL + InstantID on diffusers: the production stylizer's pipeline and its loader.

InstantID (Wang et al. 2024, github.com/instantX-research/InstantID) keeps a person's
identity in a generated picture with two paths, both driven by one ArcFace embedding
(insightface, 512 numbers) of the customer's face:

- an IP-Adapter: a Resampler projects the embedding to 16 "face tokens", and extra
  cross-attention in every UNet block attends to them (weighted by `ip_adapter_scale`);
- IdentityNet, a ControlNet that sees the five face keypoints drawn on a blank canvas and
  is conditioned on the face tokens *instead of the text*; its residuals are added to
  the UNet's (weighted by `controlnet_conditioning_scale`).

diffusers loads InstantID's `ip-adapter.bin` as it is: its `image_proj` Resampler is the
layout of IP-Adapter Plus (`IPAdapterPlusImageProjection`) and its `to_k_ip`/`to_v_ip`
weights are numbered as diffusers numbers its attention processors. What diffusers lacks
is the ControlNet fed with face tokens, hence the small pipeline subclass below.

Everything is read from local directories (`load_instantid`); nothing is fetched.
"""

# ruff: noqa: E402  (HF_HUB_OFFLINE is set before huggingface_hub is imported)
from __future__ import annotations

import contextlib
import math
import os
import threading
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # models come from local folders only
# transformers warns at import that its image processors want torchvision, which we do
# not use (no image encoder: InstantID's face embedding comes from insightface)
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import cv2
import numpy as np
import PIL.Image
import torch
from diffusers import AutoencoderKL, ControlNetModel, StableDiffusionXLControlNetPipeline
from diffusers.pipelines.stable_diffusion_xl import StableDiffusionXLPipelineOutput
from diffusers.pipelines.stable_diffusion_xl.pipeline_stable_diffusion_xl_img2img import retrieve_latents
from diffusers.utils import USE_PEFT_BACKEND
from diffusers.utils.torch_utils import randn_tensor

from photogen_pipelines.engines.memory_profiles import MemoryProfile, apply_profile, resolve_profile
from photogen_pipelines.engines.torch_device import DTYPES, select_device_dtype
from photogen_pipelines.errors import ModelError

IP_ADAPTER_FILE = "ip-adapter.bin"
NUM_KEYPOINTS = 5  # insightface's kps: eyes, nose tip, mouth corners (image left first)

# InstantID's draw_kps: one colour per keypoint; limbs join each point to the nose
KEYPOINT_COLOURS = ((255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (255, 0, 255))
KEYPOINT_LIMBS = ((0, 2), (1, 2), (3, 2), (4, 2))


def draw_keypoints(size: tuple[int, int], kps, stick_width: int = 4, radius: int = 10) -> PIL.Image.Image:
    """IdentityNet's condition image: the five face keypoints on a black canvas of `size`
    (width, height), drawn as InstantID's `draw_kps` does: an ellipse from every point to
    the nose at 60 % of the point's colour, then a full-colour disc on every point."""
    kps = np.asarray(kps, dtype=np.float64).reshape(NUM_KEYPOINTS, 2)
    width, height = size
    canvas = np.zeros((height, width, 3), dtype=np.float64)
    for start, end in KEYPOINT_LIMBS:
        (x0, y0), (x1, y1) = kps[start], kps[end]
        length = math.hypot(x0 - x1, y0 - y1)
        angle = math.degrees(math.atan2(y0 - y1, x0 - x1))
        centre = (int(np.mean([x0, x1])), int(np.mean([y0, y1])))
        polygon = cv2.ellipse2Poly(centre, (int(length / 2), stick_width), int(angle), 0, 360, 1)
        cv2.fillConvexPoly(canvas, polygon, KEYPOINT_COLOURS[start])
    canvas = (canvas * 0.6).astype(np.uint8)
    for (x, y), colour in zip(kps, KEYPOINT_COLOURS, strict=True):
        cv2.circle(canvas, (int(x), int(y)), radius, colour, -1)
    return PIL.Image.fromarray(canvas)


class StableDiffusionXLInstantIDPipeline(StableDiffusionXLControlNetPipeline):
    """SDXL with InstantID: text → UNet; face embedding → face tokens → UNet's IP-Adapter
    attention and IdentityNet (the ControlNet), which also sees the drawn keypoints.

    Load the face adapter first: `pipe.load_ip_adapter(dir, subfolder="",
    weight_name="ip-adapter.bin", image_encoder_folder=None)` (`load_instantid` does).
    One identity per call; `num_images_per_prompt` variants of it, one generator each.
    With `image` (a photo) and `strength` < 1 the denoising starts from the noised photo
    instead of pure noise (img2img), re-running only the last `strength` of the schedule.
    """

    style_loras: Mapping[str, Path] = MappingProxyType({})  # name → file; set by load_instantid

    @torch.no_grad()
    def __call__(
        self,
        prompt: str,
        face_embeds: np.ndarray | torch.Tensor,
        face_kps: np.ndarray | Sequence,
        *,
        negative_prompt: str | None = None,
        height: int = 1024,
        width: int = 1024,
        num_inference_steps: int = 30,
        guidance_scale: float = 5.0,
        ip_adapter_scale: float = 0.8,
        controlnet_conditioning_scale: float = 0.8,
        control_guidance_start: float = 0.0,
        control_guidance_end: float = 1.0,
        num_images_per_prompt: int = 1,
        generator: torch.Generator | list[torch.Generator] | None = None,
        image: PIL.Image.Image | list[PIL.Image.Image] | None = None,
        strength: float = 1.0,
        output_type: str = "pil",
        return_dict: bool = True,
    ):
        """Generate `num_images_per_prompt` pictures of the face `face_embeds` (one 512-d
        ArcFace embedding, un-normalised as insightface's `face.embedding`) posed by
        `face_kps` (5×2 pixel coordinates in the output, or one 5×2 array per image)."""
        batch = num_images_per_prompt
        # 1. Check inputs
        self.check_instantid_inputs(prompt, face_embeds, face_kps, height, width, batch, generator, image, strength)
        self._guidance_scale = guidance_scale
        self._clip_skip, self._cross_attention_kwargs, self._interrupt = None, None, False
        device = self._execution_device
        self.set_ip_adapter_scale(ip_adapter_scale)

        # 2. Encode the prompt: the text conditions the UNet only
        prompt_embeds, negative_prompt_embeds, pooled_embeds, negative_pooled_embeds = self.encode_prompt(
            prompt,
            device=device,
            num_images_per_prompt=batch,
            do_classifier_free_guidance=self.do_classifier_free_guidance,
            negative_prompt=negative_prompt,
        )
        if self.do_classifier_free_guidance:
            prompt_embeds = torch.cat([negative_prompt_embeds, prompt_embeds])

        # 3. Encode the face into image tokens (an all-zero face is the unconditional one)
        face_embeds, face_tokens = self.encode_face(face_embeds, batch, device, prompt_embeds.dtype)

        # 4. Prepare the keypoint condition for IdentityNet
        keypoint_image = self.prepare_keypoint_condition(face_kps, width, height, batch, device, self.controlnet.dtype)

        # 5. Prepare timesteps and the starting latents (noise, or the noised photo)
        timesteps = self.prepare_timesteps(num_inference_steps, strength, device)
        latents = self.prepare_start_latents(image, timesteps[:1], batch, height, width, prompt_embeds.dtype, device, generator)

        # 6. SDXL's micro-conditioning: pooled text and (size, crop, size)
        added_cond_kwargs = self.prepare_added_conditions(pooled_embeds, negative_pooled_embeds, height, width, batch, device)

        # 7. Denoise, adding IdentityNet's residuals to the UNet's
        extra_step_kwargs = self.prepare_extra_step_kwargs(generator, eta=0.0)
        self._num_timesteps = len(timesteps)
        with self.progress_bar(total=len(timesteps)) as progress:
            for i, t in enumerate(timesteps):
                in_window = control_guidance_start <= i / len(timesteps) and (i + 1) / len(timesteps) <= control_guidance_end
                noise_pred = self.predict_noise(
                    latents,
                    t,
                    prompt_embeds,
                    face_embeds,
                    face_tokens,
                    keypoint_image,
                    controlnet_conditioning_scale if in_window else 0.0,
                    added_cond_kwargs,
                )
                latents = self.scheduler.step(noise_pred, t, latents, **extra_step_kwargs, return_dict=False)[0]
                progress.update()

        # 8. Decode
        images = self.decode_to_images(latents, output_type)
        self.maybe_free_model_hooks()
        return StableDiffusionXLPipelineOutput(images=images) if return_dict else (images,)

    # -- the steps ---------------------------------------------------------------------

    def check_instantid_inputs(self, prompt, face_embeds, face_kps, height, width, batch, generator, image, strength) -> None:
        if getattr(self.unet, "encoder_hid_proj", None) is None:
            raise ValueError("no face adapter loaded: call load_ip_adapter(..., weight_name='ip-adapter.bin') first")
        if not isinstance(prompt, str):
            raise ValueError("prompt must be one string (one identity, one prompt, several variants)")
        if np.asarray(face_embeds).size != self.face_embed_dim:
            raise ValueError(f"face_embeds must be one {self.face_embed_dim}-d embedding, got shape {np.shape(face_embeds)}")
        kps = np.asarray(face_kps, dtype=np.float64)
        if kps.shape not in ((NUM_KEYPOINTS, 2), (batch, NUM_KEYPOINTS, 2)):
            raise ValueError(f"face_kps must be {NUM_KEYPOINTS}x2, or {batch}x{NUM_KEYPOINTS}x2; got {kps.shape}")
        multiple = self.vae_scale_factor
        if height % multiple or width % multiple:
            raise ValueError(f"height and width must be multiples of {multiple}, got {width}x{height}")
        if isinstance(generator, list) and len(generator) != batch:
            raise ValueError(f"{len(generator)} generators for {batch} images: give one per image")
        if not 0.0 < strength <= 1.0:
            raise ValueError(f"strength must be within (0, 1], got {strength}")
        if image is None and strength != 1.0:
            raise ValueError("strength < 1 needs a starting `image`")
        if isinstance(image, list) and len(image) not in (1, batch):
            raise ValueError(f"{len(image)} starting images for {batch} images")

    @property
    def face_projection(self) -> torch.nn.Module:
        """The Resampler that turns a face embedding into face tokens (in the UNet, where
        diffusers' `load_ip_adapter` puts it)."""
        return self.unet.encoder_hid_proj.image_projection_layers[0]

    @property
    def face_embed_dim(self) -> int:
        return self.face_projection.proj_in.in_features

    def encode_face(self, face_embeds, batch: int, device, dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """The face embedding for the UNet's IP-Adapter (batch, 1 image, 1 token, 512) and
        its projection, the face tokens for IdentityNet (batch, 16, cross-attention dim).
        With classifier-free guidance the unconditional half is a zero embedding."""
        face = torch.as_tensor(np.asarray(face_embeds, dtype=np.float32)).to(device=device, dtype=dtype)
        face = face.reshape(1, 1, -1).repeat(batch, 1, 1)
        if self.do_classifier_free_guidance:
            face = torch.cat([torch.zeros_like(face), face])
        self._bring_in_unet()
        tokens = self.face_projection(face.to(self.face_projection.proj_in.weight.dtype)).to(dtype)
        return face.unsqueeze(1), tokens

    def _bring_in_unet(self) -> None:
        """Under model CPU offload the UNet (and the face projection inside it) moves to
        the GPU only when the UNet itself is called; the projection runs before that."""
        from accelerate.hooks import CpuOffload

        hook = getattr(self.unet, "_hf_hook", None)
        if isinstance(hook, CpuOffload):
            hook.pre_forward(self.unet)

    def prepare_keypoint_condition(self, face_kps, width: int, height: int, batch: int, device, dtype) -> torch.Tensor:
        kps = np.asarray(face_kps, dtype=np.float64).reshape(-1, NUM_KEYPOINTS, 2)
        drawn = [draw_keypoints((width, height), points) for points in kps]
        condition = self.control_image_processor.preprocess(drawn, height=height, width=width).to(torch.float32)
        if len(drawn) == 1:
            condition = condition.repeat(batch, 1, 1, 1)
        if self.do_classifier_free_guidance:
            condition = torch.cat([condition] * 2)
        return condition.to(device=device, dtype=dtype)

    def prepare_timesteps(self, num_inference_steps: int, strength: float, device) -> torch.Tensor:
        """The schedule's timesteps; with strength < 1 only its last `strength` part."""
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        skipped = num_inference_steps - min(int(num_inference_steps * strength), num_inference_steps)
        start = skipped * self.scheduler.order
        if hasattr(self.scheduler, "set_begin_index"):
            self.scheduler.set_begin_index(start)
        timesteps = self.scheduler.timesteps[start:]
        if len(timesteps) == 0:
            raise ValueError(f"strength {strength} of {num_inference_steps} steps leaves no step to run")
        return timesteps

    def prepare_start_latents(self, image, first_timestep, batch, height, width, dtype, device, generator) -> torch.Tensor:
        if image is None:
            return self.prepare_latents(batch, self.unet.config.in_channels, height, width, dtype, device, generator)
        latents = self.encode_photo(image, batch, height, width, device, generator).to(dtype)
        noise = randn_tensor(latents.shape, generator=generator, device=device, dtype=dtype)
        return self.scheduler.add_noise(latents, noise, first_timestep.repeat(batch))

    def encode_photo(self, image, batch: int, height: int, width: int, device, generator) -> torch.Tensor:
        """The VAE latents of the starting photo(s), one per image."""
        pixels = self.image_processor.preprocess(image, height=height, width=width)
        if pixels.shape[0] == 1:
            pixels = pixels.repeat(batch, 1, 1, 1)
        generators = generator if isinstance(generator, list) else [generator] * batch
        pixels = pixels.to(device=device, dtype=self.vae.dtype)
        latents = torch.cat([retrieve_latents(self.vae.encode(pixels[i : i + 1]), generator=g) for i, g in enumerate(generators)])
        mean, std = self._latents_stats(latents)
        return (latents - mean) * self.vae.config.scaling_factor / std

    def prepare_added_conditions(self, pooled, negative_pooled, height: int, width: int, batch: int, device) -> dict:
        size = (height, width)
        time_ids = self._get_add_time_ids(size, (0, 0), size, dtype=pooled.dtype, text_encoder_projection_dim=pooled.shape[-1])
        time_ids = time_ids.repeat(batch, 1)
        if self.do_classifier_free_guidance:
            pooled, time_ids = torch.cat([negative_pooled, pooled]), torch.cat([time_ids, time_ids])
        return {"text_embeds": pooled.to(device), "time_ids": time_ids.to(device)}

    def predict_noise(self, latents, t, prompt_embeds, face_embeds, face_tokens, keypoint_image, control_scale, added):
        """One guided noise prediction: IdentityNet (face tokens + keypoints) gives
        residuals, the UNet (text + IP-Adapter face attention) adds them."""
        model_input = torch.cat([latents] * 2) if self.do_classifier_free_guidance else latents
        model_input = self.scheduler.scale_model_input(model_input, t)
        down_residuals, mid_residual = None, None
        if control_scale > 0:
            down_residuals, mid_residual = self.controlnet(
                model_input,
                t,
                encoder_hidden_states=face_tokens,  # InstantID: the face, not the text
                controlnet_cond=keypoint_image,
                conditioning_scale=control_scale,
                added_cond_kwargs=added,
                return_dict=False,
            )
        noise_pred = self.unet(
            model_input,
            t,
            encoder_hidden_states=prompt_embeds,
            added_cond_kwargs={**added, "image_embeds": [face_embeds]},
            down_block_additional_residuals=down_residuals,
            mid_block_additional_residual=mid_residual,
            return_dict=False,
        )[0]
        if self.do_classifier_free_guidance:
            uncond, cond = noise_pred.chunk(2)
            noise_pred = uncond + self.guidance_scale * (cond - uncond)
        return noise_pred

    def decode_to_images(self, latents: torch.Tensor, output_type: str):
        if output_type == "latent":
            return latents
        latents = latents.to(self.vae.dtype)
        mean, std = self._latents_stats(latents)
        pixels = self.vae.decode(latents * std / self.vae.config.scaling_factor + mean, return_dict=False)[0]
        if self.watermark is not None:
            pixels = self.watermark.apply_watermark(pixels)
        return self.image_processor.postprocess(pixels, output_type=output_type)

    # -- helpers -----------------------------------------------------------------------

    def _latents_stats(self, like: torch.Tensor) -> tuple[torch.Tensor | float, torch.Tensor | float]:
        config = self.vae.config
        if getattr(config, "latents_mean", None) is None or getattr(config, "latents_std", None) is None:
            return 0.0, 1.0
        shape = (1, len(config.latents_mean), 1, 1)
        mean = torch.tensor(config.latents_mean).view(shape).to(like.device, like.dtype)
        return mean, torch.tensor(config.latents_std).view(shape).to(like.device, like.dtype)

    def use_style_lora(self, name: str | None, scale: float = 1.0) -> None:
        """Switch to one style LoRA from `model_dir/loras/<name>.safetensors`, or to none."""
        if name is None:
            if getattr(self, "_active_lora", None):
                self.disable_lora()
                self._active_lora = None
            return
        self.load_style_lora(name)
        self.enable_lora()
        self.set_adapters([name], adapter_weights=[scale])
        self._active_lora = name

    def load_style_lora(self, name: str) -> None:
        """Load a style LoRA's weights as an adapter (once), without switching to it."""
        if name not in self.style_loras:
            known = ", ".join(self.style_loras) or "none"
            raise ModelError(f"no style LoRA {name!r} (loras/{name}.safetensors); available: {known}")
        if not USE_PEFT_BACKEND:
            raise ModelError("style LoRAs need the `peft` package, which is not installed")
        loaded = getattr(self, "_loaded_loras", set())
        if name not in loaded:
            path = self.style_loras[name]
            self.load_lora_weights(str(path.parent), weight_name=path.name, adapter_name=name, local_files_only=True)
            self._loaded_loras = loaded | {name}

    def unload_style_lora(self, name: str) -> None:
        """Free a style LoRA's weights (the warm service's least recently used style)."""
        if name not in getattr(self, "_loaded_loras", set()):
            return
        if getattr(self, "_active_lora", None) == name:
            self.use_style_lora(None)
        self.delete_adapters(name)
        self._loaded_loras = self._loaded_loras - {name}


# -- loading ---------------------------------------------------------------------------

_CACHE: dict[tuple[str, str, MemoryProfile, str], StableDiffusionXLInstantIDPipeline] = {}
# `sdxl`: the checkpoint's own VAE; `fp16-fix`: madebyollin/sdxl-vae-fp16-fix in this folder
VAE_CHOICES = {"sdxl": "sdxl/vae", "fp16-fix": "vae-fp16-fix"}
_CACHE_LOCK = threading.Lock()


def missing_instantid_files(model_dir: str | Path, vae: str = "sdxl") -> list[str]:
    """Every file or folder of the InstantID layout that `model_dir` lacks, described."""
    model_dir = Path(model_dir)
    missing = []
    if vae == "fp16-fix" and not (model_dir / VAE_CHOICES[vae] / "config.json").is_file():
        missing.append(f"{model_dir / VAE_CHOICES[vae]}/config.json (the fp16-safe SDXL VAE, madebyollin/sdxl-vae-fp16-fix)")
    sdxl = model_dir / "sdxl"
    if not (sdxl / "model_index.json").is_file():
        singles = sorted(p.name for p in sdxl.glob("*.safetensors")) if sdxl.is_dir() else []
        hint = (
            f" (it holds the single-file checkpoint {singles[0]}: convert it once with "
            "StableDiffusionXLPipeline.from_single_file(...).save_pretrained(...))"
            if singles
            else ""
        )
        missing.append(f"{sdxl}/model_index.json (a diffusers SDXL folder){hint}")
    else:
        for component in ("unet", "vae", "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2", "scheduler"):
            if not (sdxl / component).is_dir():
                missing.append(f"{sdxl / component}/")
    controlnet = model_dir / "controlnet"
    if not (controlnet / "config.json").is_file():
        missing.append(f"{controlnet}/config.json (IdentityNet in diffusers format)")
    elif not any(controlnet.glob("diffusion_pytorch_model*")):
        missing.append(f"{controlnet}/diffusion_pytorch_model.safetensors (IdentityNet weights)")
    if not (model_dir / IP_ADAPTER_FILE).is_file():
        missing.append(f"{model_dir / IP_ADAPTER_FILE} (InstantID's face adapter)")
    return missing


def load_instantid(
    model_dir: str | Path,
    dtype: str | torch.dtype = "auto",
    device: str | torch.device = "auto",
    *,
    profile: str | MemoryProfile | None = None,
    vae: str = "sdxl",
) -> StableDiffusionXLInstantIDPipeline:
    """The InstantID pipeline from `model_dir`, loaded once per process per (folder,
    placement, VAE): later calls return the same pipeline.

    Layout: `sdxl/` (a diffusers SDXL folder), `controlnet/` (IdentityNet), `ip-adapter.bin`
    (InstantID's face adapter), optionally `loras/<style>.safetensors` and `vae-fp16-fix/`.
    `profile` (a memory profile name, or `auto`) sets precision, offloading and VAE
    tiling; without one, the whole pipeline goes to `device` in `dtype`.
    `vae`: `sdxl` (the checkpoint's own) or `fp16-fix` (the `vae-fp16-fix/` folder).
    """
    model_dir = Path(model_dir).expanduser().resolve()
    placement = _placement(dtype, device, profile)
    if vae not in VAE_CHOICES:
        raise ModelError(f"unknown VAE {vae!r}; choose one of {', '.join(VAE_CHOICES)}")
    key = (str(model_dir), str(placement[0]), placement[1], vae)
    with _CACHE_LOCK:
        if key not in _CACHE:
            _CACHE[key] = _load(model_dir, *placement, vae)
        return _CACHE[key]


def _placement(dtype, device, profile) -> tuple[torch.device, MemoryProfile]:
    """Where the pipeline goes and how: a configuration mistake is a ModelError, like a
    missing model file, so the operator reads it in the run's failure."""
    try:
        if profile is None:
            dev, torch_dtype = select_device_dtype(str(device), dtype if isinstance(dtype, str) else "auto")
            if isinstance(dtype, torch.dtype):
                torch_dtype = dtype
            name = {torch.float16: "fp16", torch.bfloat16: "bf16"}.get(torch_dtype, "fp32")
            return dev, MemoryProfile(f"resident-{name}", name, "none", vae_tiling=False, vae_slicing=False, max_batch=4)
        dev, _ = select_device_dtype(str(device), "auto")
        if isinstance(profile, MemoryProfile):
            return dev, profile
        return dev, resolve_profile(profile, dev.type, device=dev if dev.type == "cuda" else None)
    except ValueError as exc:
        raise ModelError(f"InstantID: {exc}") from None


def clear_instantid_cache() -> None:
    with _CACHE_LOCK:
        _CACHE.clear()


def _load(model_dir: Path, device: torch.device, profile: MemoryProfile, vae: str) -> StableDiffusionXLInstantIDPipeline:
    missing = missing_instantid_files(model_dir, vae)
    if missing:
        raise ModelError(f"InstantID models incomplete in {model_dir}; missing: " + "; ".join(missing))
    dtype = DTYPES[profile.dtype]
    with quiet_loading():
        try:
            controlnet = ControlNetModel.from_pretrained(model_dir / "controlnet", torch_dtype=dtype, local_files_only=True)
            components = {"controlnet": controlnet}
            if vae == "fp16-fix":
                components["vae"] = AutoencoderKL.from_pretrained(
                    model_dir / VAE_CHOICES[vae], torch_dtype=dtype, local_files_only=True
                )
            pipe = StableDiffusionXLInstantIDPipeline.from_pretrained(
                model_dir / "sdxl", **components, torch_dtype=dtype, local_files_only=True, add_watermarker=False
            )
            pipe.load_ip_adapter(
                str(model_dir), subfolder="", weight_name=IP_ADAPTER_FILE, image_encoder_folder=None, local_files_only=True
            )
        except (OSError, ValueError, KeyError, RuntimeError) as exc:
            raise ModelError(f"could not load InstantID from {model_dir}: {exc}") from exc
        if dtype == torch.float16 and pipe.vae.config.force_upcast:
            # SDXL's own VAE overflows in float16: keep it in float32 (~170 MB more) rather
            # than casting it back and forth around every encode and decode
            pipe.vae.to(dtype=torch.float32)
        apply_profile(pipe, profile, device)
    pipe.set_progress_bar_config(disable=True)
    pipe.style_loras = MappingProxyType({p.stem: p for p in sorted((model_dir / "loras").glob("*.safetensors"))})
    pipe.memory_profile = profile
    return pipe


@contextlib.contextmanager
def quiet_loading():
    """Loading logs progress bars and advice that only matter when exploring (that
    `torch_dtype` is deprecated: recent diffusers prefer `dtype`, which the older releases
    pyproject allows do not know; that no image encoder was loaded: InstantID needs
    none): silence them while loading, restore the caller's settings after."""
    import diffusers.utils.logging as diffusers_logging
    import transformers.utils.logging as transformers_logging

    saved = [(m, m.get_verbosity(), m.is_progress_bar_enabled()) for m in (diffusers_logging, transformers_logging)]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="`torch_dtype` is deprecated", category=FutureWarning)
        for module, _, _ in saved:
            module.set_verbosity_error()
            module.disable_progress_bar()
        try:
            yield
        finally:
            for module, verbosity, bars in saved:
                module.set_verbosity(verbosity)
                if bars:
                    module.enable_progress_bar()
