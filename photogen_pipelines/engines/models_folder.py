"""The production engine's models folder (`--models DIR`, PHOTOGEN_MODELS_DIR).

    DIR/sdxl/                    SDXL base, or a style checkpoint, as a diffusers folder
    DIR/controlnet/              InstantID's IdentityNet (diffusers ControlNet format)
    DIR/ip-adapter.bin           InstantID's face adapter
    DIR/loras/<name>.safetensors optional style LoRAs, named by styles.yaml
    DIR/vae-fp16-fix/            optional fp16-safe SDXL VAE (StyleEngine.vae = fp16-fix)
    DIR/insightface/             an insightface pack (antelopev2: SCRFD + ArcFace *.onnx),
                                 InstantID's conditioning faces
    DIR/flux2-klein/             FLUX.2 [klein] 4B as a diffusers folder (engine flux2-klein)
    DIR/qwen-image-edit/         Qwen-Image-Edit-2509 or -2511 as a diffusers folder (qwen-edit)
    DIR/loras/<family>/<name>.safetensors
                                 optional style LoRAs of a reference-image family
                                 (flux2-klein/, qwen-edit/): a LoRA fits one base model
    DIR/style-references/<file>  optional style pictures a style names (`reference_image`)
    DIR/RealESRGAN_x4plus.pth    the print upscaler's weights (every engine's)
    DIR/photogen-engine.yaml     optional: the folder's own engine defaults (steps,
                                 resolution; pixels and reference_pixels for the
                                 reference-image engines), which resource config overrides

A folder holds the models of the engines it serves: `missing_model_files(DIR, engine)`
checks one engine's. `photogen_pipelines.devtools.tiny_models.write_tiny_models` writes
the same layout with tiny random-weight models, so each engine's path runs anywhere on a
CPU in seconds (`photogen dev make-tiny-models --family ...`).
"""

from __future__ import annotations

from pathlib import Path

import yaml

from photogen_pipelines.errors import ModelError

INSIGHTFACE_DIR = "insightface"
UPSCALER_FILE = "RealESRGAN_x4plus.pth"
ENGINE_DEFAULTS_FILE = "photogen-engine.yaml"
# steps, resolution: the diffusers (SDXL) engine's; steps, pixels, reference_pixels: the
# reference-image engines' (the generated picture's and each reference's pixel count)
ENGINE_DEFAULT_KEYS = {"steps", "resolution", "pixels", "reference_pixels"}
REFERENCE_ENGINES = ("flux2-klein", "qwen-edit")  # the style backends that paint from references


def missing_model_files(models_dir: str | Path, engine: str = "diffusers") -> list[str]:
    """Every file or folder `engine` (diffusers, flux2-klein, qwen-edit) needs that
    `models_dir` lacks, described."""
    models_dir = Path(models_dir)
    if engine in REFERENCE_ENGINES:
        from photogen_pipelines.engines.stylize_reference import reference_model

        missing = reference_model(engine).missing_files(models_dir)
    elif engine == "diffusers":
        from photogen_pipelines.engines.instantid import missing_instantid_files

        missing = missing_instantid_files(models_dir)
        if not any((models_dir / INSIGHTFACE_DIR).glob("*.onnx")):
            missing.append(f"{models_dir / INSIGHTFACE_DIR}/*.onnx (an insightface pack, e.g. antelopev2)")
    else:
        raise ModelError(f"no models folder for the {engine} engine; folders serve diffusers, {', '.join(REFERENCE_ENGINES)}")
    if not (models_dir / UPSCALER_FILE).is_file():
        missing.append(f"{models_dir / UPSCALER_FILE} (Real-ESRGAN x4plus weights)")
    return missing


def engine_defaults(models_dir: str | Path) -> dict[str, int]:
    """The folder's own engine defaults (tiny models ask for small pictures and few steps)."""
    path = Path(models_dir) / ENGINE_DEFAULTS_FILE
    if not path.is_file():
        return {}
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ModelError(f"{path} is not valid YAML: {exc}") from None
    unknown = set(data) - ENGINE_DEFAULT_KEYS if isinstance(data, dict) else {"(not a mapping)"}
    if unknown:
        raise ModelError(f"{path}: unknown keys {sorted(unknown)}; known: {sorted(ENGINE_DEFAULT_KEYS)}")
    return {k: int(v) for k, v in data.items()}
