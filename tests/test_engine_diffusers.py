"""The production engine end to end on CPU: `photogen dev make-tiny-models` writes tiny
random-weight models in the production layout, and the Dagster jobs and `photogen demo`
run on them with engine=diffusers through the same resources, loaders and pipeline code
a GPU worker runs with real weights (docs/architecture.md §8). The pictures are noise, so the identity
gate rejects the proofs: that outcome, stated cleanly, is what a run on tiny models ends
with."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import numpy as np
import pytest

import assets
from assets.run_tags import GPU_TAG, gpu_run_tags
from photogen_pipelines.definitions import build_defs, register_local_order
from photogen_pipelines.engines.models_folder import INSIGHTFACE_DIR, UPSCALER_FILE, missing_model_files
from photogen_pipelines.errors import BadInput, ModelError
from photogen_pipelines.imaging.images import open_png
from photogen_pipelines.orders.states import OrderState
from photogen_pipelines.settings import PhotoGenSettings
from photogen_pipelines.storage.artifacts import OrderKeys
from photogen_pipelines.storage.stores import get_json
from resources import FaceEngine, FaceEngineConfig
from tests.dagster_helpers import local_instance

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")  # diffusers' Euler, numpy 2
ALL_ASSETS = [*assets.proof_assets, *assets.print_assets, *assets.order_checks]
PHOTOGEN = [str(Path(sys.executable).with_name("photogen"))]  # the installed console script


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory) -> Path:
    """Written by the CLI command a newcomer runs, not by a test-only helper."""
    target = tmp_path_factory.mktemp("models") / "tiny"
    done = subprocess.run([*PHOTOGEN, "dev", "make-tiny-models", str(target)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"--models {target}" in done.stdout
    return target


@pytest.fixture
def instance(tmp_path):
    with local_instance(tmp_path / "dagster") as instance:
        yield instance


def _materialize(defs, instance, selection, order_id):
    return dg.materialize(
        ALL_ASSETS, selection=selection, partition_key=order_id, instance=instance, resources=defs.resources, raise_on_error=False
    )


def test_the_tiny_models_folder_has_the_production_layout(tiny_models):
    assert missing_model_files(tiny_models) == []
    for part in ["sdxl/model_index.json", "controlnet/config.json", "ip-adapter.bin", UPSCALER_FILE, "README.txt"]:
        assert (tiny_models / part).is_file(), part
    assert sorted(p.name for p in (tiny_models / INSIGHTFACE_DIR).glob("*.onnx")) == ["det_tiny.onnx", "rec_tiny.onnx"]
    assert "NOISE" in (tiny_models / "README.txt").read_text().upper()
    again = subprocess.run([*PHOTOGEN, "dev", "make-tiny-models", str(tiny_models)], capture_output=True, text=True)
    assert again.returncode == 2 and again.stderr.count("\n") == 1 and "not empty" in again.stderr


@pytest.mark.slow
def test_a_proof_run_on_the_diffusers_engine_ends_with_a_clear_rejection(tiny_models, tmp_path, instance, astronaut_png):
    defs = build_defs(str(tmp_path / "home"), engine="diffusers", models_dir=str(tiny_models))
    assert defs.resources["styles"].backend == "diffusers" and defs.resources["upscale"].backend == "torch"
    assert defs.resources["faces"].backend == "embedded"  # the validator is not the conditioning encoder
    book, store = defs.resources["orders"].book(), defs.resources["storage"].store()
    order = register_local_order(defs, astronaut_png, "sepia_oil", "poster_a3", 3, approval="auto")
    instance.add_dynamic_partitions("orders", [order.id])

    run = _materialize(defs, instance, assets.proof_assets, order.id)

    keys = OrderKeys(order.id)
    candidates = get_json(store, keys.candidates_info)
    assert candidates["engine"].startswith("sdxl+instantid") and "insightface" in candidates["engine"]
    assert [c["zoom"] for c in candidates["candidates"]] == [1.0, 1.0, 1.0]  # variants differ by seed
    assert len({c["seed"] for c in candidates["candidates"]}) == 3
    pictures = [np.asarray(open_png(store.get_bytes(keys.candidate(0, v)))) for v in range(3)]
    portrait = np.asarray(open_png(store.get_bytes(keys.portrait)))
    assert all(p.shape == portrait.shape for p in pictures)
    assert np.abs(pictures[0].astype(int) - pictures[1]).mean() > 5  # another seed, another picture
    validation = get_json(store, keys.validation)
    assert validation["rejected"] and validation["rounds"] == 3 and validation["encoder"].startswith("yunet")
    strengths = sorted({s["strength"] for s in validation["scores"]}, reverse=True)
    assert strengths == [0.85, 0.51, 0.306]  # sepia_oil's diffusion strength, then x0.6 per round
    rejected = book.get(order.id)
    assert rejected.state == OrderState.REJECTED and "no face found in the proof" in rejected.reason
    # the run stops at the blocking identity check: a rejection, not a crash of the engine
    failed_steps = [e.step_key for e in run.all_events if e.is_step_failure]
    assert failed_steps == ["validated_proofs_identity_preserved"]


@pytest.mark.slow
def test_a_print_run_on_the_diffusers_engine_upscales_with_torch(tiny_models, tmp_path, instance, astronaut_png):
    """Noise never passes the identity gate, so the order's proofs come from the embedded
    engine on the same home; the print run then uses the diffusers deployment's upscaler."""
    home = str(tmp_path / "home")
    embedded = build_defs(home)
    order = register_local_order(embedded, astronaut_png, "sepia_oil", "poster_12x18", 1, approval="auto")
    instance.add_dynamic_partitions("orders", [order.id])
    assert _materialize(embedded, instance, assets.proof_assets, order.id).success

    gpu_defs = build_defs(home, engine="diffusers", models_dir=str(tiny_models))
    run = _materialize(gpu_defs, instance, assets.print_assets, order.id)

    assert run.success
    store = gpu_defs.resources["storage"].store()
    info = get_json(store, OrderKeys(order.id).master_info)
    assert info["upscaler"].startswith(f"{UPSCALER_FILE} RRDBNet x4") and info["passes"] == [4]
    finished = gpu_defs.resources["orders"].book().get(order.id)
    assert finished.state == OrderState.READY
    checks = {c.check_name: c.passed for c in run.get_asset_check_evaluations()}
    # a random upscaler is not faithful: warned (it draws no maze either: its output is smooth,
    # the texture is the proof's); no print provider: the file waits for download
    assert checks == {"print_spec_met": True, "upscale_faithful": False, "print_detail_clean": True, "provider_accepted": True}


