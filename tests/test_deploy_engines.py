"""The warm engine service's deploy files: the KubeRay RayService (deploy/kuberay/rayservice.yaml),
the compose service `engines` (opt-in, profile `gpu`) and its image (deploy/docker/Dockerfile.engines).
Checked through Ray Serve's own config schema and its own application build (as the Serve controller
builds `import_path` with `args`), the engine service's argument model, the `photogen` CLI's own
option parser, PhotoGen's settings on compose's environment as interpolated from deploy/.env.example
(as shipped, and with its GPU settings uncommented), and the compose health check run against a
server. No container is built and no cluster is needed."""

from __future__ import annotations

import importlib
import math
import re
import shlex
import subprocess
import sys
import threading
import tomllib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import ray
import yaml

from tests.servers import free_port
from tests.test_production_instance import DEPLOY, REPO, _cmd, _compose, _dockerfile, _env_example

RAYSERVICE = DEPLOY / "kuberay" / "rayservice.yaml"
SERVE_PORT = 8100
ENGINE_URL = f"http://engines:{SERVE_PORT}"
GPU = "nvidia.com/gpu"
# `photogen engines serve` as compose runs it (and Dockerfile.engines' CMD)
ENGINES_COMMAND = "photogen engines serve --engine flux2-klein --models /models --host 0.0.0.0 --port 8100".split()
# the fields of KubeRay's ray.io/v1 types that this file may use: the API server drops an unknown
# (misspelt) field without a word, so a typo would silently lose a setting. The two
# *UnhealthySecondThreshold fields are still in v1 but deprecated and ignored: not used here.
RAYSERVICE_SPEC_FIELDS = {
    "serveConfigV2",
    "rayClusterConfig",
    "serveService",
    "upgradeStrategy",
    "excludeHeadPodFromServeSvc",
    "rayClusterDeletionDelaySeconds",
}
RAYCLUSTER_SPEC_FIELDS = {
    "rayVersion",
    "enableInTreeAutoscaling",
    "autoscalerOptions",
    "headGroupSpec",
    "workerGroupSpecs",
    "headServiceAnnotations",
}
HEAD_GROUP_FIELDS = {"rayStartParams", "template", "serviceType", "headService", "enableIngress"}
WORKER_GROUP_FIELDS = {"groupName", "replicas", "minReplicas", "maxReplicas", "rayStartParams", "template", "scaleStrategy"}


# compose's interpolation: `$$`, `$NAME`, `${NAME}` and `${NAME<op>arg}` with op :- - :? ? :+ +
INTERPOLATION = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}|(?P<named>[A-Za-z_][A-Za-z0-9_]*))"
)


def _interpolate(node, env: dict[str, str]):
    """compose.yaml's values as `docker compose --env-file` gives them, with `env` the env file
    (and nothing from the shell). A variable that is unset and has no default is an error here,
    where compose would warn and use an empty string."""
    if isinstance(node, dict):
        return {key: _interpolate(value, env) for key, value in node.items()}
    if isinstance(node, list):
        return [_interpolate(value, env) for value in node]
    if not isinstance(node, str):
        return node

    def one(match: re.Match) -> str:
        if match["escaped"]:
            return "$"
        name = match["braced"] or match["named"]
        value, op, arg = env.get(name), match["op"], match["arg"]
        if op is None:
            if value is None:
                raise KeyError(f"{name} is unset and has no default in compose.yaml")
            return value
        present = bool(value) if op.startswith(":") else value is not None
        if op.endswith("-"):
            return value if present else arg
        if op.endswith("+"):
            return arg if present else ""
        if not present:
            raise KeyError(f"{name}: {arg}")
        return value

    assert not re.search(r"\$\{[^}]*\$\{", node), "a nested interpolation: not understood here"
    return INTERPOLATION.sub(one, node)


def _active(services: dict, profiles: set[str]) -> set[str]:
    """The services `docker compose up` starts with `profiles` on: those without a profile and
    those with one of them."""
    return {name for name, service in services.items() if not service.get("profiles") or profiles & set(service["profiles"])}


def _profiles(env: dict[str, str]) -> set[str]:
    return {p.strip() for p in env.get("COMPOSE_PROFILES", "").split(",") if p.strip()}


def _depends_on(service: dict) -> set[str]:
    return set(service.get("depends_on") or ())  # the long form's keys or the short form's names


def _rayservice() -> dict:
    [document] = list(yaml.safe_load_all(RAYSERVICE.read_text()))
    return document


