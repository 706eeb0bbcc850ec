"""The production instance (deploy/): Dagster on PostgreSQL, artifacts and step logs on S3
(moto's real S3 server on loopback), and the deployment files checked as what they are."""

from __future__ import annotations

import io
import json
import os
import posixpath
import re
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import boto3
import dagster as dg
import psycopg
import pytest
import requests
import yaml
from PIL import Image

from photogen_pipelines.db.database import open_database
from photogen_pipelines.definitions import build_defs
from photogen_pipelines.errors import NotFound
from photogen_pipelines.factories import open_artifact_store, parse_s3_url
from photogen_pipelines.imaging.content_credentials import certificate_chain
from photogen_pipelines.orders.states import OrderState
from photogen_pipelines.storage.artifacts import OrderKeys
from photogen_pipelines.storage.s3 import S3ArtifactStore
from photogen_pipelines.storage.stores import LocalArtifactStore, get_json, put_json
from photogen_pipelines.workflows.intake import OrderRequest, register_order
from resources import ArtifactStorage, OrdersDatabase, StoreConfig
from tests.conftest import throwaway_postgres
from tests.dagster_helpers import INSTANCE_ENV
from tests.servers import free_port, moto_s3_server, server_process, wait_until

REPO = Path(__file__).parents[1]
DEPLOY = REPO / "deploy"
DOCKERFILES = sorted((DEPLOY / "docker").glob("Dockerfile.*"))
STAGING = Path("/tmp/dagster-compute-logs")  # deploy/dagster.yaml's compute_logs.local_dir


# -- moto's S3 server and the AWS settings every test here uses ---------------------------


@pytest.fixture(scope="module")
def moto_url(tmp_path_factory):
    with moto_s3_server(tmp_path_factory.mktemp("moto")) as url:
        yield url


