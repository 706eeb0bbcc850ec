"""The production engine's models folder (`--models DIR`, PHOTOGEN_MODELS_DIR).

    DIR/sdxl/                    SDXL base, or a style checkpoint, as a diffusers folder
    DIR/controlnet/              InstantID's IdentityNet (diffusers ControlNet format)
    DIR/ip-adapter.bin           InstantID's face adapter
    DIR/loras/<name>.safetensors optional style LoRAs, named by styles.yaml
    DIR/vae-fp16-fix/            optional fp16-safe SDXL VAE (StyleEngine.vae = fp16-fix)
    DIR/insightface/             an insightface pack (antelopev2: SCRFD + ArcFace *.onnx),
                                 InstantID's conditioning faces
    DIR/RealESRGAN_x4plus.pth    the print upscaler's weights
    DIR/photogen-engine.yaml     optional: the folder's own engine defaults (steps,
                                 resolution), which resource config overrides

`write_tiny_models` writes the same layout with tiny random-weight models, so the
diffusers path runs anywhere on a CPU in seconds (`photogen dev make-tiny-models`).
"""

from __future__ import annotations

from pathlib import Path

import yaml

from photogen_pipelines.errors import ModelError

INSIGHTFACE_DIR = "insightface"
UPSCALER_FILE = "RealESRGAN_x4plus.pth"
ENGINE_DEFAULTS_FILE = "photogen-engine.yaml"
ENGINE_DEFAULT_KEYS = {"steps", "resolution"}
TINY_NOTICE = """\
TINY RANDOM-WEIGHT MODELS, FOR TESTS AND TRY-OUTS ONLY: their pictures are noise.

Written by `photogen dev make-tiny-models` in the production layout (see
photogen_pipelines/engines/models_folder.py), so `photogen demo --engine diffusers
--models THIS_FOLDER` runs the production code path (SDXL + InstantID on diffusers,
insightface, Real-ESRGAN in torch) on a CPU in seconds. For real orders put the real
weights in a folder with the same layout.
"""


def missing_model_files(models_dir: str | Path) -> list[str]:
    """Every file or folder of the layout that `models_dir` lacks, described."""
    from photogen_pipelines.engines.instantid import missing_instantid_files

    models_dir = Path(models_dir)
    missing = missing_instantid_files(models_dir)
    if not any((models_dir / INSIGHTFACE_DIR).glob("*.onnx")):
        missing.append(f"{models_dir / INSIGHTFACE_DIR}/*.onnx (an insightface pack, e.g. antelopev2)")
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


def write_tiny_models(directory: str | Path, seed: int = 0) -> Path:
    """Tiny random-weight models for every engine of the production layout (~3 MB)."""
    import torch

    from photogen_pipelines.engines.instantid import quiet_loading
    from photogen_pipelines.engines.tiny_insightface import write_tiny_insightface_pack
    from photogen_pipelines.engines.tiny_sdxl import write_tiny_instantid
    from photogen_pipelines.engines.upscale_torch import RRDBNet

    directory = Path(directory)
    with quiet_loading():
        write_tiny_instantid(directory, seed=seed)
    write_tiny_insightface_pack(directory / INSIGHTFACE_DIR)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        upscaler = RRDBNet(num_feat=8, num_block=1, num_grow_ch=4, scale=4)
    torch.save({"params_ema": upscaler.state_dict()}, directory / UPSCALER_FILE)
    # 64 px pictures in 4 steps: a generation takes a fraction of a second on a CPU
    (directory / ENGINE_DEFAULTS_FILE).write_text("# tiny models: small pictures, few steps\nsteps: 4\nresolution: 64\n")
    (directory / "README.txt").write_text(TINY_NOTICE)
    return directory