def _serve_config():
    """serveConfigV2 through Ray Serve's own schema of a deploy config."""
    from ray.serve.schema import ServeDeploySchema

    text = _rayservice()["spec"]["serveConfigV2"]
    assert isinstance(text, str), "KubeRay takes serveConfigV2 as a YAML string"
    return ServeDeploySchema.model_validate(yaml.safe_load(text))


def _built(application):
    """What the Serve controller does with an application of the config: import `import_path`,
    call the builder with `args`, and build the deployments (on Ray 2.60's own code)."""
    from ray._common.utils import import_attr
    from ray.serve._private.api import call_user_app_builder_with_args_if_necessary
    from ray.serve._private.build_app import build_app

    app = call_user_app_builder_with_args_if_necessary(import_attr(application.import_path), application.args)
    return build_app(app, name=application.name, route_prefix=application.route_prefix)


def _cluster() -> dict:
    return _rayservice()["spec"]["rayClusterConfig"]


def _ray_container(group: dict) -> dict:
    return group["template"]["spec"]["containers"][0]  # KubeRay's Ray container is the first


def _quantity(value) -> float:
    """A Kubernetes CPU or count quantity ("8", 8, "500m")."""
    text = str(value)
    return float(text[:-1]) / 1000 if text.endswith("m") else float(text)


def _ray_node(group: dict) -> dict[str, float]:
    """The Ray resources KubeRay gives a pod of `group`: rayStartParams, else the container's
    limits (CPU rounded up, as KubeRay does), else its requests."""
    container = _ray_container(group)
    params = group["rayStartParams"]
    resources = {**container["resources"].get("requests", {}), **container["resources"].get("limits", {})}
    cpus = float(params["num-cpus"]) if "num-cpus" in params else math.ceil(_quantity(resources.get("cpu", 0)))
    gpus = float(params["num-gpus"]) if "num-gpus" in params else _quantity(resources.get(GPU, 0))
    return {"CPU": cpus, "GPU": gpus}


def _place(replicas: list[dict[str, float]], nodes: list[dict[str, float]]) -> list[dict[str, float]]:
    """First fit, largest GPU and CPU demand first; returns the replicas that fit nowhere."""
    free = [dict(node) for node in nodes]
    left = []
    for demand in sorted(replicas, key=lambda d: (d.get("GPU", 0), d.get("CPU", 0)), reverse=True):
        for node in free:
            if all(node.get(resource, 0) + 1e-9 >= amount for resource, amount in demand.items() if amount):
                for resource, amount in demand.items():
                    node[resource] = node.get(resource, 0) - amount
                break
        else:
            left.append(demand)
    return left


# -- the RayService ----------------------------------------------------------------------------


def test_the_rayservice_is_a_ray_io_v1_rayservice_whose_serve_config_passes_serves_schema():
    service = _rayservice()
    assert (service["apiVersion"], service["kind"]) == ("ray.io/v1", "RayService")
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", service["metadata"]["name"])
    assert set(service["spec"]) <= RAYSERVICE_SPEC_FIELDS, set(service["spec"]) - RAYSERVICE_SPEC_FIELDS
    cluster = _cluster()
    assert set(cluster) <= RAYCLUSTER_SPEC_FIELDS, set(cluster) - RAYCLUSTER_SPEC_FIELDS
    assert set(cluster["headGroupSpec"]) <= HEAD_GROUP_FIELDS
    for group in cluster["workerGroupSpecs"]:
        assert set(group) <= WORKER_GROUP_FIELDS, set(group) - WORKER_GROUP_FIELDS

    config = _serve_config()
    assert (config.http_options.host, config.http_options.port) == ("0.0.0.0", SERVE_PORT)
    [application] = config.applications
    assert application.name == "photogen-engines"
    assert application.import_path == "engine_service.app:build_app"
    assert application.route_prefix == "/"
    # the code comes from the image, not from a runtime environment fetched at deploy time
    assert not application.runtime_env
    # Ray in the image is the Ray the cluster says it runs: the `service` extra's pin, installed here
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert f"ray[serve]=={ray.__version__}" in extras["service"]
    assert cluster["rayVersion"] == ray.__version__


def test_every_application_builds_from_its_import_path_with_arguments_the_service_accepts():
    from engine_service.app import EngineServiceArgs

    models_mounts = {
        mount["mountPath"] for group in _cluster()["workerGroupSpecs"] for mount in _ray_container(group).get("volumeMounts", [])
    }
    for application in _serve_config().applications:
        module, _, attribute = application.import_path.partition(":")
        builder = getattr(importlib.import_module(module), attribute)
        assert callable(builder), application.import_path
        options = EngineServiceArgs.model_validate(application.args)
        assert options.engine == "flux2-klein"  # the commercial default (tests/test_licences.py)
        assert options.models_dir in models_mounts, "the models folder is where the GPU workers mount the weights"
        assert 1 <= options.min_replicas <= options.max_replicas  # at least one warm replica
        built = _built(application)
        assert built.ingress_deployment_name in {d.name for d in built.deployments}
        # the same args through the model Serve checks them with: a misspelt field is refused
        with pytest.raises(ValueError, match="(?i)extra"):
            EngineServiceArgs.model_validate({**application.args, "max_replica": 3})


