"""What every `photogen` subcommand shares: the one-line errors and their exit codes,
JSON-or-text output, reading an image, the home folder option and its checks, and the
one stderr line that names the home a command used (and where it came from).

Subcommand modules import from here, never from `main`, so the CLI's modules import no
circle: `main` builds the group from them.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shlex
import shutil
import sys
from pathlib import Path

import click
import numpy as np

from photogen_pipelines.errors import BadInput, NotFound, PhotoGenError
from photogen_pipelines.settings import LocalPaths, PhotoGenSettings


class UsageFailure(click.ClickException):
    """Bad input: one line on stderr and exit code 2."""

    exit_code = 2

    def show(self, file=None) -> None:
        click.echo(f"photogen: error: {self.format_message()}", err=True)


LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}
UI_PROXY = "deploy/operators/dagster-ui.nginx.conf"


def refuse_an_open_ui(host: str, auth_in_front: bool, option: str, flag: str) -> None:
    """The Dagster UI has no login of its own and runs, cancels and wipes what it shows: it
    listens beyond this machine only where the operator says a login stands in front of it."""
    if host not in LOOPBACK_HOSTS and not auth_in_front:
        raise UsageFailure(
            f"the Dagster UI has no login: {option} {host} would open it to the network. Keep it on 127.0.0.1 "
            f"behind {UI_PROXY} (nginx with a login), or pass {flag} if your own proxy asks for one"
        )


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


def home_source(home: str | None) -> str:
    """Where the home folder came from, as the home line says it: --home, PHOTOGEN_HOME or the default."""
    if home:
        return "from --home"
    if os.environ.get("PHOTOGEN_HOME"):
        return "from PHOTOGEN_HOME"
    return "the default, ./.photogen here; --home or PHOTOGEN_HOME picks another"


_PASSWORD_IN_URL = re.compile(r"(?P<head>://[^/?#@:]*:)[^/?#]*@")
_PASSWORD_IN_QUERY = re.compile(r"(?P<head>[?&](?:password|passwd|pwd|secret|token)=)[^&#]*", re.I)


def redact_url(url: str) -> str:
    """A URL fit for a log line: its password (user:PASSWORD@, ?password=) replaced by ***."""
    url = _PASSWORD_IN_URL.sub(r"\g<head>***@", url)
    return _PASSWORD_IN_QUERY.sub(r"\g<head>***", url)


def _environment(name: str) -> str | None:
    """A PHOTOGEN_* setting as PhotoGenSettings reads it (names are not case-sensitive)."""
    for key, value in os.environ.items():
        if key.upper() == name and value:
            return value
    return None


ANNOUNCED = "photogen.home_announced"


def announce_home(home: str | None, paths: LocalPaths | None = None) -> None:
    """One line on stderr, once per command: the home folder the command uses and where that
    came from, and the orders database and artifact store when settings put them elsewhere.
    stderr, so that `KEY=$(photogen api-key create …)` and `--json` keep stdout to themselves."""
    context = click.get_current_context(silent=True)
    if context is not None:
        if context.meta.get(ANNOUNCED):
            return
        context.meta[ANNOUNCED] = True
    paths = paths or LocalPaths.resolve(home)
    source = home_source(home)
    if not paths.home.exists():
        source += "; not made yet"
    parts = [f"home {paths.home} ({source})"]
    for name, what in (("PHOTOGEN_DATABASE_URL", "orders database"), ("PHOTOGEN_ARTIFACTS_ROOT", "artifacts")):
        if value := _environment(name):
            parts.append(f"{what} {redact_url(value)} (from {name}, not the home's)")
    click.echo("[photogen] " + "; ".join(parts), err=True)


def local_home(home: str | None) -> LocalPaths:
    """The home folder, made (private) if missing; a folder that cannot be used is a
    UsageFailure that says why, not a traceback from deep inside whatever touched it first.
    Once it is usable, the command says on stderr which home it is (announce_home)."""
    paths = LocalPaths.resolve(home)
    try:
        _usable_folder(paths.home)
        paths.make_private()
    except OSError as exc:
        where = "--home" if home else ("PHOTOGEN_HOME" if os.environ.get("PHOTOGEN_HOME") else "the home folder")
        raise UsageFailure(f"{where} {paths.home} cannot hold PhotoGen's local state: {exc.strerror or exc}") from None
    announce_home(home, paths)
    return paths


def home_settings(home: str | None, make_home: bool = False) -> PhotoGenSettings:
    """The settings for a command's --home (else PHOTOGEN_HOME, else ./.photogen), with the
    home announced. `make_home`: make the home folder too, where the orders database is the
    home's own SQLite file (a database at PHOTOGEN_DATABASE_URL needs no home folder)."""
    settings = PhotoGenSettings(**({"home": home} if home else {}))
    if make_home and not settings.database_url:
        local_home(home)
    else:
        announce_home(home)
    return settings


def photogen_command() -> str:
    """How to run this same `photogen` from a shell, for a line a person pastes: `photogen`
    where PATH finds this one, else its absolute path (a venv that is not activated)."""
    mine = Path(sys.executable).with_name("photogen")
    if not mine.exists():
        return "photogen"
    found = shutil.which("photogen")
    try:
        if found and os.path.samefile(found, mine):
            return "photogen"
    except OSError:
        pass
    return shlex.quote(str(mine.absolute()))


def output_folder(path: str, option: str) -> Path:
    """A folder the command will write to, checked before any work is done."""
    folder = Path(path)
    try:
        _usable_folder(folder)
    except OSError as exc:
        raise UsageFailure(f"{option} {folder} cannot be written: {exc.strerror or exc}") from None
    return folder
