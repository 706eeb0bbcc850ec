"""A whole models folder of tiny random-weight models (`photogen dev make-tiny-models`)."""

from __future__ import annotations

from pathlib import Path

from photogen_pipelines.engines.models_folder import ENGINE_DEFAULTS_FILE, INSIGHTFACE_DIR, UPSCALER_FILE

# the families a tiny folder can hold, and the engine (`photogen demo --engine`) each serves
FAMILIES = {"instantid": "diffusers", "flux2-klein": "flux2-klein", "qwen-edit": "qwen-edit"}

TINY_NOTICE = """\
TINY RANDOM-WEIGHT MODELS, FOR TESTS AND TRY-OUTS ONLY: their pictures are noise.

Written by `photogen dev make-tiny-models --family {family}` in the production layout (see
photogen_pipelines/engines/models_folder.py), so `photogen demo --engine {engine}
--models THIS_FOLDER` runs the production code path ({what}, Real-ESRGAN in torch) on a CPU
in seconds. For real orders put the real weights in a folder with the same layout.
"""
WHAT = {
    "instantid": "SDXL + InstantID on diffusers, insightface",
    "flux2-klein": "FLUX.2 [klein]'s Flux2KleinPipeline on diffusers",
    "qwen-edit": "Qwen-Image-Edit-Plus's QwenImageEditPlusPipeline on diffusers",
}
# small pictures in few steps: a generation takes a fraction of a second on a CPU (Qwen's
# pipeline reads every reference at 1 MP whatever the tiny size: a few seconds)
ENGINE_DEFAULTS = {
    "instantid": "# tiny models: small pictures, few steps\nsteps: 4\nresolution: 64\n",
    "flux2-klein": "# tiny models: small pictures, few steps\nsteps: 2\npixels: 6144\nreference_pixels: 6144\n",
    "qwen-edit": "# tiny models: small pictures, few steps\nsteps: 2\npixels: 6144\nreference_pixels: 6144\n",
}


def write_tiny_models(directory: str | Path, seed: int = 0, family: str = "instantid") -> Path:
    """Tiny random-weight models of one engine family in the production layout, with the
    print upscaler (instantid: SDXL + InstantID and an insightface pack, ~3 MB;
    flux2-klein, qwen-edit: that pipeline's diffusers folder)."""
    import torch

    from photogen_pipelines.engines.instantid import quiet_loading
    from photogen_pipelines.engines.upscale_torch import RRDBNet

    if family not in FAMILIES:
        raise ValueError(f"unknown model family {family!r}; known: {', '.join(FAMILIES)}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    with quiet_loading():
        if family == "instantid":
            from photogen_pipelines.devtools.tiny_insightface import write_tiny_insightface_pack
            from photogen_pipelines.devtools.tiny_sdxl import write_tiny_instantid

            write_tiny_instantid(directory, seed=seed)
            write_tiny_insightface_pack(directory / INSIGHTFACE_DIR)
        elif family == "flux2-klein":
            from photogen_pipelines.devtools.tiny_flux2 import write_tiny_flux2
            from photogen_pipelines.engines.flux2_klein import FOLDER

            write_tiny_flux2(directory / FOLDER, seed=seed)
        else:
            from photogen_pipelines.devtools.tiny_qwen_edit import write_tiny_qwen_edit
            from photogen_pipelines.engines.qwen_edit import FOLDER

            write_tiny_qwen_edit(directory / FOLDER, seed=seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        upscaler = RRDBNet(num_feat=8, num_block=1, num_grow_ch=4, scale=4)
    torch.save({"params_ema": upscaler.state_dict()}, directory / UPSCALER_FILE)
    (directory / ENGINE_DEFAULTS_FILE).write_text(ENGINE_DEFAULTS[family])
    (directory / "README.txt").write_text(TINY_NOTICE.format(family=family, engine=FAMILIES[family], what=WHAT[family]))
    return directory
