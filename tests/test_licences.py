"""Model licences as data (catalog/models.yaml, photogen_pipelines/licences.py): every model a
configuration can load has an entry; `photogen licences` prints what this configuration loads;
PHOTOGEN_COMMERCIAL_ONLY=1 stops `photogen serve`, `photogen demo` and `photogen engines serve`
with one line and exit 2 before anything starts; the deploy files' configuration passes it;
the README's table is the command's output."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import typing
from pathlib import Path

import pytest
import yaml

from photogen_pipelines import licences
from photogen_pipelines.catalog import StyleCatalog, load_styles
from photogen_pipelines.engines.upscale_ncnn import MODEL_SCALES
from photogen_pipelines.factories import (
    FaceBackend,
    FaceEngineSettings,
    SafetyBackend,
    SafetyEngineSettings,
    StyleBackend,
    StyleEngineSettings,
    UpscaleBackend,
    UpscaleEngineSettings,
)
from photogen_pipelines.settings import PhotoGenSettings
from tests.test_production_instance import _dockerfile, _dockerfile_env, _env_example

REPO = Path(__file__).parents[1]
PHOTOGEN = Path(sys.executable).with_name("photogen")
STYLES_YAML = REPO / "photogen_pipelines" / "catalog" / "styles.yaml"
# a refusal comes before any server, Ray or model: seconds of Python start-up, not a start
FAST_SECONDS = 30


def _run(env_overrides: dict[str, str], *args: str, home: Path) -> tuple[subprocess.CompletedProcess, float]:
    # a clean PHOTOGEN_* environment: the developer's own settings must not decide the test
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("PHOTOGEN_")}
    env.update({"PHOTOGEN_HOME": str(home), **env_overrides})
    started = time.monotonic()
    result = subprocess.run([str(PHOTOGEN), *args], capture_output=True, text=True, env=env, timeout=120)
    return result, time.monotonic() - started


def _refused(result: subprocess.CompletedProcess, seconds: float, *named: str) -> str:
    """The one stderr line of a commercial-only refusal, checked."""
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("photogen: error:")]
    assert len(lines) == 1, result.stderr
    assert "PHOTOGEN_COMMERCIAL_ONLY" in lines[0]
    for name in named:
        assert name in lines[0], lines[0]
    assert seconds < FAST_SECONDS
    return lines[0]


def _every_key_reachable() -> dict[str, str]:
    """Licence key → where it comes from, for every model any configuration can load: each
    backend of each engine interface, each embedded upscaler model, and every Replicate model
    the style catalog defines (used by a style or only offered under replicate_models)."""
    catalog = load_styles()
    found: dict[str, str] = {}
    for backend in typing.get_args(FaceBackend):
        for key, _ in licences.face_models(FaceEngineSettings(backend=backend)):
            found[key] = f"face backend {backend}"
    for backend in typing.get_args(SafetyBackend):
        for key, _ in licences.safety_models(SafetyEngineSettings(backend=backend)):
            found[key] = f"safety backend {backend}"
    for backend in typing.get_args(StyleBackend):
        # vae fp16-fix: the diffusers option that loads one model more
        for key, _ in licences.style_models(StyleEngineSettings(backend=backend, vae="fp16-fix"), catalog):
            found[key] = f"style backend {backend}"
    for backend in typing.get_args(UpscaleBackend):
        for model in MODEL_SCALES if backend == "embedded" else ["REALESRGAN_ANIMAVIDEOV3"]:
            for key, _ in licences.upscale_models(UpscaleEngineSettings(backend=backend, model=model)):
                found[key] = f"upscale backend {backend} ({model})"
    for key, _ in licences.video_models():
        found[key] = "the living portrait's engine (engines/video_wan.py)"
    raw = yaml.safe_load(STYLES_YAML.read_text())
    for name, model in raw.get("replicate_models", {}).items():
        found[model["model"]] = f"styles.yaml replicate_models.{name}"
    for engine in licences.ENGINES:
        for model in licences.configuration_models(_engine_settings(engine)):
            found.setdefault(model.key, f"PHOTOGEN_ENGINE={engine}")
    return found


def _engine_settings(engine: str, **more) -> PhotoGenSettings:
    """`engine`'s settings with placeholder credentials; no service and the shipped catalogs
    unless `more` says otherwise, whatever this machine's environment holds."""
    fields = {"engine_url": None, "styles_path": None, "products_path": None, **more}
    return PhotoGenSettings(
        engine=engine,
        home="/nonexistent/photogen-home",
        models_dir="/models",
        replicate_api_token="t",
        runpod_api_key="k",
        runpod_endpoint_id="e",
        **fields,
    )


def test_every_model_a_configuration_can_load_has_a_licence_entry_and_every_entry_is_loadable():
    book = licences.load_licences()
    reachable = _every_key_reachable()
    missing = {key: where for key, where in reachable.items() if key not in book.models}
    assert missing == {}, "add these models to photogen_pipelines/catalog/models.yaml"
    assert sorted(set(book.models) - set(reachable)) == [], "an entry no configuration loads"


