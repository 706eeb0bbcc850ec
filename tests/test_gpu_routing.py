"""GPU runs on ECS and Kubernetes: the run-launcher fragments and the GPU run-tag files under
deploy/, checked through Dagster's, dagster-aws' and dagster-k8s' own code. No AWS (moto in
process), no cluster (the Kubernetes API client is a stand-in that keeps the Job it is given)."""

from __future__ import annotations

import json
import os
import sys

import boto3
import dagster as dg
import pytest
import yaml
from dagster._core.code_pointer import ModuleCodePointer
from dagster._core.instance.config import dagster_instance_config
from dagster._core.launcher import LaunchRunContext
from dagster._core.origin import JobPythonOrigin, RepositoryPythonOrigin
from dagster._core.test_utils import create_run_for_test
from moto import mock_aws

from photogen_pipelines.errors import BadInput
from photogen_pipelines.run_tags import load_run_tags
from tests.test_production_instance import DEPLOY, INSTANCE_ENV, _class_config_ok, _env_names

ECS_TAGS, K8S_TAGS = DEPLOY / "gpu-run-tags.ecs.yaml", DEPLOY / "gpu-run-tags.k8s.yaml"
# the daemon's environment: the launcher reads every name of its env_vars there at each launch
ECS_ENV = {
    **INSTANCE_ENV,
    "PHOTOGEN_ECS_RUN_TASK_DEFINITION": "photogen-gpu-run",
    "PHOTOGEN_ARTIFACTS_ROOT": "s3://photogen-artifacts",
}
K8S_ENV = {
    **INSTANCE_ENV,
    "PHOTOGEN_K8S_RUN_IMAGE": "registry.example/photogen/gpu-worker:7",
    "PHOTOGEN_K8S_NAMESPACE": "photogen",
}
GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}


def _launcher_block(name: str, tmp_path, monkeypatch, env: dict[str, str], edit=None) -> dict:
    """deploy/dagster.yaml with the fragment pasted in, through Dagster's own check of an instance
    file, then the launcher's config through that launcher's schema (env resolved)."""
    for variable, value in env.items():
        monkeypatch.setenv(variable, value)
    fragment = yaml.safe_load((DEPLOY / name).read_text())
    assert set(fragment) == {"run_launcher"}
    if edit:
        edit(fragment["run_launcher"]["config"])
    (tmp_path / "dagster.yaml").write_text(yaml.safe_dump({**yaml.safe_load((DEPLOY / "dagster.yaml").read_text()), **fragment}))
    config, custom_class = dagster_instance_config(str(tmp_path))
    assert custom_class is None
    return {**config["run_launcher"], "config": _class_config_ok(config["run_launcher"])}


def _run(instance, tags: dict[str, str]):
    pointer = ModuleCodePointer("photogen_pipelines.definitions", "defs", None)
    origin = JobPythonOrigin("proof_job", RepositoryPythonOrigin(sys.executable, pointer))
    return create_run_for_test(instance, job_name="proof_job", tags=tags, job_code_origin=origin)


# -- the run tags ------------------------------------------------------------------------------


def test_both_tag_files_carry_the_gpu_tag_that_the_queue_limits_to_one_run():
    from dagster._utils.tags import TagConcurrencyLimitsCounter

    coordinator = yaml.safe_load((DEPLOY / "dagster.yaml").read_text())["run_coordinator"]["config"]
    limits = coordinator["tag_concurrency_limits"]
    assert {"key": "photogen/gpu", "value": "true", "limit": 1} in limits

    @dg.asset
    def generation():
        return None

    for path in (ECS_TAGS, K8S_TAGS):
        tags = load_run_tags(path)
        assert tags["photogen/gpu"] == "true", path.name
        # the queue daemon's own counter: a GPU run in progress holds back the next, not a CPU run
        gpu_run = dg.DagsterRun(job_name="proof_job", tags=tags)
        counter = TagConcurrencyLimitsCounter(limits, [])
        assert not counter.is_blocked(gpu_run)
        counter.update_counters_with_launched_item(gpu_run)
        assert counter.is_blocked(dg.DagsterRun(job_name="proof_job", tags=tags)), path.name
        assert not counter.is_blocked(dg.DagsterRun(job_name="analytics_job", tags={}))
        # and Dagster takes them as a job's tags, the way the GPU jobs carry them
        job = dg.define_asset_job("gpu_job", selection=[generation], tags=tags)
        assert dg.Definitions(assets=[generation], jobs=[job]).resolve_job_def("gpu_job").run_tags == tags