@pytest.fixture
def aws_env(monkeypatch, tmp_path, moto_url) -> str:
    """Dummy credentials and moto's endpoint, as boto3's standard variables; nothing else of AWS."""
    for name in [n for n in os.environ if n.startswith("AWS_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return moto_url


@pytest.fixture
def s3(aws_env):
    return boto3.client("s3", endpoint_url=aws_env)


def new_bucket(s3) -> str:
    name = f"photogen-test-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return name


def bucket_keys(s3, bucket: str, prefix: str = "") -> list[str]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return sorted(item["Key"] for page in pages for item in page.get("Contents", []))


# -- the S3 artifact store ---------------------------------------------------------------

BAD_KEYS = ["", "/etc/passwd", "../outside", "orders/../../outside", "orders/a/../../../outside"]


@pytest.fixture(params=["local", "s3"])
def any_store(request, tmp_path):
    if request.param == "local":
        return LocalArtifactStore(tmp_path / "artifacts")
    s3 = request.getfixturevalue("s3")
    return S3ArtifactStore(new_bucket(s3), prefix="prod", endpoint_url=request.getfixturevalue("aws_env"))


def test_both_stores_keep_the_same_contract(any_store):
    store = any_store
    assert store.list("orders/o1") == [] and not store.exists("orders/o1/selfie/selfie.png")
    for key in ["orders/o1/selfie/selfie.png", "orders/o1/proofs/proof_0.png", "orders/o1/proofs/proof_1.png", "orders/o12/x"]:
        store.put_bytes(key, key.encode())
    put_json(store, "orders/o1/proofs/validation.json", {"best_variant": 1})

    assert store.get_bytes("orders/o1/proofs/proof_1.png") == b"orders/o1/proofs/proof_1.png"
    assert get_json(store, "orders/o1/proofs/validation.json") == {"best_variant": 1}
    assert store.exists("orders/o1/proofs/proof_0.png") and not store.exists("orders/o1/proofs/proof_9.png")
    # a prefix is a folder: orders/o1 does not list orders/o12, with or without the slash
    listed = ["orders/o1/proofs/proof_0.png", "orders/o1/proofs/proof_1.png", "orders/o1/proofs/validation.json"]
    assert store.list("orders/o1/proofs") == store.list("orders/o1/proofs/") == listed
    assert store.list("orders/o1") == [*listed, "orders/o1/selfie/selfie.png"]
    assert store.list("orders/o") == []
    store.put_bytes("orders/o1/proofs/proof_0.png", b"replaced")
    assert store.get_bytes("orders/o1/proofs/proof_0.png") == b"replaced"

    store.delete("orders/o1/proofs/proof_0.png")
    store.delete("orders/o1/proofs/proof_0.png")  # deleting what is gone is fine
    assert not store.exists("orders/o1/proofs/proof_0.png")
    with pytest.raises(NotFound, match="proof_0.png"):
        store.get_bytes("orders/o1/proofs/proof_0.png")

    for key in BAD_KEYS:
        for call in (store.get_bytes, store.exists, store.list, store.delete, store.uri, lambda k: store.put_bytes(k, b"x")):
            with pytest.raises(ValueError, match="bad artifact key"):
                call(key)


def test_the_s3_store_keeps_keys_under_its_prefix_with_content_types(s3, aws_env):
    bucket = new_bucket(s3)
    store = S3ArtifactStore(bucket, prefix="/prod/photogen/", endpoint_url=aws_env)
    uri = store.put_bytes("orders/o1/proofs/proof_0.png", b"\x89PNG...")
    assert uri == store.uri("orders/o1/proofs/proof_0.png") == f"s3://{bucket}/prod/photogen/orders/o1/proofs/proof_0.png"
    put_json(store, "orders/o1/print/manifest.json", {"file": "x"})
    store.put_bytes("orders/o1/print/print_file.jpg", b"jpeg")
    assert bucket_keys(s3, bucket) == [
        "prod/photogen/orders/o1/print/manifest.json",
        "prod/photogen/orders/o1/print/print_file.jpg",
        "prod/photogen/orders/o1/proofs/proof_0.png",
    ]
    content_types = {k: s3.head_object(Bucket=bucket, Key=k)["ContentType"] for k in bucket_keys(s3, bucket)}
    assert sorted(content_types.values()) == ["application/json", "image/jpeg", "image/png"]
    s3.put_object(Bucket=bucket, Key="prod/photogen/orders/o1/print/", Body=b"")  # a console's folder marker
    assert store.list("orders/o1/print") == ["orders/o1/print/manifest.json", "orders/o1/print/print_file.jpg"]
    s3.delete_object(Bucket=bucket, Key="prod/photogen/orders/o1/print/")
    # a store on the same bucket without the prefix sees the prefix as a folder
    bare = S3ArtifactStore(bucket, endpoint_url=aws_env)
    assert bare.list("prod") == bucket_keys(s3, bucket)
    assert bare.get_bytes("prod/photogen/orders/o1/print/print_file.jpg") == b"jpeg"
    # an S3 error that is not a missing key is not hidden behind NotFound
    missing_bucket = S3ArtifactStore(f"no-such-bucket-{uuid.uuid4().hex[:8]}", endpoint_url=aws_env)
    with pytest.raises(Exception) as raised:
        missing_bucket.get_bytes("orders/o1/x")
    assert not isinstance(raised.value, NotFound)
    assert "NoSuchBucket" in str(raised.value)


def test_a_presigned_url_downloads_the_bytes_without_credentials(s3, aws_env, astronaut_png, tmp_path):
    store = S3ArtifactStore(new_bucket(s3), prefix="prod", endpoint_url=aws_env)
    store.put_bytes("orders/o1/proofs/proof_0.png", astronaut_png)
    url = store.presigned_url("orders/o1/proofs/proof_0.png", 60)
    assert url.startswith(f"{aws_env}/{store.bucket}/prod/orders/o1/proofs/proof_0.png?")
    assert "X-Amz-Signature=" in url and "X-Amz-Expires=60" in url
    response = requests.get(url, timeout=10)  # a plain HTTP client: no AWS credentials involved
    assert response.status_code == 200 and response.content == astronaut_png
    assert response.headers["Content-Type"] == "image/png"
    with pytest.raises(ValueError):
        store.presigned_url("orders/o1/proofs/proof_0.png", 0)
    with pytest.raises(ValueError, match="bad artifact key"):
        store.presigned_url("../secret", 60)
    # the local store has no presigned URLs: the API signs its own links
    assert LocalArtifactStore(tmp_path).presigned_url("orders/o1/proofs/proof_0.png", 60) is None


def test_the_storage_resource_is_local_or_s3_and_s3_settings_come_from_boto3s_environment(s3, aws_env, tmp_path, monkeypatch):
    assert isinstance(ArtifactStorage(settings=StoreConfig(root=str(tmp_path))).store(), LocalArtifactStore)
    bucket = new_bucket(s3)
    explicit = ArtifactStorage(
        settings=StoreConfig(s3_bucket=bucket, s3_prefix="p", s3_endpoint_url=aws_env, s3_region="us-east-1")
    ).store()
    assert isinstance(explicit, S3ArtifactStore) and explicit.uri("a/b") == f"s3://{bucket}/p/a/b"
    explicit.put_bytes("a/b", b"1")
    # no endpoint in the resource config: boto3 takes AWS_ENDPOINT_URL_S3, as in deploy/compose.yaml
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", aws_env)
    from_env = ArtifactStorage(settings=StoreConfig(s3_bucket=bucket, s3_prefix="p")).store()
    assert from_env.client.meta.endpoint_url == aws_env and from_env.get_bytes("a/b") == b"1"
    both = StoreConfig(root=str(tmp_path), s3_bucket=bucket, s3_prefix="p")
    assert ArtifactStorage(settings=both).store().get_bytes("a/b") == b"1"
    with pytest.raises(ValueError, match="root.*s3_bucket"):
        ArtifactStorage(settings=StoreConfig()).store()
    # credentials are never resource config (they would show in the UI)
    assert not {f for f in StoreConfig.model_fields if re.search("key|secret|password|token", f)}
    # s3://bucket/prefix, the form the settings take
    assert parse_s3_url("s3://b/some/prefix/") == ("b", "some/prefix") and parse_s3_url("s3://b") == ("b", "")
    assert open_artifact_store(f"s3://{bucket}/p").get_bytes("a/b") == b"1"
    assert isinstance(open_artifact_store(str(tmp_path)), LocalArtifactStore)
    with pytest.raises(ValueError):
        parse_s3_url("https://example.com/x")


# -- the pipeline on the production instance ---------------------------------------------


def _pg_env(url: str) -> dict[str, str]:
    parts = urlsplit(url)
    return {
        "DAGSTER_PG_HOST": parts.hostname,
        "DAGSTER_PG_PORT": str(parts.port or 5432),
        "DAGSTER_PG_USERNAME": parts.username or "postgres",
        "DAGSTER_PG_PASSWORD": parts.password or "",
        "DAGSTER_PG_DB": parts.path.lstrip("/"),
    }


def _files_under(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))


@pytest.mark.slow
def test_the_pipeline_on_the_production_instance_keeps_nothing_on_local_disk(
    tmp_path, monkeypatch, s3, aws_env, postgres_server, astronaut_png
):
    from dagster_aws.s3.compute_log_manager import S3ComputeLogManager
    from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage, PostgresScheduleStorage

    photogen_home, dagster_home = tmp_path / "photogen_home", tmp_path / "dagster_home"
    photogen_home.mkdir()
    dagster_home.mkdir()
    shutil.copy(DEPLOY / "dagster.yaml", dagster_home / "dagster.yaml")  # the real file, as the images do
    artifacts, logs = new_bucket(s3), new_bucket(s3)
    for name in [n for n in os.environ if n.startswith(("PHOTOGEN_", "DAGSTER_"))]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("PHOTOGEN_HOME", str(photogen_home))
    monkeypatch.setenv("DAGSTER_HOME", str(dagster_home))
    monkeypatch.setenv("DAGSTER_COMPUTE_LOGS_BUCKET", logs)
    monkeypatch.setenv("DAGSTER_COMPUTE_LOGS_PREFIX", "dagster/compute-logs")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", aws_env)
    # the shop's C2PA certificate and key, mounted into the containers as compose passes them
    # (a chain this test makes): production makes no development certificate in its home
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    chain, key, _ = certificate_chain("A test shop", "A test shop's C2PA signer")
    (secrets / "chain.pem").write_bytes(chain)
    (secrets / "key.pem").write_bytes(key)
    monkeypatch.setenv("PHOTOGEN_C2PA_CERT", str(secrets / "chain.pem"))
    monkeypatch.setenv("PHOTOGEN_C2PA_KEY", str(secrets / "key.pem"))

    with throwaway_postgres(postgres_server) as dagster_db, throwaway_postgres(postgres_server) as orders_url:
        for name, value in _pg_env(dagster_db).items():
            monkeypatch.setenv(name, value)
        open_database(orders_url).migrate()
        defs = build_defs(str(photogen_home))
        resources = {
            **defs.resources,
            # endpoint: AWS_ENDPOINT_URL_S3
            "storage": ArtifactStorage(settings=StoreConfig(s3_bucket=artifacts, s3_prefix="prod")),
            "orders": OrdersDatabase(url=orders_url),
        }
        production = dg.Definitions(assets=defs.assets, asset_checks=defs.asset_checks, jobs=defs.jobs, resources=resources)
        book, store = resources["orders"].book(), resources["storage"].store()

        with dg.DagsterInstance.get() as instance:  # DAGSTER_HOME/dagster.yaml, as every container loads it
            assert isinstance(instance.run_storage, PostgresRunStorage)
            assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
            assert isinstance(instance.schedule_storage, PostgresScheduleStorage)
            assert isinstance(instance.compute_log_manager, S3ComputeLogManager)
            assert instance.run_retries_enabled and instance.run_retries_max_retries == 2
            assert not instance.run_retries_retry_on_asset_or_op_failure
            assert instance.run_monitoring_enabled

            catalog = resources["catalog"]
            order = register_order(
                book,
                store,
                resources["faces"].analyzer(),
                catalog.styles(),
                catalog.products(),
                astronaut_png,
                OrderRequest("sepia_oil", "poster_a3", variants=2, approval="auto"),
                proof_long_side=resources["styles"].proof_long_side,
            )
            instance.add_dynamic_partitions("orders", [order.id])
            proof_run = production.resolve_job_def("proof_job").execute_in_process(instance=instance, partition_key=order.id)
            assert proof_run.success and book.get(order.id).state == OrderState.APPROVED
            print_run = production.resolve_job_def("print_job").execute_in_process(instance=instance, partition_key=order.id)
            assert print_run.success
            run_ids = [proof_run.run_id, print_run.run_id]

            # the order is ready, and everything it made is in the bucket
            ready = book.get(order.id)
            assert ready.state == OrderState.READY
            keys = OrderKeys(order.id)
            stored = bucket_keys(s3, artifacts, f"prod/{keys.prefix}/")
            manifest = json.loads(s3.get_object(Bucket=artifacts, Key=f"prod/{keys.manifest}")["Body"].read())
            assert f"prod/{manifest['file']}" in stored and f"prod/{keys.upload}" in stored
            assert f"prod/{keys.proof(ready.approved_proof)}" in stored
            with Image.open(io.BytesIO(store.get_bytes(manifest["file"]))) as printed:
                assert printed.size == (3508, 4961) == tuple(manifest["pixel_size"])
            signed = manifest["content_credentials"]  # signed with the shop's own certificate
            assert signed["valid"] and not signed["development_certificate"], signed
            event = instance.get_latest_materialization_event(dg.AssetKey("print_file"))
            assert event.dagster_event.partition == order.id
            assert event.asset_materialization.metadata["path"].value == f"s3://{artifacts}/prod/{manifest['file']}"

            # the runs and their events are in Dagster's PostgreSQL database
            with psycopg.connect(dagster_db) as connection:
                runs = dict(connection.execute("SELECT run_id, status FROM runs").fetchall())
                events = dict(
                    connection.execute(
                        "SELECT run_id, count(*) FROM event_logs WHERE run_id = ANY(%s) GROUP BY run_id", [run_ids]
                    ).fetchall()
                )
                partitions = sorted(
                    connection.execute("SELECT partitions_def_name, partition FROM dynamic_partitions").fetchall()
                )
            assert runs == {run_id: "SUCCESS" for run_id in run_ids}
            assert all(events[run_id] > 10 for run_id in run_ids)
            assert partitions == [("approved_orders", order.id), ("orders", order.id)]  # proofs, then the print

            # execute_in_process captures the stdout/stderr of the run's process (one log key per
            # process; the multiprocess executor of launched runs has one per step): uploaded to
            # the log bucket when the capture ends (empty files skipped: stdout here), and every
            # 30 s while it runs as `.partial` objects, which Dagster leaves in the bucket
            log_keys = bucket_keys(s3, logs, "dagster/compute-logs/storage/")
            for run_id in run_ids:
                mine = [k for k in log_keys if k.startswith(f"dagster/compute-logs/storage/{run_id}/compute_logs/")]
                assert [k for k in mine if k.endswith(".err")], log_keys
                assert all(k.endswith((".out", ".err", ".out.partial", ".err.partial")) for k in mine), log_keys
            stderr_key = next(k for k in log_keys if proof_run.run_id in k and k.endswith(".err"))
            assert b"selfie" in s3.get_object(Bucket=logs, Key=stderr_key)["Body"].read()

    # nothing on local disk under either home
    assert _files_under(photogen_home) == []
    assert _files_under(dagster_home) == ["dagster.yaml"]
    # the logs were staged in compute_logs.local_dir while captured, and deleted once uploaded
    # (Dagster leaves the empty folders)
    for run_id in run_ids:
        assert _files_under(STAGING / run_id) == ["compute_logs"]
        shutil.rmtree(STAGING / run_id)


# -- deploy/dagster.yaml and the run launcher, through Dagster's own config validation -----


def _env_names(node) -> set[str]:
    """Every variable a Dagster config reads through `{env: NAME}`."""
    if isinstance(node, dict):
        if set(node) == {"env"} and isinstance(node["env"], str):
            return {node["env"]}
        return set().union(*(_env_names(v) for v in node.values())) if node else set()
    if isinstance(node, list):
        return set().union(*(_env_names(v) for v in node)) if node else set()
    return set()


def _class_config_ok(block: dict) -> dict:
    """A `module/class/config` block checked against that class's own config schema, env resolved."""
    import importlib

    from dagster._config import process_config

    klass = getattr(importlib.import_module(block["module"]), block["class"])
    result = process_config(klass.config_type(), block.get("config", {}))
    assert result.success, [e.message for e in result.errors]
    return result.value


def test_every_yaml_under_deploy_is_checked_here():
    """Here, in tests/test_gpu_routing.py (the launcher fragments and GPU run tags), in
    tests/test_deploy_engines.py (the engine service's RayService) or in
    tests/test_monitoring.py (the alert rules, their unit tests and the scrape config)."""
    shipped = {p.relative_to(DEPLOY).as_posix() for p in DEPLOY.rglob("*") if p.suffix in (".yaml", ".yml")}
    assert shipped == {
        "dagster.yaml",
        "workspace.yaml",
        "compose.yaml",
        "run-launcher.ecs.yaml",
        "run-launcher.k8s.yaml",
        "gpu-run-tags.ecs.yaml",
        "gpu-run-tags.k8s.yaml",
        "kuberay/rayservice.yaml",
        "monitoring/alerts.yaml",
        "monitoring/alerts.test.yaml",
        "monitoring/prometheus.yaml",
    }


def test_deploy_dagster_yaml_is_a_valid_production_instance_config(tmp_path, monkeypatch):
    from dagster._core.instance.config import dagster_instance_config
    from dagster_postgres.utils import pg_config, pg_url_from_config

    for name, value in INSTANCE_ENV.items():
        monkeypatch.setenv(name, value)
    shutil.copy(DEPLOY / "dagster.yaml", tmp_path / "dagster.yaml")
    config, custom_class = dagster_instance_config(str(tmp_path))  # Dagster's own validation of the file
    assert custom_class is None
    raw = yaml.safe_load((DEPLOY / "dagster.yaml").read_text())
    assert _env_names(raw) == set(INSTANCE_ENV)

    # storage: PostgreSQL through psycopg2, every value (the password above all) from the environment
    postgres = config["storage"]["postgres"]
    assert set(postgres) == {"postgres_db"}
    assert {k: v for k, v in raw["storage"]["postgres"]["postgres_db"].items() if not isinstance(v, dict)} == {
        "scheme": "postgresql+psycopg2"
    }
    from dagster._config import process_config

    resolved = process_config(pg_config(), postgres)
    assert resolved.success, resolved.errors
    assert pg_url_from_config(resolved.value) == "postgresql+psycopg2://photogen:s3cret@postgres:5432/dagster"

    # compute logs on S3, bucket, prefix and endpoint from the environment
    assert (config["compute_logs"]["module"], config["compute_logs"]["class"]) == (
        "dagster_aws.s3.compute_log_manager",
        "S3ComputeLogManager",
    )
    logs = _class_config_ok(config["compute_logs"])
    assert (logs["bucket"], logs["prefix"], logs["endpoint_url"]) == ("photogen-dagster", "compute-logs", "http://minio:9000")
    assert logs["local_dir"] == str(STAGING)

    # the queue, with the GPU limit
    coordinator = _class_config_ok(config["run_coordinator"])
    assert config["run_coordinator"]["class"] == "QueuedRunCoordinator"
    assert coordinator["max_concurrent_runs"] >= 1
    assert {"key": "photogen/gpu", "value": "true", "limit": 1} in coordinator["tag_concurrency_limits"]

    # the same run retries as the local instance; run monitoring; no telemetry
    local = yaml.safe_load((REPO / "dagster.yaml").read_text())
    retries = {"enabled": True, "max_retries": 2, "retry_on_asset_or_op_failure": False}
    assert config["run_retries"] == local["run_retries"] == retries
    monitoring = config["run_monitoring"]
    assert monitoring["enabled"] and monitoring["start_timeout_seconds"] > 0 and monitoring["cancel_timeout_seconds"] > 0
    # the default run launcher cannot resume runs: Dagster refuses to start otherwise
    assert "run_launcher" not in config and monitoring["max_resume_run_attempts"] == 0
    assert config["telemetry"] == {"enabled": False}


def test_the_ecs_run_launcher_fragment_fits_the_instance_and_its_schema(tmp_path, monkeypatch):
    from dagster._core.instance.config import dagster_instance_config

    for name, value in {**INSTANCE_ENV, "PHOTOGEN_ECS_RUN_TASK_DEFINITION": "photogen-gpu-run:3"}.items():
        monkeypatch.setenv(name, value)
    fragment = yaml.safe_load((DEPLOY / "run-launcher.ecs.yaml").read_text())
    assert set(fragment) == {"run_launcher"}
    merged = {**yaml.safe_load((DEPLOY / "dagster.yaml").read_text()), **fragment}
    (tmp_path / "dagster.yaml").write_text(yaml.safe_dump(merged))
    config, _ = dagster_instance_config(str(tmp_path))
    launcher = _class_config_ok(config["run_launcher"])
    assert (config["run_launcher"]["module"], config["run_launcher"]["class"]) == ("dagster_aws.ecs", "EcsRunLauncher")
    assert launcher["task_definition"] == {"env": "PHOTOGEN_ECS_RUN_TASK_DEFINITION"}
    # the run tasks get the settings by name, never a secret's value in the config
    assert "DAGSTER_PG_PASSWORD" not in launcher["env_vars"] and "PHOTOGEN_DATABASE_URL" not in launcher["env_vars"]
    assert set(launcher["env_vars"]) <= set(INSTANCE_ENV) | {"PHOTOGEN_ARTIFACTS_ROOT"}


# -- deploy/workspace.yaml, and the code server that Dockerfile.code starts ------------------


def _dockerfile(name: str) -> str:
    return (DEPLOY / "docker" / f"Dockerfile.{name}").read_text()


def _cmd(dockerfile: str) -> list[str]:
    lines = [line for line in dockerfile.splitlines() if line.startswith("CMD ")]
    assert len(lines) == 1, "one CMD, in exec form"
    return json.loads(lines[0][4:])


def test_the_workspace_points_at_the_code_server_over_grpc():
    from dagster._core.remote_origin import GrpcServerCodeLocationOrigin
    from dagster._core.workspace.load import location_origins_from_yaml_paths

    [origin] = location_origins_from_yaml_paths([str(DEPLOY / "workspace.yaml")])
    assert isinstance(origin, GrpcServerCodeLocationOrigin)
    assert (origin.host, origin.port, origin.location_name) == ("code", 4000, "photogen")
    code_cmd = _cmd(_dockerfile("code"))
    assert code_cmd[code_cmd.index("-p") + 1] == "4000" and code_cmd[code_cmd.index("-h") + 1] == "0.0.0.0"
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    assert "code" in compose["services"]


def _dockerfile_env(dockerfile: str) -> dict[str, str]:
    joined = re.sub(r"\\\n\s*", " ", dockerfile)
    return dict(pair.split("=", 1) for line in joined.splitlines() if line.startswith("ENV ") for pair in line.split()[1:])


DAEMONS_QUERY = """{
  workspaceOrError { ... on Workspace { locationEntries { name loadStatus locationOrLoadError {
    __typename ... on RepositoryLocation { repositories { jobs { name } sensors { name sensorState { status } } } }
  } } } }
  instance { daemonHealth { allDaemonStatuses { daemonType healthy required } } }
}"""


STORAGE_QUERY = """{
  workspaceOrError { ... on Workspace { locationEntries { locationOrLoadError { ... on RepositoryLocation {
    repositories { allTopLevelResourceDetails { name configuredValues { key value } } }
  } } } } }
}"""


@pytest.mark.slow
def test_the_compose_stack_runs_on_the_production_instance_without_containers(
    tmp_path, monkeypatch, s3, aws_env, postgres_server
):
    """The code server (Dockerfile.code's CMD), the webserver (Dockerfile.dagster's CMD) and the
    daemon (compose's command), on loopback, with deploy/dagster.yaml and deploy/workspace.yaml."""
    bin_dir = Path(sys.executable).parent
    code_port, web_port = free_port(), free_port()
    code_cmd, web_cmd = _cmd(_dockerfile("code")), _cmd(_dockerfile("dagster"))
    daemon_cmd = _compose()["services"]["daemon"]["command"]
    for command, port in ((code_cmd, code_port), (web_cmd, web_port)):
        command[command.index("-h") + 1], command[command.index("-p") + 1] = "127.0.0.1", str(port)
    workspace = yaml.safe_load((DEPLOY / "workspace.yaml").read_text())
    workspace["load_from"][0]["grpc_server"].update(host="127.0.0.1", port=code_port)  # `code` is compose's name
    (tmp_path / "workspace.yaml").write_text(yaml.safe_dump(workspace))
    for command in (web_cmd, daemon_cmd):
        command[command.index("-w") + 1] = str(tmp_path / "workspace.yaml")
    for command in (code_cmd, web_cmd, daemon_cmd):
        command[0] = str(bin_dir / command[0])

    dagster_home, photogen_home = tmp_path / "dagster_home", tmp_path / "photogen_home"
    dagster_home.mkdir()
    photogen_home.mkdir()
    shutil.copy(DEPLOY / "dagster.yaml", dagster_home / "dagster.yaml")
    image_env = _dockerfile_env(_dockerfile("dagster"))
    assert image_env["DAGSTER_DISABLE_TELEMETRY"] == _dockerfile_env(_dockerfile("code"))["DAGSTER_DISABLE_TELEMETRY"] == "1"
    artifacts, logs = new_bucket(s3), new_bucket(s3)  # compose's two buckets, on moto's S3
    with throwaway_postgres(postgres_server) as dagster_db, throwaway_postgres(postgres_server) as orders_url:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PHOTOGEN_", "DAGSTER_"))}
        env.update(_pg_env(dagster_db))
        env.update(
            DAGSTER_HOME=str(dagster_home),
            DAGSTER_DISABLE_TELEMETRY=image_env["DAGSTER_DISABLE_TELEMETRY"],
            DAGSTER_COMPUTE_LOGS_BUCKET=logs,
            DAGSTER_COMPUTE_LOGS_PREFIX="compute-logs",
            AWS_ENDPOINT_URL_S3=aws_env,
            PHOTOGEN_HOME=str(photogen_home),
            PHOTOGEN_DATABASE_URL=orders_url,
            PHOTOGEN_ARTIFACTS_ROOT=f"s3://{artifacts}",  # as compose.yaml sets it: s3://${PHOTOGEN_ARTIFACTS_BUCKET}
        )
        migrate = _compose()["services"]["migrate"]["command"]
        done = subprocess.run([str(bin_dir / migrate[0]), *migrate[1:]], env=env, cwd=tmp_path, capture_output=True, text=True)
        assert done.returncode == 0 and "(postgresql)" in done.stderr, done.stderr
        # each from outside the checkout, as in the images: the installed packages are what loads
        with server_process(code_cmd, tmp_path / "code.log", env=env, cwd=tmp_path) as code:
            health = [str(bin_dir / "dagster"), "api", "grpc-health-check", "-p", str(code_port)]

            def code_healthy() -> bool:
                assert code.poll() is None, (tmp_path / "code.log").read_text()
                return subprocess.run(health, capture_output=True, timeout=30).returncode == 0

            wait_until(code_healthy, 120, "the code server")
            with (
                server_process(web_cmd, tmp_path / "webserver.log", env=env, cwd=tmp_path) as web,
                server_process(daemon_cmd, tmp_path / "daemon.log", env=env, cwd=tmp_path) as daemon,
            ):

                def all_healthy():
                    assert web.poll() is None, (tmp_path / "webserver.log").read_text()[-3000:]
                    assert daemon.poll() is None, (tmp_path / "daemon.log").read_text()[-3000:]
                    try:
                        answer = requests.post(f"http://127.0.0.1:{web_port}/graphql", json={"query": DAEMONS_QUERY}, timeout=10)
                    except requests.ConnectionError:
                        return None
                    statuses = answer.json()["data"]["instance"]["daemonHealth"]["allDaemonStatuses"]
                    return answer.json()["data"] if all(d["healthy"] for d in statuses if d["required"]) else None

                data = wait_until(all_healthy, 120, "the webserver and a healthy daemon", interval=1)
                [entry] = data["workspaceOrError"]["locationEntries"]
                assert (entry["name"], entry["loadStatus"]) == ("photogen", "LOADED")
                [repository] = entry["locationOrLoadError"]["repositories"]
                assert {"proof_job", "print_job"} <= {job["name"] for job in repository["jobs"]}
                sensors = {sensor["name"]: sensor["sensorState"]["status"] for sensor in repository["sensors"]}
                assert sensors["paid_orders"] == sensors["approved_orders"] == "RUNNING"
                daemons = {d["daemonType"] for d in data["instance"]["daemonHealth"]["allDaemonStatuses"] if d["healthy"]}
                assert {"SENSOR", "QUEUED_RUN_COORDINATOR", "MONITORING"} <= daemons
                # the code server's artifact store is the S3 bucket, as in compose
                answer = requests.post(f"http://127.0.0.1:{web_port}/graphql", json={"query": STORAGE_QUERY}, timeout=10)
                [entry] = answer.json()["data"]["workspaceOrError"]["locationEntries"]
                [repository] = entry["locationOrLoadError"]["repositories"]
                [storage] = [r for r in repository["allTopLevelResourceDetails"] if r["name"] == "storage"]
                [settings] = [json.loads(v["value"]) for v in storage["configuredValues"] if v["key"] == "settings"]
                assert (settings["s3_bucket"], settings["root"]) == (artifacts, None), settings
                # the sensors tick in the code server and their ticks land in PostgreSQL
                with psycopg.connect(dagster_db) as connection:
                    beats = {r[0] for r in connection.execute("SELECT daemon_type FROM daemon_heartbeats").fetchall()}

                    def ticks() -> int:
                        return connection.execute("SELECT count(*) FROM job_ticks").fetchone()[0]

                    wait_until(ticks, 60, "a sensor tick in PostgreSQL")
                assert {"SENSOR", "QUEUED_RUN_COORDINATOR", "MONITORING"} <= beats
    # nothing on local disk: DAGSTER_HOME holds only the file the image puts there
    assert _files_under(dagster_home) == ["dagster.yaml"]
    assert _files_under(photogen_home) == []
    assert not (tmp_path / "artifacts").exists()


# -- deploy/compose.yaml, deploy/.env.example and the Dockerfiles ---------------------------

COMPOSE_VAR = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(?::?[-?+])[^}]*)?\}")
# read by `docker compose` itself (from deploy/.env too), not interpolated into compose.yaml
COMPOSE_OWN_VARS = {"COMPOSE_PROFILES"}
EXTERNAL_IMAGES = {"postgres", "minio/minio"}


