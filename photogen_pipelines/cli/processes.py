"""Supervise a few long-running child processes: each in its own process group, stopped
together on SIGINT/SIGTERM or when one of them dies, and never left behind."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import click

POLL_SECONDS = 0.2
PR_SET_PDEATHSIG = 1


def say(message: str) -> None:
    click.echo(f"[photogen] {message}", err=True)


def _libc_prctl() -> Callable | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True).prctl
    except (OSError, AttributeError):
        return None


def _child_setup(parent_pid: int, prctl: Callable | None) -> Callable[[], None]:
    def setup() -> None:  # runs in the child between fork and exec: keep it to system calls
        # A shell starts background jobs with SIGINT ignored, and children inherit that
        # (a Python child then ignores SIGINT, and dagster maps SIGTERM onto SIGINT's handler).
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        if prctl is not None:
            # if the supervisor is SIGKILLed, the kernel sends the child SIGTERM: no orphans
            prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
            if os.getppid() != parent_pid:  # the supervisor died before prctl took effect
                os.kill(os.getpid(), signal.SIGTERM)

    return setup


def describe_exit(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"ended by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"ended by signal {-returncode}"
    return f"exit code {returncode}"


@dataclass
class Child:
    name: str
    process: subprocess.Popen
    stop_signal: int = signal.SIGTERM  # what asks it to shut down cleanly

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def pgid(self) -> int:
        return self.process.pid  # start_new_session: the child leads its own group

    def group_alive(self) -> bool:
        """Whether any process of the child's group is still there (the leader reaped first)."""
        self.process.poll()
        try:
            os.killpg(self.pgid, 0)
            return True
        except ProcessLookupError:
            return False
        except PermissionError:  # a member changed its credentials: it is there
            return True

    def signal_group(self, signum: int) -> None:
        try:
            os.killpg(self.pgid, signum)
        except ProcessLookupError:
            pass


class Supervisor:
    """Start children with `start`, `wait` for a child's exit or a stop signal, `stop_all`.

    Use it as a context manager: SIGINT and SIGTERM then only request a stop (see
    `stop_signal`), and leaving the block kills every child group still alive.
    """

    def __init__(self, grace_seconds: float = 30) -> None:
        self.grace_seconds = grace_seconds
        self.children: list[Child] = []
        self.stop_signal: int | None = None  # the signal that asked us to stop
        self._stopping = False
        self._hurry = False  # a second signal while stopping: kill at once
        self._previous_handlers: dict[int, object] = {}
        self._prctl = _libc_prctl()

    # signals

    def _on_signal(self, signum: int, _frame) -> None:
        if self.stop_signal is None:
            self.stop_signal = signum
        elif self._stopping:
            self._hurry = True

    def install_signal_handlers(self) -> None:
        for signum in (signal.SIGINT, signal.SIGTERM):
            self._previous_handlers[signum] = signal.signal(signum, self._on_signal)

    def restore_signal_handlers(self) -> None:
        for signum, handler in self._previous_handlers.items():
            signal.signal(signum, handler)
        self._previous_handlers.clear()

    def __enter__(self) -> Supervisor:
        self.install_signal_handlers()
        return self

    def __exit__(self, *_exc) -> None:
        try:
            self.kill_all()
        finally:
            self.restore_signal_handlers()

    # children

    def start(
        self, name: str, command: Sequence[str], env: Mapping[str, str] | None = None, stop_signal: int = signal.SIGTERM
    ) -> Child:
        """Start `command` in its own session and process group, with default SIGINT/SIGTERM;
        `stop_all` asks it to stop with `stop_signal`."""
        process = subprocess.Popen(
            list(command),
            env=dict(os.environ if env is None else env),
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=_child_setup(os.getpid(), self._prctl),
        )
        child = Child(name, process, stop_signal)
        self.children.append(child)
        return child

    def exited(self) -> Child | None:
        """The first child whose main process has exited, if any."""
        for child in self.children:
            if child.process.poll() is not None:
                return child
        return None

    def wait(self, timeout: float | None = None) -> Child | None:
        """Block until a child exits (returned), a stop signal arrives or `timeout` passes (None)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if (child := self.exited()) is not None:
                return child
            if self.stop_signal is not None:
                return None
            if deadline is not None and time.monotonic() >= deadline:
                return None
            time.sleep(POLL_SECONDS if deadline is None else max(0.0, min(POLL_SECONDS, deadline - time.monotonic())))

    def stop_all(self, log: Callable[[str], None] | None = say) -> None:
        """Send every child's group its stop signal, wait up to `grace_seconds` for them to empty, SIGKILL the rest."""
        self._stopping = True
        running = [child for child in self.children if child.group_alive()]
        for child in running:
            child.signal_group(child.stop_signal)
        deadline = time.monotonic() + self.grace_seconds
        while running and time.monotonic() < deadline and not self._hurry:
            time.sleep(POLL_SECONDS)
            running = [child for child in running if child.group_alive()]
        for child in running:
            if log:
                log(f"{child.name} did not stop in time: killing it")
            child.signal_group(signal.SIGKILL)
        self._reap(timeout=10)

    def kill_all(self) -> None:
        """SIGKILL every child group still alive (the last resort: no orphans)."""
        for child in self.children:
            if child.group_alive():
                child.signal_group(signal.SIGKILL)
        self._reap(timeout=10)

    def _reap(self, timeout: float) -> None:
        """Collect the children's exit codes and wait for their groups to empty (a killed
        child's own children are reparented to init, which reaps them a moment later)."""
        deadline = time.monotonic() + timeout
        for child in self.children:
            try:
                child.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        while any(child.group_alive() for child in self.children) and time.monotonic() < deadline:
            time.sleep(0.05)