def test_load_run_tags_encodes_structured_values_and_refuses_what_is_not_a_tag_mapping(tmp_path):
    path = tmp_path / "tags.yaml"
    path.write_text("photogen/gpu: true\nn: 1\ns: x\nm: {a: [1, b]}\n")
    assert load_run_tags(path) == {"photogen/gpu": "true", "n": "1", "s": "x", "m": '{"a": [1, "b"]}'}
    cases = {
        "a list": ("- photogen/gpu\n", "mapping"),
        "empty": ("", "mapping"),
        "a number key": ("1: x\n", "not a string"),
        "no value": ("photogen/gpu:\n", "no value"),
        "not YAML": ("a: [\n", "not YAML"),
    }
    for case, (text, message) in cases.items():
        path.write_text(text)
        with pytest.raises(BadInput, match=message) as raised:
            load_run_tags(path)
        assert raised.value.code == "bad_run_tags", case
        assert str(path) in str(raised.value) and "\n" not in str(raised.value), case
    with pytest.raises(BadInput, match="No such file") as raised:
        load_run_tags(tmp_path / "missing.yaml")
    assert raised.value.code == "bad_run_tags"


# -- ECS: deploy/run-launcher.ecs.yaml and deploy/gpu-run-tags.ecs.yaml --------------------------


@pytest.fixture
def ecs(monkeypatch):
    """moto's ECS in process, with the GPU run task definition the launcher describes."""
    for variable in [n for n in os.environ if n.startswith("AWS_")]:
        monkeypatch.delenv(variable)  # nothing of a real AWS setup reaches boto3
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        client = boto3.client("ecs", region_name="us-east-1")
        client.register_task_definition(
            family=ECS_ENV["PHOTOGEN_ECS_RUN_TASK_DEFINITION"],
            containerDefinitions=[{"name": "run", "image": "photogen/gpu-worker:7", "memory": 2048}],
            requiresCompatibilities=["EC2"],
            networkMode="awsvpc",
        )
        yield client


def _ecs_launcher(tmp_path, monkeypatch, edit=None):
    from dagster_aws.ecs import EcsRunLauncher

    block = _launcher_block("run-launcher.ecs.yaml", tmp_path, monkeypatch, ECS_ENV, edit)
    assert (block["module"], block["class"]) == ("dagster_aws.ecs", "EcsRunLauncher")
    return EcsRunLauncher.from_config_value(None, block["config"])  # as the instance builds it