def _compose() -> dict:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def _env_example(uncomment: bool = False) -> dict[str, str]:
    """deploy/.env.example's settings; with `uncomment`, also those it shows commented out
    (`# NAME=value`, off by default), as a deploy that uncomments them has them."""
    lines = (DEPLOY / ".env.example").read_text().splitlines()
    commented = re.compile(r"# ([A-Z][A-Z0-9_]*=\S*)")
    variables = {}
    for number, line in enumerate(lines):
        if uncomment and (setting := commented.fullmatch(line)):
            line = setting[1]
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            assert re.fullmatch(r"[A-Z][A-Z0-9_]*", name), line
            above = lines[number - 1]  # its description, not a heading or another setting
            described = above.startswith("# ") and not above.startswith("# --") and not commented.fullmatch(above)
            assert described, f"{name} has no comment"
            variables[name] = value
    return variables


def test_every_compose_service_is_built_from_a_dockerfile_here_or_pins_an_image():
    services = _compose()["services"]
    assert set(services) == {"postgres", "minio", "buckets", "migrate", "code", "webserver", "daemon", "api", "engines"}
    built = {}
    for name, service in services.items():
        if "build" in service:
            dockerfile = (DEPLOY / service["build"]["context"] / service["build"]["dockerfile"]).resolve()
            assert dockerfile.is_file() and dockerfile.parent == DEPLOY / "docker", (name, dockerfile)
            assert built.setdefault(service["image"], dockerfile) == dockerfile, f"{service['image']} built two ways"
        else:
            repository, _, tag = service["image"].partition(":")
            assert repository in EXTERNAL_IMAGES and tag and tag != "latest", (name, service["image"])
    assert {p.name for p in built.values()} == {"Dockerfile.dagster", "Dockerfile.code", "Dockerfile.api", "Dockerfile.engines"}
    images = {name: services[name]["image"] for name in services}
    assert images["webserver"] == images["daemon"] == images["buckets"] == "photogen/dagster:local"  # one image, two commands
    assert images["code"] == images["migrate"]
    # the order of a deploy: database and buckets, migrations, code server, then the rest
    assert services["code"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert services["code"]["depends_on"]["buckets"]["condition"] == "service_completed_successfully"
    assert all(services[s]["depends_on"]["code"]["condition"] == "service_healthy" for s in ("webserver", "daemon"))
    assert services["migrate"]["command"] == ["photogen", "db", "upgrade"]
    for name, service in services.items():
        if "command" in service and service.get("entrypoint") is None:
            assert Path(sys.executable).with_name(service["command"][0]).exists() or name in ("postgres", "minio"), name


def test_every_variable_compose_uses_is_documented_in_env_example_and_reaches_who_reads_it():
    text = (DEPLOY / "compose.yaml").read_text()
    used = set(COMPOSE_VAR.findall(text))
    documented = _env_example(uncomment=True)
    assert used - set(documented) == set(), "used in compose.yaml, missing from .env.example"
    assert set(documented) - used - COMPOSE_OWN_VARS == set(), "in .env.example, used nowhere"
    # a setting .env.example leaves commented out is unset in a deploy: compose has a default for it
    for name in set(documented) - set(_env_example()) - COMPOSE_OWN_VARS:
        assert re.search(rf"\$\{{{name}:-[^}}]*\}}", text), f"{name}: commented out in .env.example, no default in compose.yaml"
    services = _compose()["services"]
    # every variable deploy/dagster.yaml reads is set wherever an instance is opened
    instance_vars = _env_names(yaml.safe_load((DEPLOY / "dagster.yaml").read_text()))
    for name in ("code", "webserver", "daemon"):
        assert instance_vars <= set(services[name]["environment"]), name
    for name in ("code", "migrate", "api"):
        environment = services[name]["environment"]
        assert (
            environment["PHOTOGEN_DATABASE_URL"].startswith("postgresql://")
            and "@postgres:5432/" in environment["PHOTOGEN_DATABASE_URL"]
        )
        assert environment["PHOTOGEN_ARTIFACTS_ROOT"] == "s3://${PHOTOGEN_ARTIFACTS_BUCKET}"
    assert services["api"]["environment"]["PHOTOGEN_AUTO_MIGRATE"] == "false"
    assert "PHOTOGEN_SECRET_KEY" in services["api"]["environment"]
    # secrets are never written into compose.yaml itself
    for service in services.values():
        for key, value in (service.get("environment") or {}).items():
            if re.search("PASSWORD|SECRET|API_KEY", key):
                assert str(value).startswith("${"), key


def test_the_buckets_one_shot_of_compose_creates_both_buckets_idempotently(s3, aws_env, tmp_path):
    service = _compose()["services"]["buckets"]
    assert service["entrypoint"] == ["python", "-c"]
    [script] = service["command"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PHOTOGEN_", "DAGSTER_"))}
    artifacts, logs = f"photogen-a-{uuid.uuid4().hex[:8]}", f"photogen-l-{uuid.uuid4().hex[:8]}"
    env.update(AWS_ENDPOINT_URL_S3=aws_env, PHOTOGEN_ARTIFACTS_BUCKET=artifacts, DAGSTER_COMPUTE_LOGS_BUCKET=logs)
    for _ in range(2):
        done = subprocess.run([sys.executable, "-c", script], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert done.stdout.splitlines() == [f"bucket ready: {artifacts}", f"bucket ready: {logs}"]
    assert {artifacts, logs} <= {b["Name"] for b in s3.list_buckets()["Buckets"]}


def test_each_dockerfile_installs_with_the_constraints_and_runs_an_entry_point_that_exists():
    assert {p.name for p in DOCKERFILES} == {
        "Dockerfile.dagster",
        "Dockerfile.code",
        "Dockerfile.api",
        "Dockerfile.gpu-worker",
        "Dockerfile.engines",
    }
    for path in DOCKERFILES:
        text = path.read_text()
        lines = re.sub(r"\\\n\s*", " ", text).splitlines()  # continuation lines joined
        instructions = [line for line in lines if line.strip() and not line.startswith("#")]
        assert instructions[0].startswith("FROM ") and "USER root" not in instructions, path.name
        copies = [line.split()[1:-1] for line in lines if line.startswith("COPY ")]
        for source in (s for sources in copies for s in sources):
            assert (REPO / source).exists(), f"{path.name}: COPY {source}"
        # where COPY puts constraints.txt (WORKDIR-relative destinations resolved)
        workdir, copied = "/", set()
        for line in lines:
            if line.startswith("WORKDIR "):
                workdir = line.split()[1]
            elif line.startswith("COPY ") and "constraints.txt" in line.split()[1:-1]:
                destination = line.split()[-1]
                destination = destination if destination.startswith("/") else f"{workdir.rstrip('/')}/{destination}"
                copied.add(posixpath.normpath(destination + "constraints.txt" if destination.endswith("/") else destination))
        installs = [line for line in lines if re.search(r"\bpip install\b", line)]
        assert installs, path.name
        for line in installs:
            constraint = re.search(r"PIP_CONSTRAINT=(\S+) pip install", line)
            assert constraint and constraint.group(1) in copied, f"{path.name}: {line} ({copied})"
        command = _cmd(text)
        assert Path(sys.executable).with_name(command[0]).exists(), f"{path.name}: {command[0]} is not installed"

    import importlib

    from photogen_pipelines.cli.code_server import DEFINITIONS_MODULE

    code = _cmd(_dockerfile("code"))
    assert code[:2] == ["photogen", "code-server"]  # Dagster's code server, runs forked warm
    definitions = importlib.import_module(DEFINITIONS_MODULE)
    assert isinstance(definitions.defs, dg.Definitions)
    assert _cmd(_dockerfile("gpu-worker")) == code

    api = _cmd(_dockerfile("api"))
    assert api[0] == "uvicorn"
    module, _, attribute = api[1].partition(":")
    from fastapi import FastAPI

    assert isinstance(getattr(importlib.import_module(module), attribute), FastAPI)

    webserver = _cmd(_dockerfile("dagster"))
    assert webserver[0] == "dagster-webserver"
    workspace = webserver[webserver.index("-w") + 1]
    assert "COPY deploy/dagster.yaml deploy/workspace.yaml /opt/dagster/home/" in _dockerfile("dagster")
    assert workspace == "/opt/dagster/home/workspace.yaml"
    assert _compose()["services"]["daemon"]["command"] == ["dagster-daemon", "run", "-w", workspace]

    gpu = _dockerfile("gpu-worker")
    assert re.search(r"^FROM nvidia/cuda:[\w.]+-runtime-ubuntu[\d.]+$", gpu, re.MULTILINE)
    assert "pip install '.[gpu]'" in gpu


def test_the_dagster_image_pins_the_versions_pyproject_pins():
    import tomllib

    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    pins = dict(d.split("==") for d in pyproject if "==" in d)
    image = dict(re.findall(r"\b(dagster[\w-]*)==([\d.]+)", _dockerfile("dagster")))
    assert set(image) == {"dagster", "dagster-webserver", "dagster-postgres", "dagster-aws"}
    assert image == {name: pins[name] for name in image}
