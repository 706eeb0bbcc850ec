"""What every `photogen` subcommand shares: the one-line errors and their exit codes,
JSON-or-text output, reading an image, the home folder option and its checks.

Subcommand modules import from here, never from `main`, so the CLI's modules import no
circle: `main` builds the group from them.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from pathlib import Path

import click
import numpy as np

from photogen_pipelines.errors import BadInput, NotFound, PhotoGenError
from photogen_pipelines.settings import LocalPaths


class UsageFailure(click.ClickException):
    """Bad input: one line on stderr and exit code 2."""

    exit_code = 2

    def show(self, file=None) -> None:
        click.echo(f"photogen: error: {self.format_message()}", err=True)


def clear_errors(command):
    """Core errors become one line and the documented exit code, never a traceback."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except (BadInput, NotFound) as exc:
            raise UsageFailure(f"{exc} [{exc.code}]") from None
        except PhotoGenError as exc:
            click.echo(f"photogen: error: {exc} [{exc.code}]", err=True)
            sys.exit(1)

    return wrapper


def emit(as_json: bool, payload, text: str) -> None:
    click.echo(json.dumps(payload, indent=2) if as_json else text)


def read_image_file(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise BadInput(f"cannot read {path}: {exc.strerror}", code="unreadable_file") from None


def image_array(path: str) -> np.ndarray:
    from photogen_pipelines.imaging.images import decode_upload

    return np.asarray(decode_upload(read_image_file(path)))


home_option = click.option(
    "--home", type=click.Path(file_okay=False), default=None, help="Local state (default: $PHOTOGEN_HOME or ./.photogen)."
)


def _usable_folder(path: Path) -> None:
    """Make `path` if missing and prove it takes a file: OSError if not."""
    path.mkdir(parents=True, exist_ok=True)
    probe = path / ".photogen-write-check"
    probe.touch()
    probe.unlink()


def local_home(home: str | None) -> LocalPaths:
    """The home folder, made (private) if missing; a folder that cannot be used is a
    UsageFailure that says why, not a traceback from deep inside whatever touched it first."""
    paths = LocalPaths.resolve(home)
    try:
        _usable_folder(paths.home)
        paths.make_private()
    except OSError as exc:
        where = "--home" if home else ("PHOTOGEN_HOME" if os.environ.get("PHOTOGEN_HOME") else "the home folder")
        raise UsageFailure(f"{where} {paths.home} cannot hold PhotoGen's local state: {exc.strerror or exc}") from None
    return paths


def output_folder(path: str, option: str) -> Path:
    """A folder the command will write to, checked before any work is done."""
    folder = Path(path)
    try:
        _usable_folder(folder)
    except OSError as exc:
        raise UsageFailure(f"{option} {folder} cannot be written: {exc.strerror or exc}") from None
    return folder