def test_gpu_runs_carry_the_gpu_tag_and_the_deployments_tags(tmp_path):
    assert gpu_run_tags(PhotoGenSettings(engine="embedded")) == {}
    assert gpu_run_tags(PhotoGenSettings(engine="diffusers", models_dir="/m")) == {GPU_TAG: "true"}
    tags_file = tmp_path / "tags.yaml"
    tags_file.write_text('ecs/cpu: "4096"\nphotogen/gpu: "false"\n')
    tags = gpu_run_tags(PhotoGenSettings(engine="diffusers", models_dir="/m", gpu_run_tags=str(tags_file)))
    assert tags == {"ecs/cpu": "4096", GPU_TAG: "true"}  # the GPU tag cannot be switched off by the file
    tags_file.write_text("- a list\n")
    with pytest.raises(BadInput):
        gpu_run_tags(PhotoGenSettings(engine="diffusers", models_dir="/m", gpu_run_tags=str(tags_file)))


@pytest.mark.slow
def test_the_jobs_of_a_diffusers_code_location_carry_the_gpu_tag(tiny_models, tmp_path):
    """Job tags are fixed when the code location loads: load it as the daemon does."""
    env = {**os.environ, "PHOTOGEN_ENGINE": "diffusers", "PHOTOGEN_MODELS_DIR": str(tiny_models)}
    env["PHOTOGEN_HOME"] = str(tmp_path / "home")
    jobs = ["proof_job", "print_job", "catalog_preview_job", "analytics_job"]
    script = (
        "import json; from photogen_pipelines.definitions import defs; "
        f"print(json.dumps({{j: defs.resolve_job_def(j).tags for j in {jobs!r}}}))"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    tags = json.loads(done.stdout.strip().splitlines()[-1])
    assert {job: t.get(GPU_TAG) for job, t in tags.items()} == {
        "proof_job": "true",
        "print_job": "true",
        "catalog_preview_job": "true",
        "analytics_job": None,
    }


def test_a_diffusers_code_location_without_a_models_folder_says_so(tmp_path):
    with pytest.raises(ModelError, match="PHOTOGEN_MODELS_DIR"):
        build_defs(str(tmp_path / "home"), engine="diffusers")


def test_the_validator_can_be_insightface_and_needs_its_folder(tiny_models):
    analyzer = FaceEngine(
        settings=FaceEngineConfig(backend="insightface", model_dir=str(tiny_models / INSIGHTFACE_DIR))
    ).analyzer()
    assert analyzer.name == "insightface" and "rec_tiny.onnx" in analyzer.version
    with pytest.raises(ModelError, match="needs model_dir"):
        FaceEngine(settings=FaceEngineConfig(backend="insightface")).analyzer()


@pytest.mark.slow
def test_demo_on_the_diffusers_engine_ends_cleanly_with_the_outcome_stated(tiny_models, tmp_path):
    done = subprocess.run(
        [*PHOTOGEN, "demo", "--engine", "diffusers", "--models", str(tiny_models), "--variants", "2", "--json"]
        + ["--home", str(tmp_path / "home"), "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout)
    assert summary["outcome"] == "rejected" and "likeness" in summary["reason"]
    assert summary["proofs"] == [] and summary["print_file"] is None
    assert [v["reason"] for v in summary["rejected_variants"]] == ["no face found in the proof"] * 2
    assert "diffusers engine" in done.stderr


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        (["--engine", "diffusers"], "needs --models DIR"),
        (["--engine", "embedded", "--models", "{empty}"], "--models is for --engine diffusers"),
        (["--engine", "diffusers", "--models", "{empty}"], "lacks:"),
        (["--engine", "runpod"], "needs PHOTOGEN_RUNPOD_API_KEY and PHOTOGEN_RUNPOD_ENDPOINT_ID"),
        (["--engine", "replicate", "--models", "{empty}"], "--models is for --engine diffusers; replicate runs its own"),
    ],
)
@pytest.mark.slow
def test_demo_engine_mistakes_are_one_line_and_exit_2(arguments, expected, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    arguments = [a.replace("{empty}", str(empty)) for a in arguments]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PHOTOGEN_")}
    done = subprocess.run(
        [*PHOTOGEN, "demo", *arguments, "--home", str(tmp_path / "home")], capture_output=True, text=True, env=env, timeout=300
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and expected in done.stderr
    assert not (tmp_path / "home").exists()  # nothing was created for a command that could not run


def test_demo_with_an_unknown_engine_setting_is_one_line_and_exit_2(tmp_path):
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("PHOTOGEN_")}, "PHOTOGEN_ENGINE": "gpu"}
    done = subprocess.run([*PHOTOGEN, "demo", "--home", str(tmp_path / "home")], capture_output=True, text=True, env=env)
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    choices = "'embedded', 'diffusers', 'flux2-klein', 'qwen-edit', 'replicate', 'runpod' or 'runpod-qwen-edit'"
    assert "PHOTOGEN_ENGINE" in done.stderr and choices in done.stderr


# -- the same engine behind the warm engine service ---------------------------------------

# Three orders' proof runs in a fresh process that reaches the service over HTTP; it prints
# what it imported, so the test sees that a run on the service loads no torch or diffusers.
THREE_ORDERS_ON_THE_SERVICE = """
import json, os, sys
import dagster as dg
from skimage import data
import assets
from photogen_pipelines.definitions import build_defs, register_local_order
from photogen_pipelines.imaging.images import png_bytes

home, engine_url = sys.argv[1], sys.argv[2]
defs = build_defs(home, engine_url=engine_url)
os.makedirs(home + "/dagster", exist_ok=True)
states = []
with dg.DagsterInstance.local_temp(home + "/dagster") as instance:
    for _ in range(3):
        order = register_local_order(defs, png_bytes(data.astronaut()), "sepia_oil", "poster_a3", 2, approval="auto")
        instance.add_dynamic_partitions(assets.orders_partitions.name, [order.id])
        defs.resolve_job_def("proof_job").execute_in_process(partition_key=order.id, instance=instance, raise_on_error=False)
        states.append(defs.resources["orders"].book().get(order.id).state.value)
print(json.dumps({"states": states, "imported": sorted(m for m in ("torch", "diffusers", "ray") if m in sys.modules)}))
"""


@pytest.mark.slow
def test_three_orders_on_the_diffusers_service_load_its_models_once_and_no_torch_in_the_run(tiny_models, ray_env, tmp_path):
    from tests.servers import engine_service

    options = ["--engine", "diffusers", "--models", str(tiny_models), "--gpus-per-replica", "0"]  # tiny models: CPU
    with engine_service(tmp_path, ray_env, *options) as url:
        done = subprocess.run(
            [sys.executable, "-c", THREE_ORDERS_ON_THE_SERVICE, str(tmp_path / "home"), url],
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        outcome = json.loads(done.stdout.strip().splitlines()[-1])
        status = json.loads(
            subprocess.run(
                [*PHOTOGEN, "engines", "status", "--url", url, "--json"], capture_output=True, text=True, check=True
            ).stdout
        )

    assert outcome == {"states": ["rejected"] * 3, "imported": []}  # noise is rejected; the run loaded no model
    workers = {r["deployment"]: r for r in status["replicas"].values()}
    assert status["deployments"]["StyleWorker"]["replicas"] == {"RUNNING": 1}
    style = workers["StyleWorker"]
    assert style["model_loads"] == 1 and style["engine"].startswith("sdxl+instantid")
    assert style["requests"] == 9  # 3 orders x 3 rounds, each round's variants in one request
    assert style["failures"] == 0 and workers["UpscaleWorker"]["model_loads"] == 1
