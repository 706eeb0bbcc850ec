"""Logs an operator can search: one JSON object a line (structlog), with the order, run and
request they are about, and never a person's data.

Every line has `timestamp` (ISO 8601, UTC), `level`, `logger` and `event`, plus what the
code around it bound with `log_context` (the API binds `request_id` and `order_id`, an order's
Dagster step `run_id`, `job` and `order_id`). The standard library's loggers (ours, uvicorn's,
the libraries') come out the same way through structlog's ProcessorFormatter. A terminal
gets structlog's console lines instead; `PHOTOGEN_LOG_FORMAT=json|console` chooses, and
`PHOTOGEN_LOG_LEVEL` sets the level.

Personal data never reaches a line (`redact_personal_data`): keys that name it (email,
name, recipient, address, phone, embedding, photo or image bytes…) are masked, arrays and
bytes are never written, and e-mail addresses are masked inside every text.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from collections.abc import Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from typing import Any, TextIO

import structlog
from structlog.contextvars import bound_contextvars

from photogen_pipelines.errors import BadInput

FORMAT_ENV = "PHOTOGEN_LOG_FORMAT"
LEVEL_ENV = "PHOTOGEN_LOG_LEVEL"
FORMATS = ("json", "console")
MASK = "[redacted]"

# keys whose values are a person's data, whatever logs them (compared lower-case)
PERSONAL_KEYS = frozenset(
    {
        "email",
        "name",
        "full_name",
        "recipient",
        "address",
        "line1",
        "line2",
        "postal_code",
        "city",
        "phone",
        "customer_ref",
        "embedding",
        "mean_embedding",
        "face",
        "faces",
        "photo",
        "photos",
        "image",
        "images",
        "selfie",
        "pixels",
    }
)
PERSONAL_SUFFIXES = ("_email", "_phone", "_address", "_embedding", "_photo", "_image", "_bytes")
EMAIL = re.compile(r"[A-Za-z0-9._%+-]+(?:@|%40)[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
# what structlog's stdlib bridge keeps in an event dict on its way to the renderer
_INTERNAL = frozenset({"_record", "_from_structlog"})
# loggers whose INFO lines are routine at every start (alembic's plugins and contexts, once
# per migration check): their warnings only
QUIET_LOGGERS = ("alembic",)
# loggers with a console handler of their own: Dagster configures it in its servers and runs
# (cli/dagster_logs.py keeps it plain), so their lines are printed once, in Dagster's format
OWN_HANDLER_LOGGERS = ("dagster",)


def _personal(key: str) -> bool:
    key = key.lower()
    return key in PERSONAL_KEYS or key.endswith(PERSONAL_SUFFIXES)


def _clean(value: Any) -> Any:
    """`value` with e-mail addresses masked, mappings cleaned key by key, and nothing that
    could be a picture or an embedding (bytes, arrays, long lists of numbers)."""
    if isinstance(value, str):
        return EMAIL.sub("[email]", value)
    if isinstance(value, bytes | bytearray | memoryview):
        return f"[{len(value)} bytes]"
    if isinstance(value, Mapping):
        return {str(k): (MASK if _personal(str(k)) else _clean(v)) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = list(value)
        if len(items) > 16 and all(isinstance(item, int | float) for item in items):
            return f"[{len(items)} numbers]"
        return [_clean(item) for item in items]
    if hasattr(value, "shape") and hasattr(value, "dtype"):  # a numpy array or a tensor: never its values
        return f"[array {tuple(value.shape)}]"
    if isinstance(value, bool | int | float | type(None)):
        return value
    return EMAIL.sub("[email]", str(value))


def redact_personal_data(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """A structlog processor: mask what names a person (PERSONAL_KEYS), drop pixels and
    vectors, and mask e-mail addresses in every text, the message included."""
    for key in list(event_dict):
        if key in _INTERNAL:
            continue
        event_dict[key] = MASK if _personal(key) else _clean(event_dict[key])
    return event_dict


def _shared_processors() -> list:
    """What every line goes through, structlog's own and the standard library's alike."""
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.PositionalArgumentsFormatter(),
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        redact_personal_data,  # last: the message is formatted and the traceback is text by now
    ]


def _leading_keys(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> dict[str, Any]:
    """timestamp, level, logger and event first: a line reads the same way every time."""
    first = {key: event_dict.pop(key) for key in ("timestamp", "level", "logger", "event") if key in event_dict}
    return {**first, **event_dict}


def _wants_console(stream: TextIO | None) -> bool:
    try:
        return bool(stream is not None and stream.isatty())
    except (AttributeError, ValueError):
        return False


def log_format(stream: TextIO | None = None) -> str:
    """`PHOTOGEN_LOG_FORMAT` if set (json or console), else console on a terminal and json otherwise."""
    chosen = os.environ.get(FORMAT_ENV, "").strip().lower()
    if chosen and chosen not in FORMATS:
        raise BadInput(f"{FORMAT_ENV} must be json or console, not {chosen!r}", code="bad_log_format")
    return chosen or ("console" if _wants_console(sys.stderr if stream is None else stream) else "json")


def log_level(default: str = "INFO") -> int:
    name = os.environ.get(LEVEL_ENV, default).strip().upper()
    level = logging.getLevelName(name)
    if not isinstance(level, int):
        raise BadInput(f"{LEVEL_ENV} must be a level such as INFO or WARNING, not {name!r}", code="bad_log_level")
    return level


def configure_structlog() -> None:
    """structlog's own loggers hand their events to the standard library's handlers, which
    render them with the lines of every other logger (`formatter`)."""
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *_shared_processors(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )


def formatter(format: str | None = None, stream: TextIO | None = None) -> logging.Formatter:
    """The formatter of every handler: one JSON object a line, or console lines. Also the
    factory a dictConfig names (`dict_config`), so it configures structlog too."""
    configure_structlog()
    chosen = format or log_format(stream)
    if chosen == "console":
        renderer = structlog.dev.ConsoleRenderer(colors=_wants_console(sys.stderr if stream is None else stream))
    else:
        renderer = structlog.processors.JSONRenderer(serializer=lambda data, **_: json.dumps(data, default=str))
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_shared_processors(),
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, _leading_keys, renderer],
    )


class StderrHandler(logging.StreamHandler):
    """A handler writing to whatever sys.stderr is when a line is written (a command run
    inside a test or a CLI runner swaps it; a closed stream of an earlier one stays unused)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> TextIO:  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, _value: TextIO) -> None:
        pass


