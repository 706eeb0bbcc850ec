"""A whole models folder of tiny random-weight models (`photogen dev make-tiny-models`)."""

from __future__ import annotations

from pathlib import Path

from photogen_pipelines.engines.models_folder import ENGINE_DEFAULTS_FILE, INSIGHTFACE_DIR, UPSCALER_FILE

TINY_NOTICE = """\
TINY RANDOM-WEIGHT MODELS, FOR TESTS AND TRY-OUTS ONLY: their pictures are noise.

Written by `photogen dev make-tiny-models` in the production layout (see
photogen_pipelines/engines/models_folder.py), so `photogen demo --engine diffusers
--models THIS_FOLDER` runs the production code path (SDXL + InstantID on diffusers,
insightface, Real-ESRGAN in torch) on a CPU in seconds. For real orders put the real
weights in a folder with the same layout.
"""


def write_tiny_models(directory: str | Path, seed: int = 0) -> Path:
    """Tiny random-weight models for every engine of the production layout (~3 MB)."""
    import torch

    from photogen_pipelines.devtools.tiny_insightface import write_tiny_insightface_pack
    from photogen_pipelines.devtools.tiny_sdxl import write_tiny_instantid
    from photogen_pipelines.engines.instantid import quiet_loading
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
