"""Dagster's own servers as `photogen serve` runs them, with a log a person can read.

`python -m photogen_pipelines.cli.dagster_logs dagster-daemon run …` (or `dagster-webserver
…`) runs that Dagster command unchanged, except for what it writes to its console log:

- no colour codes when the output is not a terminal (a log file, a pipe, a process
  manager's journal) or NO_COLOR is set: Dagster's console format ("colored") is built on
  coloredlogs' ColoredFormatter, which colours whatever the output is, so that class is
  swapped for a plain formatter of the same format in this process before Dagster
  configures its loggers (`photogen code-server` does the same for itself);
- the daemon's routine ticks once, not every few seconds: "Checking for new runs for
  sensor: X", "Sensor X skipped: …", "No run requests returned for X" and the run
  queue's "Priority sorting …" are logged when their text changes (a sensor that delivered
  3 webhooks, then 0 again) and at most hourly otherwise. Warnings and errors are never
  held back, and each tick's full log is still kept with the tick in the Dagster UI (the
  filter sits on the console loggers only).
"""

from __future__ import annotations

import logging
import os
import re
import sys
import time
from collections.abc import Callable, Sequence
from typing import IO

# the daemon's console loggers whose INFO lines repeat every tick (dagster/_daemon/daemon.py names them)
TICK_LOGGERS = ("dagster.daemon.SensorDaemon", "dagster.daemon.QueuedRunCoordinatorDaemon", "dagster.daemon.SchedulerDaemon")
# routine lines, each with what it is about: the same key logs again only when its text changes
ROUTINE_LINES = (
    re.compile(r"Checking for new runs for sensor: (?P<key>\S+)"),
    re.compile(r"Sensor (?P<key>\S+) skipped: "),
    re.compile(r"No run requests returned for (?P<key>\S+), skipping"),
    re.compile(r"Priority sorting and checking tag concurrency limits for queued runs"),
    re.compile(r"Not checking for any runs since no (?P<key>sensors|schedules) have been started"),
    re.compile(r"Checking for new runs for the following schedules"),
)
SECONDS = re.compile(r"\d+(?:\.\d+)?\s?(?:s|ms|seconds?)\b")  # a tick's own timing is not news
REMIND_SECONDS = 3600


class RepeatedTicks(logging.Filter):
    """Let a routine tick line through when its text differs from the last one let through
    for the same sensor (timings aside), or an hour after it; everything else, and anything
    at WARNING or above, always."""

    def __init__(self, remind_seconds: float = REMIND_SECONDS, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.remind_seconds = remind_seconds
        self.clock = clock
        self._shown: dict[tuple, tuple[str, float]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING:
            return True
        message = record.getMessage()
        for index, pattern in enumerate(ROUTINE_LINES):
            if match := pattern.match(message):
                key = (record.name, index, match.groupdict().get("key"))
                text, now = SECONDS.sub("… s", message), self.clock()
                shown = self._shown.get(key)
                if shown is not None and shown[0] == text and now - shown[1] < self.remind_seconds:
                    return False
                self._shown[key] = (text, now)
                return True
        return True


def quiet_repeated_ticks(names: Sequence[str] = TICK_LOGGERS) -> RepeatedTicks:
    """Install one RepeatedTicks on the daemon's tick loggers (a logger's filters see the
    records it logs and the ones a sensor's tick logger hands it), and return it."""
    ticks = RepeatedTicks()
    for name in names:
        logging.getLogger(name).addFilter(ticks)
    return ticks


def wants_colour(stream: IO | None = None) -> bool:
    """Colour only for a terminal, and never with NO_COLOR set (https://no-color.org)."""
    stream = sys.stdout if stream is None else stream
    if os.environ.get("NO_COLOR"):
        return False
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class PlainFormatter(logging.Formatter):
    """coloredlogs.ColoredFormatter's signature and format, without the colours."""

    def __init__(self, fmt=None, datefmt=None, style="%", level_styles=None, field_styles=None) -> None:  # noqa: ARG002
        super().__init__(fmt=fmt, datefmt=datefmt, style=style)


def plain_logs_unless_terminal(stream: IO | None = None) -> bool:
    """Where colour is not wanted (see wants_colour), make Dagster's "colored" console log
    format plain in this process; call it before Dagster configures its loggers. Returns
    whether it did."""
    if wants_colour(stream):
        return False
    import coloredlogs

    coloredlogs.ColoredFormatter = PlainFormatter  # the class Dagster's configure_loggers names
    return True


COMMANDS = {"dagster-daemon": ("dagster._daemon.cli", True), "dagster-webserver": ("dagster_webserver.cli", False)}


def main(argv: Sequence[str]) -> None:
    """`dagster-daemon ARGS` or `dagster-webserver ARGS`, with the console log above."""
    if not argv or argv[0] not in COMMANDS:
        sys.exit(f"usage: python -m {__spec__.name if __spec__ else __name__} {{{'|'.join(COMMANDS)}}} ARGS…")
    import importlib

    module_name, daemon = COMMANDS[argv[0]]
    plain_logs_unless_terminal()
    if daemon:
        quiet_repeated_ticks()
    sys.argv = [argv[0], *argv[1:]]  # what Dagster's own command would see
    importlib.import_module(module_name).main()


if __name__ == "__main__":
    main(sys.argv[1:])
