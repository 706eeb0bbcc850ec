"""The API's access log (uvicorn's, through storefront_api/server.py's protocol, as `photogen
serve` runs it) never holds a credential: a signed file link's signature, the print
provider's 7-day link among them, and any token in a query string are written REDACTED."""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

import pytest
import requests

from photogen_pipelines.access.signing import Signer
from storefront_api.server import HttpProtocol, redacted
from tests.api_helpers import make_app, make_settings
from tests.servers import api_server


class Lines(logging.Handler):
    def __init__(self):
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture
def access_log():
    """Call it once the server is up (uvicorn configures its loggers as it starts, at
    WARNING in api_server): uvicorn's access logger at INFO, its lines kept."""
    logger = logging.getLogger("uvicorn.access")
    lines, level = Lines(), logger.level

    def capture() -> Lines:
        logger.addHandler(lines)
        logger.setLevel(logging.INFO)
        return lines

    yield capture
    logger.removeHandler(lines)
    logger.setLevel(level)


def test_signed_links_and_tokens_are_redacted_in_the_access_log(tmp_path, database_url, access_log):
    settings = make_settings(tmp_path, database_url)
    signer = Signer(settings.resolved_secret_key)
    with api_server(make_app(settings), http=HttpProtocol.for_settings(settings)) as base:
        lines = access_log()
        seven_days = signer.file_url(base, "orders/ord_1/print/print.png", settings.print_file_url_ttl_seconds)
        signature = dict(part.split("=") for part in urlsplit(seven_days).query.split("&"))["signature"]
        short = signer.file_url(base, "catalog/previews/ink_etching/1.png", 900)
        presigned = f"{base}/v1/files/orders/x.png?X-Amz-Credential=AKIAEXAMPLE&X-Amz-Signature=deadbeef&X-Amz-Date=20260101"
        for url in (seven_days, short, presigned, f"{base}/v1/catalog/styles?token=otk_secret&limit=2"):
            requests.get(url, timeout=10)
    logged = "\n".join(line for line in lines.lines if "/v1/" in line)
    assert logged.count("GET /v1/") == 4, lines.lines
    assert signature not in logged and "AKIAEXAMPLE" not in logged and "deadbeef" not in logged and "otk_secret" not in logged
    assert "/v1/files/orders/ord_1/print/print.png?expires=" in logged and "&signature=REDACTED" in logged
    assert "X-Amz-Date=20260101" in logged and "limit=2" in logged  # what is no credential stays readable


@pytest.mark.parametrize(
    ("target", "shown"),
    [
        ("/v1/files/a.png?expires=17&signature=abc", "/v1/files/a.png?expires=17&signature=REDACTED"),
        ("/v1/orders?limit=2&starting_after=ord_1", "/v1/orders?limit=2&starting_after=ord_1"),
        ("/x?access_token=t&api_key=k&Sig=s&code=c", "/x?access_token=REDACTED&api_key=REDACTED&Sig=REDACTED&code=REDACTED"),
        ("/x?sig%6Eature=s", "/x?sig%6Eature=REDACTED"),  # a name spelled with escapes
        ("/x", "/x"),
        ("/v1/customers/alice@example.com/export", "/v1/customers/REDACTED/export"),  # a person's reference
        ("/v1/customers/cus-1?orders_cursor=c", "/v1/customers/REDACTED?orders_cursor=c"),
    ],
)
def test_which_query_parameters_are_credentials(target, shown):
    assert redacted(target) == shown