def test_the_gpu_workers_hold_every_replica_and_the_head_none():
    cluster = _cluster()
    head = cluster["headGroupSpec"]
    head_resources = _ray_container(head)["resources"]
    assert GPU not in head_resources.get("limits", {}) and GPU not in head_resources.get("requests", {})
    assert head["rayStartParams"]["num-cpus"] == "0", "nothing that needs a CPU is scheduled on the head"
    # KubeRay deploys serveConfigV2 and polls the applications through the head's dashboard
    assert str(head["rayStartParams"].get("include-dashboard", "true")).lower() != "false"
    assert _ray_node(head) == {"CPU": 0, "GPU": 0}

    [workers] = cluster["workerGroupSpecs"]
    container = _ray_container(workers)
    assert _quantity(container["resources"]["limits"][GPU]) == 1, "one GPU per worker pod"
    assert {"key": GPU, "operator": "Exists", "effect": "NoSchedule"} in workers["template"]["spec"]["tolerations"]
    volumes = {v["name"]: v for v in workers["template"]["spec"]["volumes"]}
    [mount] = [m for m in container["volumeMounts"] if m["mountPath"] == "/models"]
    assert mount["readOnly"] is True
    assert volumes[mount["name"]]["persistentVolumeClaim"] == {"claimName": "photogen-models", "readOnly": True}
    assert workers["minReplicas"] <= workers["replicas"] <= workers["maxReplicas"]
    if workers["maxReplicas"] > workers["minReplicas"]:
        assert cluster["enableInTreeAutoscaling"] is True, "without KubeRay's autoscaler no pod is ever added"

    # every replica Serve may start fits on the pods KubeRay may start: at the start (the group's
    # `replicas`, Serve's initial replicas) and at the most (maxReplicas, max_replicas)
    [application] = _serve_config().applications
    deployments = _built(application).deployments

    def replicas(kind: str) -> list[dict[str, float]]:
        demands = []
        for deployment in deployments:
            config = deployment._deployment_config
            scaling = config.autoscaling_config
            if scaling is None:
                count = config.num_replicas
            else:
                count = scaling.max_replicas if kind == "most" else (scaling.initial_replicas or scaling.min_replicas)
            demands += [dict(deployment._replica_config.resource_dict)] * count
        return demands

    assert any(d["GPU"] for d in replicas("most")), "the diffusers engine runs on the GPUs"
    for kind, pods in (("start", workers["replicas"]), ("most", workers["maxReplicas"])):
        nodes = [_ray_node(head)] + [_ray_node(workers)] * pods
        assert _place(replicas(kind), nodes) == [], f"replicas that fit on no pod ({kind}: {pods} GPU pods)"


def test_the_serve_port_is_the_one_the_pods_compose_and_the_runs_use():
    assert _serve_config().http_options.port == SERVE_PORT
    cluster = _cluster()
    # KubeRay's serve Service and its readiness probes take the port named `serve`
    for group in [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]:
        ports = {p["name"]: p["containerPort"] for p in _ray_container(group)["ports"]}
        assert ports["serve"] == SERVE_PORT
    engines = _compose()["services"]["engines"]
    command = engines["command"]
    assert command[command.index("--port") + 1] == str(SERVE_PORT)
    assert urlsplit(_healthcheck_url(engines)).port == SERVE_PORT
    # with the GPU settings of .env.example uncommented
    code = _interpolate(_compose(), _env_example(uncomment=True))["services"]["code"]
    assert urlsplit(code["environment"]["PHOTOGEN_ENGINE_URL"]).port == SERVE_PORT
    assert f"EXPOSE {SERVE_PORT}" in _dockerfile("engines").splitlines()


# -- the compose service and its image -----------------------------------------------------------


