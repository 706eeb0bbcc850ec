"""`photogen serve`: the storefront API, the Dagster webserver and the Dagster daemon on
this machine, on the embedded defaults, supervised as one service."""

from __future__ import annotations

import json
import os
import shlex
import socket
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import click
import yaml

from photogen_pipelines.cli.common import (
    LOOPBACK_HOSTS,
    UsageFailure,
    home_option,
    local_home,
    photogen_command,
    refuse_an_open_ui,
)
from photogen_pipelines.cli.instance import fail_runs_left_behind, service_lock, use_local_instance
from photogen_pipelines.cli.licences import environment_settings, require_commercial_configuration
from photogen_pipelines.cli.processes import Child, Supervisor, describe_exit, say
from photogen_pipelines.logs import dict_config
from photogen_pipelines.settings import LocalPaths, PhotoGenSettings

READY_TIMEOUT_SECONDS = 120
STOP_GRACE_SECONDS = 30
API_APP = "storefront_api.main:app"
ENGINE_HOST = "127.0.0.1"  # the local engine service is for this machine's runs only
CODE_HOST = "127.0.0.1"  # the code server answers the UI and the daemon on this machine only
# the name `dagster dev -m` (photogen ui) gives the location too: runs, sensor states and
# schedules of one home stay under one location whichever command served them
LOCATION_NAME = "photogen_pipelines.definitions"


def check_port_free(host: str, port: int) -> None:
    """Bind the address the way the servers will (SO_REUSEADDR, as uvicorn does), then let go."""
    try:
        family, kind, proto, _name, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as exc:
        raise UsageFailure(f"cannot resolve host {host!r}: {exc.strerror}") from None
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as exc:
            raise UsageFailure(f"port {port} on {host} is not free: {exc.strerror}") from None


def _write_workspace(code_port: int) -> Path:
    """The workspace the UI and the daemon load: the code server, under the location name
    runs already in the instance were made with (`dagster-webserver --grpc-port` would name
    it after the port, which changes at every start, and a retried run could not find its code)."""
    location = {"grpc_server": {"host": CODE_HOST, "port": code_port, "location_name": LOCATION_NAME}}
    path = Path(os.environ["DAGSTER_HOME"]) / "workspace.serve.yaml"
    path.write_text(yaml.safe_dump({"load_from": [location]}))
    return path


def api_command(host: str, port: int, log_config: Path) -> list[str]:
    """The storefront API's process: uvicorn with the API's protocol (JSON answers and head
    limits, server.py) and our logging (one JSON object a line, photogen_pipelines/logs.py)."""
    command = [sys.executable, "-m", "uvicorn", API_APP, "--host", host, "--port", str(port)]
    return [*command, "--http", "storefront_api.server:HttpProtocol", "--log-config", str(log_config)]


def _write_api_log_config(folder: Path) -> Path:
    """uvicorn configures logging itself: our set-up as the dictConfig it reads."""
    path = folder / "logging.api.json"
    path.write_text(json.dumps(dict_config()))
    return path


def free_loopback_port() -> int:
    with socket.socket() as sock:
        sock.bind((CODE_HOST, 0))
        return sock.getsockname()[1]


def _probe_host(host: str) -> str:
    """Where a client on this machine reaches a server bound to `host`, for a URL."""
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    return f"[{host}]" if ":" in host else host


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


LOCATIONS_QUERY = """{ workspaceOrError { ... on Workspace { locationEntries { name
  locationOrLoadError { __typename ... on PythonError { message } } } } } }"""