def handler(stream: TextIO | None = None, format: str | None = None) -> logging.Handler:
    """A handler with `formatter`: to `stream`, or to the current stderr."""
    made = logging.StreamHandler(stream) if stream is not None else StderrHandler()
    made.setFormatter(formatter(format, stream))
    made._photogen = True  # type: ignore[attr-defined]  # ours: replaced, never doubled, by configure_logging
    return made


def configure_logging(default_level: str = "INFO", stream: TextIO | None = None) -> logging.Handler:
    """Once at a process's start: the root logger writes every line through `handler`.
    Handlers others installed (a test runner's) stay; ours from an earlier call is replaced."""
    root = logging.getLogger()
    installed = handler(stream)
    for old in [h for h in root.handlers if getattr(h, "_photogen", False)]:
        root.removeHandler(old)
    root.addHandler(installed)
    root.setLevel(log_level(default_level))
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
    for name in OWN_HANDLER_LOGGERS:
        logging.getLogger(name).propagate = False
    logging.captureWarnings(True)
    return installed


def dict_config(default_level: str = "INFO") -> dict:
    """The same set-up as a logging dictConfig, for a server that configures logging itself:
    uvicorn's `--log-config` (the API's process under `photogen serve`). uvicorn's loggers
    hand their lines to the root's handler instead of their own."""
    level = logging.getLevelName(log_level(default_level))
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"photogen": {"()": f"{__name__}.formatter"}},
        "handlers": {"photogen": {"()": f"{__name__}.StderrHandler", "formatter": "photogen"}},
        "root": {"handlers": ["photogen"], "level": level},
        "loggers": {
            **{name: {"handlers": [], "propagate": True} for name in ("uvicorn", "uvicorn.error", "uvicorn.access")},
            **{name: {"level": "WARNING"} for name in QUIET_LOGGERS},
        },
    }


@contextmanager
def log_context(**values: Any) -> Iterator[None]:
    """Bind `values` (order_id, run_id, request_id…) to every line logged inside, in this
    thread or task; None values are left out."""
    with bound_contextvars(**{key: value for key, value in values.items() if value is not None}):
        yield


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    return structlog.get_logger(name)