def test_the_engine_service_is_opt_in_with_the_gpu_profile_and_the_default_stack_needs_no_gpu():
    services = _compose()["services"]
    assert services["engines"]["profiles"] == ["gpu"]
    # every other service is in the default stack: it starts without a GPU
    assert {name for name, service in services.items() if "profiles" in service} == {"engines"}
    # nothing waits for it: a depends_on on a service whose profile is off breaks `docker compose up`
    assert {name for name, service in services.items() if "engines" in _depends_on(service)} == set()

    shipped, gpu = _env_example(), _env_example(uncomment=True)
    assert "COMPOSE_PROFILES" not in shipped and "PHOTOGEN_ENGINE_URL" not in shipped, "off by default"
    assert gpu["COMPOSE_PROFILES"] == "gpu" and gpu["PHOTOGEN_ENGINE_URL"] == ENGINE_URL
    default_stack, gpu_stack = _active(services, _profiles(shipped)), _active(services, _profiles(gpu))
    assert default_stack == set(services) - {"engines"}
    assert gpu_stack == set(services)
    for stack in (default_stack, gpu_stack):
        for name in stack:
            assert _depends_on(services[name]) <= stack, (name, _depends_on(services[name]) - stack)
    # no service of the default stack asks for a device (the GPU)
    for name in default_stack:
        assert not services[name].get("deploy", {}).get("resources", {}).get("reservations", {}).get("devices"), name


def _healthcheck_url(service: dict) -> str:
    [url] = re.findall(r"https?://[^'\"\s)]+", " ".join(service["healthcheck"]["test"]))
    return url


