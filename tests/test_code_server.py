"""`photogen code-server`: Dagster's code server, with runs forked from a process that imported
the definitions once instead of spawned as new interpreters (photogen_pipelines/cli/code_server.py).

What a run worker finds already imported is the whole difference, so that is what these tests
look at: a process started the way the code server starts runs reports its parent and whether
Dagster and the definitions were loaded before it ran a line. The whole path (the UI, the daemon,
orders' runs launched through this server) runs in tests/test_serve.py and test_dead_runs.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.servers import free_port, wait_until

PROBE = """
import os
import sys


def report(queue):
    queue.put({
        "pid": os.getpid(),
        "parent": os.getppid(),
        "definitions_loaded": "photogen_pipelines.definitions" in sys.modules,
        "dagster_loaded": "dagster" in sys.modules,
    })
"""

START_A_RUN_PROCESS = """
import json, os, sys
from photogen_pipelines.cli import code_server

if sys.argv[1] == "warm":
    code_server.start_runs_warm()
from dagster._grpc import server  # the module whose `multiprocessing` the server uses

import probe

context = server.multiprocessing.get_context("spawn")  # what DagsterApiServer asks for
queue = context.Queue()
process = context.Process(target=probe.report, args=(queue,))
process.start()
seen = queue.get(timeout=120)
process.join(60)
print(json.dumps({**seen, "server": os.getpid(), "method": context.get_start_method(), "exit": process.exitcode}))
"""


def _start_a_run_process(tmp_path: Path, how: str, **settings: str) -> dict:
    (tmp_path / "probe.py").write_text(PROBE)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(Path(__file__).resolve().parents[1])])}
    env.update(settings)
    done = subprocess.run(
        [sys.executable, "-c", START_A_RUN_PROCESS, how], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_warm_run_process_is_forked_with_the_definitions_already_imported(tmp_path):
    seen = _start_a_run_process(tmp_path, "warm")
    assert seen["method"] == "forkserver"
    assert seen["exit"] == 0
    assert seen["definitions_loaded"] and seen["dagster_loaded"]
    # its parent is the forkserver, not the server: a process of its own, with its own pid
    assert seen["parent"] != seen["server"] and seen["pid"] not in (seen["server"], seen["parent"])


@pytest.mark.slow
def test_definitions_that_fail_to_import_leave_the_error_to_each_run_not_the_forkserver(tmp_path):
    # a setting that does not parse makes importing the definitions raise a ValidationError,
    # not an ImportError: the forkserver must still fork runs, and each run meets the error itself
    seen = _start_a_run_process(tmp_path, "warm", PHOTOGEN_ENGINE="no-such-engine")
    assert seen["method"] == "forkserver" and seen["exit"] == 0
    assert not seen["definitions_loaded"]


def test_a_cold_run_process_starts_a_new_interpreter_as_dagster_does(tmp_path):
    seen = _start_a_run_process(tmp_path, "cold")
    assert seen["method"] == "spawn"
    assert seen["exit"] == 0
    assert not seen["definitions_loaded"] and not seen["dagster_loaded"]
    assert seen["parent"] == seen["server"]


@pytest.mark.slow
def test_importing_the_definitions_starts_no_thread_so_forking_after_it_is_safe():
    """The forkserver forks every run from a process that imported the definitions: a thread
    started at import (a pool, a client, a watcher) would be copied half-way through whatever it
    was doing. Everything that starts threads must start in the run, not at import."""
    script = (
        "import threading, photogen_pipelines.definitions; "
        "print(sorted(t.name for t in threading.enumerate() if t is not threading.main_thread()))"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "[]"


@pytest.mark.slow
def test_photogen_code_server_serves_the_definitions_and_stops_on_sigterm(tmp_path):
    from dagster._grpc.client import DagsterGrpcClient
    from dagster._serdes import deserialize_value

    port = free_port()
    dagster_home = tmp_path / "dagster"
    dagster_home.mkdir()
    env = {**os.environ, "DAGSTER_HOME": str(dagster_home), "PHOTOGEN_HOME": str(tmp_path / "home")}
    command = [str(Path(sys.executable).with_name("photogen")), "code-server", "-p", str(port)]
    log = tmp_path / "code.log"
    with log.open("w") as out:
        # started as a background job of a script starts it: SIGINT ignored, which Dagster's
        # SIGTERM handling inherits unless the server gives SIGINT its handler back
        server = subprocess.Popen(
            command,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
        )
    try:
        client = DagsterGrpcClient(port=port, host="127.0.0.1")

        def listed():
            assert server.poll() is None, log.read_text()[-3000:]
            try:
                return client.list_repositories()
            except Exception:  # noqa: BLE001 - not listening yet
                return None

        repositories = deserialize_value(wait_until(listed, 120, "the code server"))
        [symbol] = repositories.repository_symbols
        pointer = repositories.repository_code_pointer_dict[symbol.repository_name]
        assert (pointer.module, pointer.fn_name) == ("photogen_pipelines.definitions", "defs")
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            code = server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)
            raise AssertionError("the code server did not stop on SIGTERM: " + log.read_text()[-3000:]) from None
    assert code == 0, log.read_text()[-3000:]
