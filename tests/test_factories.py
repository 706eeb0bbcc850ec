"""Engines and stores come from one place (photogen_pipelines/factories.py): typed settings,
one engine per settings in a process, and the Definitions, the storefront API and the CLI
derive theirs, and the GPU jobs' run tags, from the same PhotoGenSettings."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pydantic
import pytest

from assets.run_tags import GPU_TAG
from photogen_pipelines import factories
from photogen_pipelines.cli.faces import face_analyzer as cli_face_analyzer
from photogen_pipelines.definitions import build_defs
from photogen_pipelines.engines.models_folder import UPSCALER_FILE
from photogen_pipelines.errors import ModelError
from photogen_pipelines.factories import (
    FaceEngineSettings,
    StoreSettings,
    StyleEngineSettings,
    UpscaleEngineSettings,
    deployment,
)
from photogen_pipelines.settings import PhotoGenSettings
from photogen_pipelines.storage.stores import LocalArtifactStore
from resources import (
    FaceEngine,
    FaceEngineConfig,
    StoreConfig,
    StyleEngine,
    StyleEngineConfig,
    UpscaleEngine,
    UpscaleEngineConfig,
)
from storefront_api.config import Settings
from storefront_api.services import build_services

GPU_JOBS = ("proof_job", "print_job", "catalog_preview_job")
ALL_JOBS = (*GPU_JOBS, "analytics_job")
# the resources carry the settings as nested Dagster config (their `settings` field)
RESOURCE_SETTINGS = [
    (FaceEngineConfig, FaceEngineSettings),
    (StyleEngineConfig, StyleEngineSettings),
    (UpscaleEngineConfig, UpscaleEngineSettings),
    (StoreConfig, StoreSettings),
]


@pytest.fixture(autouse=True)
def _no_engine_from_the_environment(monkeypatch):
    for name in ("PHOTOGEN_ENGINE", "PHOTOGEN_MODELS_DIR", "PHOTOGEN_GPU_RUN_TAGS", "PHOTOGEN_ARTIFACTS_ROOT"):
        monkeypatch.delenv(name, raising=False)


def _gpu_tags(defs: dg.Definitions) -> dict[str, str | None]:
    return {job: defs.resolve_job_def(job).tags.get(GPU_TAG) for job in ALL_JOBS}


# -- typed settings --------------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda: FaceEngineSettings(backend="diffusers"),
        lambda: StyleEngineSettings(backend="torch"),
        lambda: UpscaleEngineSettings(backend="insightface"),
        lambda: FaceEngine(settings=FaceEngineConfig(backend="gpu")),
        lambda: StyleEngine(settings=StyleEngineConfig(backend="sdxl")),
        lambda: UpscaleEngine(settings=UpscaleEngineConfig(backend="ncnn")),
    ],
)
def test_an_unknown_backend_is_refused_naming_the_field_and_the_choices(make):
    with pytest.raises(pydantic.ValidationError, match=r"backend\n.*Input should be '[\w-]+'(, '[\w-]+')* or '[\w-]+'"):
        make()


def test_a_misspelt_option_is_an_error_not_a_default_engine():
    with pytest.raises(pydantic.ValidationError, match="memory_profil"):
        StyleEngineSettings(backend="diffusers", memory_profil="low")


def test_settings_are_frozen_and_equal_settings_are_one_cache_key():
    settings = StyleEngineSettings(backend="diffusers", model_dir="/m", steps=4)
    with pytest.raises(pydantic.ValidationError):
        settings.steps = 8
    assert hash(settings) == hash(StyleEngineSettings(backend="diffusers", model_dir="/m", steps=4))
    assert {settings, StyleEngineSettings(backend="diffusers", model_dir="/m", steps=4)} == {settings}


@pytest.mark.parametrize(("resource", "model"), RESOURCE_SETTINGS)
def test_each_resource_has_its_settings_fields_with_the_same_types_and_defaults(resource, model):
    fields = resource.model_fields
    for name, field in model.model_fields.items():
        assert name in fields, f"{resource.__name__} lacks {name}"
        assert (fields[name].annotation, fields[name].default) == (field.annotation, field.default), name


def test_a_store_is_local_or_s3_and_needs_one_of_them(tmp_path):
    assert StoreSettings.at(str(tmp_path)) == StoreSettings(root=str(tmp_path))
    assert StoreSettings.at("s3://bucket/a/b/") == StoreSettings(s3_bucket="bucket", s3_prefix="a/b")
    assert isinstance(factories.artifact_store(StoreSettings(root=str(tmp_path))), LocalArtifactStore)
    with pytest.raises(ValueError, match="root.*s3_bucket"):
        StoreSettings()


# -- one engine per settings in a process ----------------------------------------------


def test_the_same_settings_give_the_same_engine_and_other_settings_another():
    faces = factories.face_analyzer(FaceEngineSettings())
    assert factories.face_analyzer(FaceEngineSettings(backend="embedded", providers="auto")) is faces
    stylizer = factories.stylizer(StyleEngineSettings())
    assert factories.stylizer(StyleEngineSettings()) is stylizer
    assert factories.stylizer(StyleEngineSettings(threads=1)) is not stylizer
    assert factories.upscaler(UpscaleEngineSettings()) is factories.upscaler(UpscaleEngineSettings())


def test_options_that_are_not_the_engine_do_not_load_it_again():
    assert StyleEngine(proof_long_side=768).stylizer() is StyleEngine().stylizer()
    assert UpscaleEngine(target_dpi=150, max_passes=1).upscaler() is UpscaleEngine().upscaler()


def test_a_resource_the_api_and_the_cli_share_one_face_engine(tmp_path):
    home = str(tmp_path / "home")
    defs = build_defs(home)
    services = build_services(Settings(home=home, database_url=f"sqlite:///{tmp_path / 'orders.db'}"))
    assert services.faces is defs.resources["faces"].analyzer()
    assert services.faces is FaceEngine().analyzer() is cli_face_analyzer()
    assert isinstance(services.store, LocalArtifactStore)
    assert services.store.root == defs.resources["storage"].store().root == Path(home, "artifacts").resolve()


def test_the_diffusers_engine_needs_its_models_folder():
    with pytest.raises(ModelError, match="needs model_dir"):
        factories.stylizer(StyleEngineSettings(backend="diffusers"))
    with pytest.raises(ModelError, match="needs model_path"):
        factories.upscaler(UpscaleEngineSettings(backend="torch"))


# -- one PhotoGenSettings for the Definitions, the API and the CLI ----------------------


def test_the_embedded_deployment_is_every_default_and_the_home_folders_store(tmp_path):
    built = deployment(PhotoGenSettings(home=str(tmp_path)))
    assert (built.faces, built.styles, built.upscale) == (FaceEngineSettings(), StyleEngineSettings(), UpscaleEngineSettings())
    assert built.store == StoreSettings(root=str(tmp_path.resolve() / "artifacts"))
    s3 = deployment(PhotoGenSettings(home=str(tmp_path), artifacts_root="s3://photos/prod"))
    assert s3.store == StoreSettings(s3_bucket="photos", s3_prefix="prod")


def test_the_diffusers_deployment_takes_the_models_folder_and_keeps_the_embedded_validator(tmp_path):
    settings = PhotoGenSettings(home=str(tmp_path), engine="diffusers", models_dir=str(tmp_path / "models"), memory_profile="low")
    built = deployment(settings)
    models = str((tmp_path / "models").resolve())
    assert built.faces == FaceEngineSettings()  # not the encoder the generator conditions on
    assert built.styles == StyleEngineSettings(backend="diffusers", model_dir=models, memory_profile="low")
    assert built.upscale == UpscaleEngineSettings(backend="torch", model_path=str(Path(models) / UPSCALER_FILE))
    with pytest.raises(ModelError, match="PHOTOGEN_MODELS_DIR"):
        deployment(PhotoGenSettings(home=str(tmp_path), engine="diffusers"))


def test_the_definitions_resources_are_the_deployments(tmp_path):
    settings = {"engine": "diffusers", "models_dir": str(tmp_path / "models"), "artifacts_root": "s3://photos/prod"}
    defs = build_defs(str(tmp_path / "home"), **settings)
    built = deployment(PhotoGenSettings(home=str(tmp_path / "home"), **settings))
    resources = defs.resources
    assert resources["faces"].engine_settings() == built.faces
    assert resources["styles"].engine_settings() == built.styles
    assert resources["upscale"].engine_settings() == built.upscale
    assert resources["storage"].store_settings() == built.store


# -- GPU run tags follow the settings build_defs is given -------------------------------


def test_build_defs_puts_the_gpu_tags_on_the_gpu_jobs_only_on_the_diffusers_engine(tmp_path, monkeypatch):
    home = str(tmp_path / "home")
    tags_file = tmp_path / "tags.yaml"
    tags_file.write_text('ecs/cpu: "4096"\n')
    gpu = build_defs(home, engine="diffusers", models_dir=str(tmp_path / "models"), gpu_run_tags=str(tags_file))
    dg.Definitions.validate_loadable(gpu)  # the sensors name the jobs the Definitions define
    assert _gpu_tags(gpu) == {"proof_job": "true", "print_job": "true", "catalog_preview_job": "true", "analytics_job": None}
    assert all(gpu.resolve_job_def(job).tags["ecs/cpu"] == "4096" for job in GPU_JOBS)
    assert "ecs/cpu" not in gpu.resolve_job_def("analytics_job").tags
    # the environment says diffusers, the overrides say embedded: the overrides win
    monkeypatch.setenv("PHOTOGEN_ENGINE", "diffusers")
    monkeypatch.setenv("PHOTOGEN_MODELS_DIR", str(tmp_path / "models"))
    assert set(_gpu_tags(build_defs(home, engine="embedded")).values()) == {None}
    assert _gpu_tags(build_defs(home))["proof_job"] == "true"


def test_the_tags_do_not_come_from_the_environment_the_code_was_imported_in(tmp_path):
    """A process that imported the code location on the diffusers engine still builds
    embedded Definitions without GPU tags, and the other way round."""
    env = {**os.environ, "PHOTOGEN_ENGINE": "diffusers", "PHOTOGEN_MODELS_DIR": str(tmp_path / "models")}
    env["PHOTOGEN_HOME"] = str(tmp_path / "home")
    script = (
        "import json; from photogen_pipelines.definitions import build_defs, defs; "
        "embedded = build_defs(engine='embedded'); "
        f"print(json.dumps([{{j: d.resolve_job_def(j).tags.get({GPU_TAG!r}) for j in {ALL_JOBS!r}}} for d in (defs, embedded)]))"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    at_import, embedded = json.loads(done.stdout.strip().splitlines()[-1])
    assert at_import == {"proof_job": "true", "print_job": "true", "catalog_preview_job": "true", "analytics_job": None}
    assert set(embedded.values()) == {None}