def test_a_model_without_an_entry_is_unknown_and_not_commercial():
    catalog = load_styles()
    style = catalog.styles[0]
    assert style.diffusion is not None
    with_lora = StyleCatalog.model_validate(
        {
            **catalog.model_dump(),
            "styles": [{**style.model_dump(), "diffusion": {**style.diffusion.model_dump(), "lora": "mystery"}}],
        }
    )
    models = licences.engine_models(
        StyleEngineSettings(backend="diffusers", model_dir="/m"), UpscaleEngineSettings(), catalog=with_lora
    )
    [lora] = [m for m in models if m.key == "lora:mystery"]
    assert lora.entry is None and lora.commercial is False
    assert "unknown" in lora.licence
    assert "lora:mystery: unknown" in (licences.refusal(models) or "")
    # the reference-image engines load style LoRAs too (loras/<family>/)
    klein = licences.engine_models(
        StyleEngineSettings(backend="flux2-klein", model_dir="/m"), UpscaleEngineSettings(), catalog=with_lora
    )
    assert "lora:mystery" in {m.key for m in licences.non_commercial(klein)}


def test_the_diffusers_configuration_names_instantid_and_its_face_encoder():
    models = licences.configuration_models(_engine_settings("diffusers"))
    bad = {m.key for m in licences.non_commercial(models)}
    assert bad == {"instantid", "insightface-antelopev2"}
    line = licences.refusal(models)
    assert line is not None and "\n" not in line
    assert "insightface antelopev2 (InstantID's face encoder): non-commercial research only" in line
    # the identity gate is SFace on every engine, and the fast tier paints on the CPU engine
    assert {"yunet", "sface", "magenta-arbitrary"} <= {m.key for m in models}


def test_the_engine_service_leaves_the_run_only_its_own_models():
    models = licences.configuration_models(_engine_settings("diffusers", engine_url="http://engines:8100"))
    # the gate's faces, the content-safety detector and the fast tier's CPU painting; every
    # print is upscaled by the service
    assert {m.key for m in models} == {"yunet", "sface", "open-nsfw", "magenta-multistyle", "magenta-arbitrary"}
    assert licences.refusal(models) is None


def test_licences_json_lists_the_running_configurations_models(tmp_path):
    result, _ = _run({}, "licences", "--json", home=tmp_path / "home")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert isinstance(rows, list) and rows
    for row in rows:
        assert {"model", "licence", "commercial", "source", "used_for"} <= set(row)
        assert isinstance(row["commercial"], bool) and row["source"].startswith("https://") and row["used_for"]
    assert [row["id"] for row in rows] == [m.key for m in licences.configuration_models(PhotoGenSettings(home=str(tmp_path)))]
    assert all(row["commercial"] for row in rows)  # the embedded default

    text, _ = _run({"PHOTOGEN_ENGINE": "diffusers", "PHOTOGEN_MODELS_DIR": str(tmp_path)}, "licences", home=tmp_path / "home")
    assert text.returncode == 0, text.stderr
    assert "insightface antelopev2 (InstantID's face encoder)" in text.stdout
    assert "A paying shop may NOT use" in text.stdout.splitlines()[-1]
    assert not (tmp_path / "home").exists(), "listing licences makes no home"


