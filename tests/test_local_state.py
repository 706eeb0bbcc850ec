"""The home folder is its owner's alone (customers' orders, photos, API key hashes), and
the Dagster UI, which has no login, listens on loopback unless asked otherwise."""

from __future__ import annotations

import signal
import sqlite3
import stat
import subprocess
from pathlib import Path

import pytest

from tests.servers import free_port
from tests.test_serve import PHOTOGEN, REPO, _kill_group, _read, _serve_env, _tail, _wait_until, start_serve


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_home_an_older_version_left_readable_is_closed_and_new_files_are_private(tmp_path):
    home = tmp_path / "home"
    (home / "dagster" / "history").mkdir(parents=True)
    for folder in (home, home / "dagster", home / "dagster" / "history"):
        folder.chmod(0o755)
    old_runs = home / "dagster" / "runs.db"
    sqlite3.connect(old_runs).close()
    old_runs.chmod(0o644)

    result = subprocess.run(
        [str(PHOTOGEN), "api-key", "create", "--name", "shop", "--home", str(home)],
        cwd=REPO,
        env=_serve_env(home),
        capture_output=True,
        text=True,
        umask=0o022,  # as a shell usually starts it
    )
    assert result.returncode == 0, result.stderr
    assert _mode(home) == 0o700
    assert _mode(home / "dagster") == 0o700
    assert _mode(old_runs) == 0o600
    assert _mode(home / "orders.db") == 0o600  # made by this command


@pytest.mark.slow
def test_serve_keeps_the_ui_on_loopback_when_the_api_listens_everywhere_and_writes_private_files(tmp_path):
    home, log = tmp_path / "home", tmp_path / "serve.log"
    api_port, ui_port = free_port(), free_port()
    serve = start_serve(home, api_port, ui_port, log, "--host", "0.0.0.0", umask=0o022)
    try:
        _wait_until(lambda: "[photogen] ready" in _read(log), 180, "the ready line", serve, log)
        listening = _listening_addresses()
        assert listening.get(api_port) == "0.0.0.0"
        assert listening.get(ui_port) == "127.0.0.1"
        assert f"Dagster UI  http://127.0.0.1:{ui_port}" in _read(log)
        # the instance's databases, written by the webserver and the daemon, and the orders database
        written = [p for p in home.rglob("*") if p.is_file() and p.suffix == ".db"]
        assert home / "orders.db" in written and any(p.parent.parent == home / "dagster" for p in written), written
        assert {str(p): _mode(p) for p in written} == {str(p): 0o600 for p in written}
        assert {_mode(p) for p in home.rglob("*") if p.is_dir()} | {_mode(home)} == {0o700}
        serve.send_signal(signal.SIGTERM)
        assert serve.wait(timeout=60) == 0, _tail(log)
    finally:
        if serve.poll() is None:
            _kill_group(serve.pid)
            serve.wait(timeout=10)


def _listening_addresses() -> dict[int, str]:
    """Port → the IPv4 address a socket listens on, from the kernel's own table."""
    listening = {}
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[3] != "0A":  # TCP_LISTEN
            continue
        address, port = fields[1].split(":")
        octets = [str(int(address[i : i + 2], 16)) for i in (6, 4, 2, 0)]  # little-endian hex
        listening[int(port, 16)] = ".".join(octets)
    return listening
