"""The run tags of jobs whose steps use the GPU engine.

`photogen/gpu` is what the instance's run queue limits (one GPU run at a time per GPU
worker, dagster.yaml and deploy/dagster.yaml): each run process loads its own copy of
the models, so two on one card would need twice the memory. A deployment adds the tags
its run launcher reads (GPU container requirements on ECS or Kubernetes) through
PHOTOGEN_GPU_RUN_TAGS, a YAML file such as deploy/gpu-run-tags.ecs.yaml.

The tags follow the settings the Definitions are built from, as the engines do:
`build_defs` gives them to `assets.define_jobs` (definitions.py).
"""

from photogen_pipelines.run_tags import load_run_tags
from photogen_pipelines.settings import PhotoGenSettings

GPU_TAG = "photogen/gpu"
IN_RUN_GPU_ENGINES = ("diffusers", "flux2-klein", "qwen-edit")  # the engines that load models into the run


def gpu_run_tags(settings: PhotoGenSettings) -> dict[str, str]:
    """No tags on the embedded engine (CPU) or with the warm engine service (its replicas
    hold the GPUs and its queue and autoscaler share them: runs need none); on in-run
    diffusers (SDXL + InstantID, FLUX.2 klein, Qwen-Image-Edit) the GPU tag and the deployment's."""
    if settings.engine not in IN_RUN_GPU_ENGINES or settings.engine_url:
        return {}
    deployment = load_run_tags(settings.gpu_run_tags) if settings.gpu_run_tags else {}
    return {**deployment, GPU_TAG: "true"}