def test_the_compose_engines_service_reserves_an_nvidia_gpu_and_runs_the_cli():
    compose = _compose()
    engines = compose["services"]["engines"]
    assert engines["build"] == {"context": "..", "dockerfile": "deploy/docker/Dockerfile.engines"}
    assert engines["image"] == "photogen/engines:local"
    [device] = engines["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and device["count"] == 1 and "gpu" in device["capabilities"]
    assert engines["command"] == ENGINES_COMMAND
    assert _cmd(_dockerfile("engines")) == ENGINES_COMMAND  # `docker run` of the image does the same

    # the command through the `photogen` entry point's own parser: every flag exists and parses
    from photogen_pipelines.cli.main import cli

    assert Path(sys.executable).with_name(ENGINES_COMMAND[0]).exists()
    command = cli.commands[ENGINES_COMMAND[1]].commands[ENGINES_COMMAND[2]]
    with command.make_context(shlex.join(ENGINES_COMMAND[:3]), ENGINES_COMMAND[3:]) as ctx:
        params = ctx.params
    assert params["engine"] == "flux2-klein" and params["models_dir"] == "/models"
    assert (params["host"], params["port"]) == ("0.0.0.0", SERVE_PORT)

    # the weights: a volume of this file, read-only at the folder --models names
    assert "models:/models:ro" in engines["volumes"]
    assert "models" in compose["volumes"]
    assert engines["healthcheck"]["test"][0] == "CMD"
    assert _healthcheck_url(engines) == f"http://localhost:{SERVE_PORT}/v1/engines"


class _Engines(BaseHTTPRequestHandler):
    """/v1/engines as the service answers it: 503 while the models load, then 200 and JSON."""

    ready = False

    def do_GET(self):  # noqa: N802 (http.server's name)
        ok = self.path == "/v1/engines" and type(self).ready
        body = b'{"style": {}, "upscale": {}}' if ok else b'{"detail": "loading"}'
        self.send_response(200 if ok else 503)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_the_compose_health_check_passes_only_once_the_engines_answer():
    """compose's health check, as Docker runs it (`CMD`: no shell), against a server that
    answers like the service: failing while the models load, passing once they are."""
    test = _compose()["services"]["engines"]["healthcheck"]["test"]
    assert test[0] == "CMD" and test[1] == "python"
    port = free_port()
    argv = [sys.executable, *(arg.replace(f":{SERVE_PORT}/", f":{port}/") for arg in test[2:])]
    assert argv != [sys.executable, *test[2:]], "the URL was not moved to the test's port"

    def check() -> int:
        return subprocess.run(argv, capture_output=True, timeout=60).returncode

    assert check() != 0, "nothing listens yet"
    handler = type("Engines", (_Engines,), {"ready": False})
    server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        assert check() != 0, "503 while loading"
        handler.ready = True
        assert check() == 0, shlex.join(argv)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def _code_servers(services: dict) -> set[str]:
    """The services that start Dagster runs: with the default run launcher, the code server
    starts every run as a subprocess; those are the services on the code image that keep its
    CMD (`photogen code-server`), not one-shots such as `migrate`."""
    code_image = {name for name, s in services.items() if s.get("build", {}).get("dockerfile") == "deploy/docker/Dockerfile.code"}
    assert _cmd(_dockerfile("code"))[:2] == ["photogen", "code-server"]
    return {name for name in code_image if "command" not in services[name] and "entrypoint" not in services[name]}


def test_the_services_that_run_dagster_runs_call_the_engine_service_once_it_is_turned_on(tmp_path, monkeypatch):
    from assets.run_tags import gpu_run_tags
    from photogen_pipelines.factories import deployment
    from photogen_pipelines.settings import PhotoGenSettings

    raw = _compose()["services"]
    runners = _code_servers(raw)
    assert runners == {"code"}
    shipped, gpu = _interpolate(_compose(), _env_example()), _interpolate(_compose(), _env_example(uncomment=True))

    def settings_of(environment: dict, **more: str) -> PhotoGenSettings:
        for variable in ("PHOTOGEN_ENGINE", "PHOTOGEN_MODELS_DIR", "PHOTOGEN_GPU_RUN_TAGS"):
            monkeypatch.delenv(variable, raising=False)
        monkeypatch.setenv("PHOTOGEN_HOME", str(tmp_path))
        for variable in ("PHOTOGEN_ENGINE_URL", "PHOTOGEN_ENGINE_WAIT_SECONDS"):
            monkeypatch.setenv(variable, environment[variable])
        for variable, value in more.items():
            monkeypatch.setenv(variable, value)
        return PhotoGenSettings()

    for name in runners:
        # from deploy/.env, empty unless set there; the wait has compose's default
        assert raw[name]["environment"]["PHOTOGEN_ENGINE_URL"] == "${PHOTOGEN_ENGINE_URL:-}", name
        assert raw[name]["environment"]["PHOTOGEN_ENGINE_WAIT_SECONDS"] == "${PHOTOGEN_ENGINE_WAIT_SECONDS:-120}", name

        # as shipped: no URL, and a run loads the engine PHOTOGEN_ENGINE names (the embedded one)
        environment = shipped["services"][name]["environment"]
        assert environment["PHOTOGEN_ENGINE_URL"] == "", name
        engines = deployment(settings_of(environment))
        assert (engines.styles.backend, engines.upscale.backend) == ("embedded", "embedded")

        # with .env.example's GPU settings uncommented: the engine service, where it listens
        environment = gpu["services"][name]["environment"]
        assert environment["PHOTOGEN_ENGINE_URL"] == ENGINE_URL, name
        url = urlsplit(environment["PHOTOGEN_ENGINE_URL"])
        assert url.hostname in _active(raw, {"gpu"}) and url.hostname in raw and url.port == SERVE_PORT
        # what a run then does: its engines are the service's (waiting for it up to the bound), and
        # even on the diffusers engine it carries no GPU tag (the queue's photogen/gpu limit does
        # not hold it back)
        settings = settings_of(environment, PHOTOGEN_ENGINE="diffusers")
        engines = deployment(settings)
        assert (engines.styles.backend, engines.upscale.backend) == ("service", "service")
        assert engines.styles.service_url == engines.upscale.service_url == ENGINE_URL
        assert engines.styles.service_wait_seconds == float(_env_example()["PHOTOGEN_ENGINE_WAIT_SECONDS"]) == 120
        assert gpu_run_tags(settings) == {}
    # the webserver and the daemon start no run and hold no PhotoGen code: no engine URL there
    for name in ("webserver", "daemon"):
        assert "PHOTOGEN_ENGINE_URL" not in raw[name]["environment"], name


def test_the_engines_image_installs_the_service_extra_on_cuda_with_what_kuberay_probes_with():
    text = _dockerfile("engines")
    assert re.search(r"^FROM nvidia/cuda:[\w.]+-runtime-ubuntu[\d.]+$", text, re.MULTILINE)
    joined = re.sub(r"\\\n\s*", " ", text)
    [install] = [line for line in joined.splitlines() if re.search(r"\bpip install\b", line)]
    [extras] = re.findall(r"pip install '\.\[([\w,]+)\]'", install)
    extras = set(extras.split(","))
    assert extras == {"gpu", "service"}
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert extras <= set(declared)
    # the image installs the package that serveConfigV2's import_path names
    assert "COPY engine_service ./engine_service" in text
    module = _serve_config().applications[0].import_path.partition(":")[0]
    assert (REPO / module.split(".")[0]).is_dir()
    # KubeRay runs `ray start` under bash in this container and probes a RayService worker's
    # Serve proxy with wget
    [apt] = [line for line in joined.splitlines() if "apt-get install" in line]
    assert "wget" in apt.split()
    assert re.search(r"^USER (?!root)\w+$", text, re.MULTILINE)
    assert "PATH=/opt/venv/bin:$PATH" in joined  # `ray`, `photogen` and `python` (the health check) found