@pytest.mark.filterwarnings("ignore:Function `get_tagged_secrets` is currently in beta")
def test_an_ecs_gpu_run_asks_for_one_gpu_on_the_gpu_capacity_provider(tmp_path, monkeypatch, ecs):
    """The launcher's real launch path (EcsRunLauncher.launch_run) with the tags of the file; only
    the ECS metadata endpoint of the daemon's task and the final RunTask call are stand-ins."""
    import dagster_aws.ecs.launcher as ecs_launcher_module
    from botocore.validate import validate_parameters
    from dagster_aws.ecs.tasks import CurrentEcsTaskMetadata

    launcher = _ecs_launcher(tmp_path, monkeypatch)
    assert launcher.task_definition.endswith(":task-definition/photogen-gpu-run:1")  # described in moto
    # the daemon's own task, as ECS describes a Fargate task of a service
    daemon_task = {
        "launchType": "FARGATE",
        "attachments": [{"type": "ElasticNetworkInterface", "details": [{"name": "subnetId", "value": "subnet-0abc"}]}],
    }
    monkeypatch.setattr(ecs_launcher_module, "get_current_ecs_task_metadata", lambda: CurrentEcsTaskMetadata("photogen", "arn:t"))
    monkeypatch.setattr(ecs_launcher_module, "get_current_ecs_task", lambda ecs, task_arn, cluster: daemon_task)
    requests = []

    def run_task(**kwargs):
        requests.append(kwargs)
        return {
            "taskArn": f"arn:aws:ecs:us-east-1:1:task/photogen/{len(requests)}",
            "clusterArn": "arn:aws:ecs:us-east-1:1:cluster/photogen",
        }

    monkeypatch.setattr(launcher, "_run_task", run_task)
    capacity = yaml.safe_load((DEPLOY / "run-launcher.ecs.yaml").read_text())["run_launcher"]["config"]["run_task_kwargs"]
    run_task_input = launcher.ecs.meta.service_model.operation_model("RunTask").input_shape

    with dg.instance_for_test() as instance:
        launcher.register_instance(instance)
        gpu_run = _run(instance, load_run_tags(ECS_TAGS))
        cpu_run = _run(instance, {"photogen/order": "o1"})
        for run in (gpu_run, cpu_run):
            launcher.launch_run(LaunchRunContext(dagster_run=run, workspace=None))
        assert instance.get_run_by_id(gpu_run.run_id).tags["ecs/task_arn"].endswith("/1")

    for request in requests:
        validate_parameters(request, run_task_input)  # botocore's own check of a RunTask request
        assert request["capacityProviderStrategy"] == capacity["capacityProviderStrategy"]
        assert "launchType" not in request  # FARGATE, copied from the daemon, would refuse a GPU
        assert request["taskDefinition"] == launcher.task_definition
        assert request["cluster"] == "photogen"
    gpu, cpu = requests
    [container] = gpu["overrides"]["containerOverrides"]
    assert container["name"] == "run"
    assert container["resourceRequirements"] == [{"type": "GPU", "value": "1"}]
    assert container["command"][-3:-1] == ["api", "execute_run"]  # the run's own command is kept
    assert (container["cpu"], container["memory"]) == (6144, 24576)
    assert (gpu["overrides"]["cpu"], gpu["overrides"]["memory"]) == ("6144", "24576")
    assert {"key": "photogen/gpu", "value": "true"} in gpu["tags"]
    # a run without the tags holds no GPU and keeps the task definition's size; with a named task
    # definition no environment or secret is passed either (the fragment says why)
    [container] = cpu["overrides"]["containerOverrides"]
    assert set(container) == {"name", "command"} and set(cpu["overrides"]) == {"containerOverrides"}


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda c: c.update(container_nme="run"), "container_nme"),
        (lambda c: c["run_task_kwargs"].update(capacityProviderStrategyy=[]), "capacityProviderStrategyy"),
        (lambda c: c.update(container_name="worker"), "worker"),
    ],
)
def test_a_misspelled_ecs_launcher_setting_fails(tmp_path, monkeypatch, ecs, edit, message):
    with pytest.raises(Exception, match=message):
        _ecs_launcher(tmp_path, monkeypatch, edit)


# -- Kubernetes: deploy/run-launcher.k8s.yaml and deploy/gpu-run-tags.k8s.yaml -------------------


class KeptJobs:
    """A stand-in for kubernetes.client.BatchV1Api: keeps the Jobs it is asked to create."""

    def __init__(self):
        self.created = []

    def create_namespaced_job(self, body, namespace, **_):
        self.created.append((namespace, body))


def _k8s_launcher(tmp_path, monkeypatch, batch_api=None, edit=None):
    from dagster_k8s import K8sRunLauncher

    block = _launcher_block("run-launcher.k8s.yaml", tmp_path, monkeypatch, K8S_ENV, edit)
    assert (block["module"], block["class"]) == ("dagster_k8s", "K8sRunLauncher")
    # out of a cluster: a kubeconfig that names a server nobody calls
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    config = {**block["config"], "load_incluster_config": False, "kubeconfig_file": str(kubeconfig)}
    return K8sRunLauncher(**config, k8s_client_batch_api=batch_api)


def test_the_k8s_tag_parses_with_dagster_k8s_own_parser():
    from dagster_k8s.job import USER_DEFINED_K8S_CONFIG_KEY, get_user_defined_k8s_config

    tags = load_run_tags(K8S_TAGS)
    assert set(tags) == {"photogen/gpu", USER_DEFINED_K8S_CONFIG_KEY}
    parsed = get_user_defined_k8s_config(tags)  # validates the schema and every Kubernetes field name
    resources = parsed.container_config["resources"]
    assert resources["limits"]["nvidia.com/gpu"] == 1
    assert {"cpu", "memory"} <= set(resources["requests"]) and {"cpu", "memory"} <= set(resources["limits"])
    assert GPU_TOLERATION in parsed.pod_spec_config["tolerations"]
    assert parsed.pod_spec_config["node_selector"] == {"nvidia.com/gpu.present": "true"}