def code_location_errors(webserver_url: str) -> list[str]:
    """The webserver's code locations that failed to load, one line each (none if it cannot tell)."""
    request = urllib.request.Request(
        f"{webserver_url}/graphql",
        data=json.dumps({"query": LOCATIONS_QUERY}).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            entries = json.load(response)["data"]["workspaceOrError"]["locationEntries"]
    except (urllib.error.URLError, OSError, ValueError, KeyError, TypeError):
        return []
    errors = []
    for entry in entries:
        error = entry.get("locationOrLoadError") or {}
        if error.get("__typename") == "PythonError":
            message = (error.get("message") or "").strip().splitlines()
            errors.append(f"{entry['name']}: {message[0] if message else 'error'}")
    return errors


@dataclass(frozen=True)
class DagsterCommands:
    webserver: list[str]
    daemon: list[str]
    code_server: list[str]


# Dagster's webserver and daemon, run through the module that keeps their console log
# readable: no colour codes in a file, the daemon's routine ticks once (cli/dagster_logs.py)
DAGSTER_LOGS = [sys.executable, "-m", "photogen_pipelines.cli.dagster_logs"]


def dagster_commands(photogen: str, cold_runs: bool) -> DagsterCommands:
    for name in ("dagster-webserver", "dagster-daemon"):
        executable(name)  # installed, or a one-line error before anything starts
    code_server = [photogen, "code-server", *(["--cold-runs"] if cold_runs else [])]
    return DagsterCommands([*DAGSTER_LOGS, "dagster-webserver"], [*DAGSTER_LOGS, "dagster-daemon"], code_server)


def key_command(paths: LocalPaths, settings: PhotoGenSettings) -> str:
    """The `photogen api-key create` line to paste for a key this service accepts: the
    same home (and, where orders are not in the home, the same PHOTOGEN_DATABASE_URL)."""
    line = f'PHOTOGEN_HOME={shlex.quote(str(paths.home))} {photogen_command()} api-key create --name "my shop"'
    if settings.database_url:
        line += "  (with this same PHOTOGEN_DATABASE_URL set)"
    return line


def executable(name: str) -> str:
    path = Path(sys.executable).with_name(name)
    if not path.exists():
        raise UsageFailure(f"the {name} command is not installed in this environment ({path})")
    return str(path)


def _migrate_orders_database(database_url: str) -> None:
    from photogen_pipelines.db.database import open_database

    open_database(database_url).migrate()


def _create_dagster_storage() -> None:
    """Make the instance's SQLite databases now: a webserver and a daemon that both find
    them missing create them at once and stamp two Alembic heads, and then neither loads."""
    import dagster as dg

    with dg.DagsterInstance.get():
        pass


def _prepare(what: str, step, *args) -> None:
    try:
        step(*args)
    except Exception as exc:  # one line, not a traceback, like every other photogen error
        click.echo(f"photogen: error: cannot {what}: {type(exc).__name__}: {exc}", err=True)
        sys.exit(1)


def listens(host: str, port: int) -> bool:
    """Whether a server accepts connections at host:port (the code server speaks gRPC, not HTTP)."""
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def _wait_until_ready(supervisor: Supervisor, checks: dict[str, Callable[[], bool]]) -> Child | None:
    """Run the readiness checks until all pass (warning once if that takes over
    READY_TIMEOUT_SECONDS); stop early on a child's exit (returned) or a stop signal."""
    pending = dict(checks)
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    warned = False
    while True:
        pending = {name: ready for name, ready in pending.items() if not ready()}
        if not pending:
            return None
        if (child := supervisor.wait(timeout=1)) is not None or supervisor.stop_signal is not None:
            return child
        if not warned and time.monotonic() >= deadline:
            say(f"warning: {' and '.join(pending)} not answering after {READY_TIMEOUT_SECONDS} s; still waiting")
            warned = True


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Where the storefront API listens.")
@click.option(
    "--ui-host",
    default="127.0.0.1",
    show_default=True,
    help="Where the Dagster UI listens. It has no login: beyond loopback only with --ui-auth-in-front.",
)
@click.option(
    "--ui-auth-in-front",
    is_flag=True,
    help="A proxy that asks for a login stands in front of --ui-host (deploy/operators/dagster-ui.nginx.conf).",
)
@click.option("--api-port", type=click.IntRange(1, 65535), default=8000, show_default=True, help="The storefront API's port.")
@click.option("--ui-port", type=click.IntRange(1, 65535), default=3000, show_default=True, help="The Dagster UI's port.")
@click.option(
    "--engine-service",
    is_flag=True,
    help="Also run the warm engine service (photogen engines serve) on loopback: runs call it instead of loading models.",
)
@click.option("--engine-port", type=click.IntRange(1, 65535), default=8100, show_default=True, help="The engine service's port.")
@click.option(
    "--cold-runs",
    is_flag=True,
    help="Start every run as a new process importing the code (Dagster's default), not forked warm.",
)
@home_option
def serve(
    host: str,
    ui_host: str,
    ui_auth_in_front: bool,
    api_port: int,
    ui_port: int,
    engine_service: bool,
    engine_port: int,
    cold_runs: bool,
    home: str | None,
) -> None:
    """Run the whole service: storefront API, Dagster UI and Dagster daemon; Ctrl-C or SIGTERM stops it."""
    settings = environment_settings()
    # first, before a port is probed or a folder made: a paying shop (PHOTOGEN_COMMERCIAL_ONLY)
    # never serves on a model it may not use. With --engine-service the local service runs
    # PHOTOGEN_ENGINE's models for the runs, so they are checked here as if in the run
    require_commercial_configuration(settings.model_copy(update={"engine_url": None}) if engine_service else settings)
    refuse_an_open_ui(ui_host, ui_auth_in_front, "--ui-host", "--ui-auth-in-front")
    ports = {"--api-port": api_port, "--ui-port": ui_port, **({"--engine-port": engine_port} if engine_service else {})}
    if len(set(ports.values())) < len(ports):
        raise UsageFailure(f"two of {', '.join(ports)} are the same port ({', '.join(map(str, ports.values()))})")
    check_port_free(host, api_port)
    check_port_free(ui_host, ui_port)
    if engine_service:
        check_port_free(ENGINE_HOST, engine_port)
    photogen = executable("photogen")
    dagster = dagster_commands(photogen, cold_runs)
    engines = [photogen, "engines", "serve", "--host", ENGINE_HOST, "--port", str(engine_port)]

    paths = local_home(home)
    os.environ["PHOTOGEN_HOME"] = str(paths.home)
    use_local_instance(paths)
    with service_lock(paths, "photogen serve"):
        _serve(paths, host, ui_host, api_port, ui_port, dagster, engines if engine_service else None)


# the engines that run from a models folder in the service's replicas (the others are the
# embedded CPU engine, or serverless and need no service)
MODELS_FOLDER_ENGINES = ("diffusers", "flux2-klein", "qwen-edit")


def _engine_service_command(command: list[str], settings: PhotoGenSettings) -> list[str]:
    """`photogen engines serve` for the engine PHOTOGEN_ENGINE names."""
    if settings.engine in MODELS_FOLDER_ENGINES:
        if not settings.models_dir:
            raise UsageFailure(f"PHOTOGEN_ENGINE={settings.engine} needs PHOTOGEN_MODELS_DIR, the models folder")
        return [*command, "--engine", settings.engine, "--models", settings.models_dir]
    return command


def _serve(
    paths: LocalPaths,
    host: str,
    ui_host: str,
    api_port: int,
    ui_port: int,
    dagster: DagsterCommands,
    engines: list[str] | None,
) -> None:
    settings = PhotoGenSettings()  # after PHOTOGEN_HOME is set
    if engines:
        engines = _engine_service_command(engines, settings)
    _prepare("migrate the orders database", _migrate_orders_database, settings.resolved_database_url)
    _prepare("create the Dagster instance's storage", _create_dagster_storage)
    _prepare("check for runs left behind", fail_runs_left_behind, say)

    say(f"DAGSTER_HOME  {os.environ['DAGSTER_HOME']}")  # the home itself: the line `local_home` printed
    if settings.payments_on:
        say("payments are ON (Stripe)")
        if not settings.stripe_webhook_secret:
            say("warning: PHOTOGEN_STRIPE_WEBHOOK_SECRET is not set: Stripe's webhooks cannot be verified")
    else:
        say(
            "payments are OFF: orders are marked paid on creation and nobody is charged "
            "(set PHOTOGEN_STRIPE_API_KEY and PHOTOGEN_STRIPE_WEBHOOK_SECRET to turn them on)"
        )

    if settings.webhook_allow_private:
        # the API, the code server and the daemon inherit it: registration and delivery alike
        say("warning: PHOTOGEN_WEBHOOK_ALLOW_PRIVATE is on: webhooks may go to this machine and its private network")
    if ui_host not in LOOPBACK_HOSTS:
        say(f"the Dagster UI listens on {ui_host}, behind the login you put in front of it (--ui-auth-in-front)")
    probe, ui_probe = _probe_host(host), _probe_host(ui_host)
    shown, ui_shown = (f"[{h}]" if ":" in h else h for h in (host, ui_host))
    with Supervisor(grace_seconds=STOP_GRACE_SECONDS) as supervisor:
        crashed: Child | None = None
        if engines and supervisor.stop_signal is None:
            engine_url = f"http://{ENGINE_HOST}:{engines[engines.index('--port') + 1]}"
            if settings.engine_url and settings.engine_url != engine_url:
                say(f"warning: PHOTOGEN_ENGINE_URL {settings.engine_url} is replaced by the local engine service")
            service = supervisor.start("engine service", engines)
            # every process started after this, and every run they launch, calls the service
            os.environ["PHOTOGEN_ENGINE_URL"] = engine_url
            say(f"engine service  {engine_url}  ({settings.engine} engine, Ray Serve; pid {service.pid})")
            # ready before the rest start: Ray and the models loading beside the Dagster code
            # servers starting would slow both (on a small machine past the code server's timeout)
            crashed = _wait_until_ready(supervisor, {"engine service": lambda: answers(f"{engine_url}/v1/engines")})
        if crashed is None and supervisor.stop_signal is None:
            # one code server for the UI and the daemon: it imports the definitions once
            # (not once per process) and starts runs warm (cli/code_server.py)
            code_port = free_loopback_port()
            code_command = [*dagster.code_server, "-h", CODE_HOST, "-p", str(code_port), "--location-name", LOCATION_NAME]
            code = supervisor.start("Dagster code server", code_command)
            starts = "cold" if "--cold-runs" in dagster.code_server else "warm"
            say(f"Dagster code server  {CODE_HOST}:{code_port}  (runs start {starts}; pid {code.pid})")
            crashed = _wait_until_ready(supervisor, {"Dagster code server": lambda: listens(CODE_HOST, code_port)})
        if crashed is None and supervisor.stop_signal is None:
            grpc = ["-w", str(_write_workspace(code_port))]
            log_config = _write_api_log_config(Path(os.environ["DAGSTER_HOME"]))
            api = supervisor.start("storefront API", api_command(host, api_port, log_config))
            say(f"storefront API  http://{shown}:{api_port}  (docs: /docs, pid {api.pid})")
            ui = supervisor.start("Dagster UI", [*dagster.webserver, *grpc, "-h", ui_host, "-p", str(ui_port)])
            say(f"Dagster UI  http://{ui_shown}:{ui_port}  (pid {ui.pid})")
            run = supervisor.start("Dagster daemon", [*dagster.daemon, "run", *grpc])
            say(f"Dagster daemon (sensors, run queue)  pid {run.pid}  (a routine sensor tick is logged when its message changes)")

            crashed = _wait_until_ready(
                supervisor,
                {
                    "storefront API": lambda: answers(f"http://{probe}:{api_port}/healthz"),
                    "Dagster UI": lambda: answers(f"http://{ui_probe}:{ui_port}/server_info"),
                },
            )
            if crashed is None and supervisor.stop_signal is None:
                for error in code_location_errors(f"http://{ui_probe}:{ui_port}"):
                    say(f"warning: the Dagster code location did not load ({error}); see the log above")
                say(f"create a storefront key: {key_command(paths, settings)}")
                say("ready (Ctrl-C or SIGTERM stops everything)")
                crashed = supervisor.wait()

        if crashed is not None:
            say(f"{crashed.name} (pid {crashed.pid}) stopped on its own, {describe_exit(crashed.process.returncode)}")
            say("stopping the others")
        elif supervisor.children:
            say(f"stopping {', '.join(child.name for child in supervisor.children)}")
        supervisor.stop_all()
        for child in supervisor.children:
            if child is not crashed and child.process.returncode is not None:
                say(f"{child.name} stopped ({describe_exit(child.process.returncode)})")
    if crashed is not None:
        sys.exit(1)