def test_bad_licences_options_are_one_line_and_exit_2(tmp_path):
    result, _ = _run({}, "licences", "--json", "--markdown", home=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and result.stderr.startswith("photogen: error:")
    for command in (["licences"], ["serve"]):
        result, _ = _run({"PHOTOGEN_COMMERCIAL_ONLY": "maybe"}, *command, home=tmp_path)
        assert result.returncode == 2 and result.stderr.startswith("photogen: error: PHOTOGEN_COMMERCIAL_ONLY:"), result.stderr
        assert result.stderr.strip().count("\n") == 0


@pytest.fixture
def instantid_styles(tmp_path) -> Path:
    """The shipped style catalog with every style on Replicate's InstantID (the opt-in)."""
    path = tmp_path / "styles.yaml"
    path.write_text(STYLES_YAML.read_text().replace("replicate: *flux2_klein", "replicate: *instant_id"))
    assert "replicate: *instant_id" in path.read_text()
    return path


def test_commercial_only_serve_refuses_instantid_before_anything_starts(tmp_path):
    home = tmp_path / "home"
    env = {"PHOTOGEN_COMMERCIAL_ONLY": "1", "PHOTOGEN_ENGINE": "diffusers", "PHOTOGEN_MODELS_DIR": str(tmp_path)}
    result, seconds = _run(env, "serve", "--api-port", "1", "--ui-port", "2", home=home)
    _refused(result, seconds, "InstantID", "insightface antelopev2 (InstantID's face encoder): non-commercial research only")
    assert not home.exists(), "refused before the home was made"


def test_commercial_only_demo_refuses_a_replicate_instantid_style(tmp_path, instantid_styles):
    home = tmp_path / "home"
    env = {
        "PHOTOGEN_COMMERCIAL_ONLY": "true",
        "PHOTOGEN_REPLICATE_API_TOKEN": "r8_test",
        "PHOTOGEN_STYLES_PATH": str(instantid_styles),
    }
    result, seconds = _run(env, "demo", "--engine", "replicate", home=home)
    _refused(result, seconds, "zsxkib/instant-id", "InstantID", "non-commercial research only")
    assert not home.exists()


def test_commercial_only_engine_service_refuses_instantid_before_ray_starts(tmp_path):
    result, seconds = _run(
        {"PHOTOGEN_COMMERCIAL_ONLY": "1"},
        "engines", "serve", "--engine", "diffusers", "--models", str(tmp_path), "--port", "1",
        home=tmp_path / "home",
    )  # fmt: skip
    _refused(result, seconds, "InstantID", "insightface antelopev2")
    assert "starting the engine service" not in result.stderr


def test_commercial_only_lets_the_embedded_default_through(tmp_path):
    result, _ = _run({"PHOTOGEN_COMMERCIAL_ONLY": "1"}, "licences", "--json", home=tmp_path / "home")
    assert result.returncode == 0, result.stderr
    assert all(row["commercial"] for row in json.loads(result.stdout))


def _production_environment(name: str) -> dict[str, str]:
    """The PHOTOGEN_* settings a deploy image bakes in (deploy/docker/Dockerfile.<name>)."""
    return {k: v for k, v in _dockerfile_env(_dockerfile(name)).items() if k.startswith("PHOTOGEN_")}


@pytest.mark.parametrize("image", ["gpu-worker", "engines"])
def test_the_default_production_configuration_is_commercial(tmp_path, image):
    """The deploy images' engine is the production default: FLUX.2 [klein] 4B, Apache-2.0.
    InstantID stays opt-in (PHOTOGEN_ENGINE=diffusers), so a paying shop passes as shipped."""
    environment = _production_environment(image)
    assert environment["PHOTOGEN_ENGINE"] == "flux2-klein"
    env = {**environment, "PHOTOGEN_COMMERCIAL_ONLY": "1"}
    result, _ = _run(env, "licences", "--json", home=tmp_path / "home")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert rows and all(row["commercial"] is True for row in rows)
    assert "flux2-klein-4b" in {row["id"] for row in rows}


def test_the_compose_stack_as_shipped_and_with_its_engine_service_is_commercial():
    for uncomment in (False, True):
        settings = {
            k.removeprefix("PHOTOGEN_").lower(): v for k, v in _env_example(uncomment).items() if k.startswith("PHOTOGEN_")
        }
        known = {k: v for k, v in settings.items() if k in PhotoGenSettings.model_fields and k != "home"}
        models = licences.configuration_models(PhotoGenSettings(home="/nonexistent/photogen-home", **known))
        assert licences.refusal(models) is None


def test_the_readmes_licence_table_is_the_commands_output(tmp_path):
    readme = (REPO / "README.md").read_text()
    found = re.search(
        r"<!-- licences table: generated by `photogen licences --markdown --all` -->\n(.*?)\n<!-- end of licences table -->",
        readme,
        re.S,
    )
    assert found, "README.md's Model licences section lost its generated table"
    result, _ = _run({}, "licences", "--markdown", "--all", home=tmp_path / "home")
    assert result.returncode == 0, result.stderr
    assert found[1] == result.stdout.rstrip("\n"), "regenerate it: photogen licences --markdown --all"
    # the prose says what the table says: which models a paying shop may not use
    section = readme[readme.index("### Model licences") : found.start()]
    for entry in licences.load_licences().models.values():
        if not entry.commercial and "antelopev2" in entry.name:
            assert "non-commercial" in section
    assert "A paying shop may use" in section and "may not use" in section


def test_the_deployed_engine_services_load_only_commercial_models():
    """The engine service as the deploy files start it (the image's CMD and compose's command,
    KubeRay's serveConfigV2 args) passes its own commercial-only check at start."""
    from engine_service.app import EngineServiceArgs
    from tests.test_deploy_engines import ENGINES_COMMAND, _serve_config
    from tests.test_production_instance import _cmd

    assert _cmd(_dockerfile("engines")) == ENGINES_COMMAND
    flags = dict(zip(ENGINES_COMMAND[3::2], ENGINES_COMMAND[4::2], strict=True))
    deployed = [EngineServiceArgs(engine=flags["--engine"], models_dir=flags["--models"])]
    deployed += [EngineServiceArgs.model_validate(application.args) for application in _serve_config().applications]
    for args in deployed:
        models = licences.engine_models(*args.engines())
        assert licences.refusal(models) is None, args.engine
        assert "flux2-klein-4b" in {m.key for m in models}