def test_a_k8s_gpu_run_becomes_a_job_with_one_gpu_on_a_gpu_node(tmp_path, monkeypatch):
    """The launcher's real launch path (K8sRunLauncher.launch_run): the Job it would create."""
    from kubernetes.client import V1Job

    jobs = KeptJobs()
    launcher = _k8s_launcher(tmp_path, monkeypatch, jobs)
    with dg.instance_for_test() as instance:
        launcher.register_instance(instance)
        for tags in (load_run_tags(K8S_TAGS), {"photogen/order": "o1"}):
            launcher.launch_run(LaunchRunContext(dagster_run=_run(instance, tags), workspace=None))

    (namespace, gpu), (_, cpu) = jobs.created
    assert namespace == K8S_ENV["PHOTOGEN_K8S_NAMESPACE"] and isinstance(gpu, V1Job)
    pod = gpu.spec.template.spec.to_dict()
    [container] = pod["containers"]
    assert container["image"] == K8S_ENV["PHOTOGEN_K8S_RUN_IMAGE"]
    assert container["args"][-3:-1] == ["api", "execute_run"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"  # a Kubernetes quantity
    assert GPU_TOLERATION in [{k: t[k] for k in GPU_TOLERATION} for t in pod["tolerations"]]
    assert pod["node_selector"] == {"nvidia.com/gpu.present": "true"}
    assert pod["service_account_name"] == "photogen-run"
    assert {e["name"]: e["value"] for e in container["env"]}["DAGSTER_HOME"] == "/opt/dagster/home"
    sources = [(s["config_map_ref"] or s["secret_ref"])["name"] for s in container["env_from"]]
    assert sources == ["photogen-settings", "photogen-secrets"]
    assert gpu.metadata.labels["app.kubernetes.io/part-of"] == "photogen"
    [models] = [v for v in pod["volumes"] if v["name"] == "models"]
    assert models["persistent_volume_claim"] == {"claim_name": "photogen-models", "read_only": True}
    assert {"name": "models", "mount_path": "/models", "read_only": True}.items() <= container["volume_mounts"][0].items()
    # a run without the tags: no GPU, no toleration
    pod = cpu.spec.template.spec.to_dict()
    assert not pod["containers"][0]["resources"]["limits"] and not pod["tolerations"] and not pod["node_selector"]


def test_the_k8s_fragment_names_every_variable_a_run_needs():
    text = (DEPLOY / "run-launcher.k8s.yaml").read_text()
    instance_vars = _env_names(yaml.safe_load((DEPLOY / "dagster.yaml").read_text()))
    code_vars = {
        "PHOTOGEN_DATABASE_URL",
        "PHOTOGEN_ARTIFACTS_ROOT",
        "PHOTOGEN_STRIPE_API_KEY",
        "PHOTOGEN_STRIPE_WEBHOOK_SECRET",
        "PHOTOGEN_ENGINE",
        "PHOTOGEN_MODELS_DIR",
    }
    assert {name for name in instance_vars | code_vars if name not in text} == set()
    assert _env_names(yaml.safe_load(text)) == {"PHOTOGEN_K8S_RUN_IMAGE", "PHOTOGEN_K8S_NAMESPACE"}


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda c: c.update(job_namespce="photogen"), "job_namespce"),
        (lambda c: c.update(env_secrets="photogen-secrets"), "env_secrets"),
    ],
)
def test_a_misspelled_k8s_launcher_setting_fails(tmp_path, monkeypatch, edit, message):
    with pytest.raises(AssertionError, match=message):
        _k8s_launcher(tmp_path, monkeypatch, edit=edit)


def test_a_misspelled_k8s_tag_field_fails():
    from dagster_k8s.job import get_user_defined_k8s_config

    tags = load_run_tags(K8S_TAGS)
    config = json.loads(tags["dagster-k8s/config"])
    config["pod_spec_config"]["tolerationz"] = config["pod_spec_config"].pop("tolerations")
    with pytest.raises(Exception, match="tolerationz"):
        get_user_defined_k8s_config({**tags, "dagster-k8s/config": json.dumps(config)})
