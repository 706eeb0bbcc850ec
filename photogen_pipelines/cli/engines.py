"""`photogen engines`: the warm engine service (Ray Serve) on this machine, and its status."""

from __future__ import annotations

import os
import signal
import time

import click

from photogen_pipelines.cli.common import UsageFailure, emit
from photogen_pipelines.cli.licences import environment_settings, require_commercial
from photogen_pipelines.cli.processes import say

DEFAULT_PORT = 8100
READY_TIMEOUT_SECONDS = 600  # diffusers on a GPU loads tens of seconds; on a CPU, more


@click.group()
def engines() -> None:
    """The warm engine service: models loaded once, batched across orders (Ray Serve)."""


@engines.command("serve")
@click.option(
    "--engine",
    type=click.Choice(["embedded", "diffusers", "flux2-klein", "qwen-edit"]),
    default="embedded",
    show_default=True,
    help="embedded: CPU models from the wheels; diffusers: SDXL + InstantID; flux2-klein, qwen-edit: reference-photo engines.",
)
@click.option("--models", "models_dir", type=click.Path(file_okay=False), help="The models folder (every engine but embedded).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Where the service listens.")
@click.option("--port", type=click.IntRange(1, 65535), default=DEFAULT_PORT, show_default=True)
@click.option("--min-replicas", type=click.IntRange(0), default=1, show_default=True, help="Replicas per engine, at least.")
@click.option("--max-replicas", type=click.IntRange(1), default=1, show_default=True, help="Replicas per engine, at most.")
@click.option("--gpus-per-replica", type=click.FloatRange(0), help="GPUs per style replica [diffusers: 0.8, embedded: 0].")
@click.option("--cpus", type=click.IntRange(1), help="CPUs the local Ray node offers [all of them].")
@click.option(
    "--address", envvar="RAY_ADDRESS", help="Join this Ray cluster (host:port, or auto) instead of starting a local one."
)
def serve(
    engine: str,
    models_dir: str | None,
    host: str,
    port: int,
    min_replicas: int,
    max_replicas: int,
    gpus_per_replica: float | None,
    cpus: int | None,
    address: str | None,
) -> None:
    """Run the engine service until Ctrl-C or SIGTERM; runs reach it at PHOTOGEN_ENGINE_URL."""
    from pydantic import ValidationError

    from photogen_pipelines.catalog import load_styles
    from photogen_pipelines.cli.serve import check_port_free
    from photogen_pipelines.licences import engine_models

    try:
        from engine_service.app import EngineServiceArgs
    except ImportError as exc:
        raise UsageFailure(f"the engine service is not installed ({exc.name}): pip install -e '.[service]'") from None
    if engine != "embedded" and not models_dir:
        raise UsageFailure(f"--engine {engine} needs --models DIR, the models folder")
    if models_dir:
        models_dir = os.path.abspath(models_dir)
        if not os.path.isdir(models_dir):
            raise UsageFailure(f"--models {models_dir}: no such folder")
    try:
        args = EngineServiceArgs(
            engine=engine,
            models_dir=models_dir,
            min_replicas=min_replicas,
            max_replicas=max_replicas,
            gpus_per_replica=gpus_per_replica,
        )
    except ValidationError as exc:
        raise UsageFailure(exc.errors()[0]["msg"].removeprefix("Value error, ")) from None
    # a paying shop's service (PHOTOGEN_COMMERCIAL_ONLY) refuses a non-commercial model before
    # Ray starts: the runs that call it check only their own faces (photogen_pipelines/licences.py)
    settings = environment_settings()
    require_commercial(lambda: engine_models(*args.engines(), catalog=load_styles(settings.styles_path)), settings)
    check_port_free(host, port)
    _run_service(args, host, port, cpus, address)


def _run_service(args, host: str, port: int, cpus: int | None, address: str | None) -> None:
    import ray
    from ray import serve

    from engine_service.app import APP_NAME, build_app

    say(f"starting the engine service ({args.engine} engine) on Ray")
    ray.init(
        # "local": a cluster of our own, even where a `ray start` left its address file behind
        address=address or "local",
        num_cpus=None if address else (cpus or os.cpu_count()),
        include_dashboard=False,
        namespace="photogen",
        logging_level="WARNING",
        configure_logging=True,
    )
    # after ray.init, which installs a SIGTERM handler of its own that ends the process at once
    stop: list[int] = []
    signal.signal(signal.SIGTERM, lambda signum, _frame: stop.append(signum))
    signal.signal(signal.SIGINT, lambda signum, _frame: stop.append(signum))
    try:
        # a local cluster will never grow: what does not fit now would wait for ever
        if not address and (why := args.unschedulable(ray.cluster_resources())):
            _refuse(why)
        if _serve_running():
            # Serve would keep its own HTTP port and take over the other service's application
            _refuse("Ray Serve already runs on this Ray cluster (another engine service?): one per cluster")
        try:
            serve.start(http_options={"host": host, "port": port})
            started = time.monotonic()
            serve.run(build_app(args.model_dump()), name=APP_NAME, route_prefix="/", blocking=False)
            shown = f"[{host}]" if ":" in host else host
            say(f"engine service http://{shown}:{port}  (models loaded in {time.monotonic() - started:.1f} s; pid {os.getpid()})")
            say(f"point runs at it: PHOTOGEN_ENGINE_URL=http://{shown}:{port}")
            while not stop:
                time.sleep(0.2)
            say("stopping the engine service")
        finally:
            serve.shutdown()  # only ever the Serve instance this command started
    finally:
        ray.shutdown()


def _refuse(why: str) -> None:
    click.echo(f"photogen: error: {why}", err=True)
    raise SystemExit(2)


def _serve_running() -> bool:
    import ray

    actors = ray.util.list_named_actors(all_namespaces=True)
    return any(actor["name"] == "SERVE_CONTROLLER_ACTOR" for actor in actors)


@engines.command("status")
@click.option("--url", envvar="PHOTOGEN_ENGINE_URL", default=f"http://127.0.0.1:{DEFAULT_PORT}", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def status(url: str, as_json: bool) -> None:
    """Replicas, model loads, requests, batch sizes and queue of a running engine service."""
    from photogen_pipelines.engines.remote import EngineService, EngineUnavailable

    service = EngineService(url, wait_seconds=0, timeout_seconds=10)
    try:
        report = service.get_json("/v1/status")
    except EngineUnavailable as exc:
        click.echo(f"photogen: error: {exc}", err=True)
        raise SystemExit(1) from None
    emit(as_json, report, _describe(url, report))


def _describe(url: str, report: dict) -> str:
    gateway = report.get("gateway", {})
    lines = [
        f"engine service {url}: {gateway.get('in_flight', 0)} requests in flight ({gateway.get('queued', 0)} queued), "
        f"{gateway.get('answered', 0)} answered"
    ]
    for name, deployment in sorted(report.get("deployments", {}).items()):
        states = ", ".join(f"{count} {state.lower()}" for state, count in deployment["replicas"].items()) or "none"
        lines.append(f"  {name}: {deployment['status'].lower()}; replicas {states}")
    for key, replica in sorted(report.get("replicas", {}).items()):
        batches = ", ".join(f"{size}×{count}" for size, count in replica["batch_sizes"].items()) or "none yet"
        lines.append(
            f"  {key}: {replica['model_loads']} model load(s), {replica['style_loads']} style load(s), "
            f"{replica['requests']} requests, batches {batches}, {replica['processing']} painting now"
        )
    return "\n".join(lines)
