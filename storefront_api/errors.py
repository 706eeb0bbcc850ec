"""Every error a client sees is JSON: a stable `code` and a message for people.
Nothing else leaves the API: no stack trace, no framework default page.

Every request has an id (`X-Request-ID`, `RequestIds`): an error nobody expected is a 500
`internal_error` naming it, and one log line naming it too, never a traceback per request
(an attacker sending the same bad request a thousand times writes a thousand lines). The
OpenAPI document declares the errors each operation really answers, with this body
(`install_error_docs`).
"""

from __future__ import annotations

import logging
import re
import traceback
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path

from fastapi import FastAPI, Request, routing
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field
from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from photogen_pipelines.errors import (
    BadInput,
    Conflict,
    IllegalTransition,
    LimitReached,
    NotFound,
    PaymentRequired,
    PhotoGenError,
)
from photogen_pipelines.payments.stripe_payments import PaymentError

log = logging.getLogger("storefront_api")

# bad uploads that are about size get 413; the rest of BadInput is 422
SIZE_CODES = {"file_too_large", "image_too_large"}
# ids named in a request body that do not exist: the request is wrong (422), not the URL (404)
BODY_REFERENCE_CODES = {
    "unknown_style",
    "unknown_product",
    "unknown_tier",
    "upload_not_found",
    # customers and quotes: a plan, a kind, a quote named in the body; a tier not sold for credits
    "unknown_plan",
    "unknown_kind",
    "quote_not_found",
    "not_sold_for_credits",
    # packs: the pack a purchase names
    "unknown_pack",
}


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None, **details):
        super().__init__(message)
        self.status, self.code, self.message, self.headers, self.details = status, code, message, headers, details


def error_body(code: str, message: str, **details) -> dict:
    return {"code": code, "message": message, **({"details": details} if details else {})}


class ErrorOut(BaseModel):
    """The body of every error (4xx and 5xx)."""

    code: str = Field(description="stable and machine-readable, e.g. order_not_found: what a program checks")
    message: str = Field(description="for people; its wording may change")
    details: dict | None = Field(
        None, description="more, where there is more: `problems` (field, problem) for invalid_request, `request_id` for a 500"
    )


# -- request ids and the errors nobody expected ---------------------------------------------

REQUEST_ID_HEADER = "X-Request-ID"
# a load balancer's or client's own id is kept when it is a plain token; else one is made
_PLAIN_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
_OUR_CODE = tuple(str(Path(__file__).resolve().parents[1] / name) for name in ("storefront_api", "photogen_pipelines"))


def request_id(scope_or_request: Scope | Request) -> str:
    scope = scope_or_request.scope if isinstance(scope_or_request, Request) else scope_or_request
    return scope.get("state", {}).get("request_id", "-")


def _where(exc: BaseException) -> str:
    """Where it was raised: our deepest frame (the library frames below it are its callees)."""
    frames = traceback.extract_tb(exc.__traceback__) if exc.__traceback__ else []
    ours = [f for f in frames if f.filename.startswith(_OUR_CODE)]
    frame = (ours or frames or [None])[-1]
    if frame is None:
        return "unknown"
    return f"{Path(frame.filename).name}:{frame.lineno} in {frame.name}"


def log_unexpected(exc: BaseException, rid: str, method: str, path: str) -> None:
    """One line: the request, the exception's type, its first line (an SQL error goes on to
    the statement and its parameters: personal data) and where. The traceback at DEBUG."""
    first_line = (str(exc).strip().splitlines() or [""])[0][:200]
    log.error("unexpected error [%s] on %s %s: %s: %s (at %s)", rid, method, path, type(exc).__name__, first_line, _where(exc))
    log.debug("traceback of [%s]", rid, exc_info=exc)


def internal_error(rid: str) -> JSONResponse:
    body = error_body("internal_error", "something went wrong on our side; nothing was lost", request_id=rid)
    return JSONResponse(body, status_code=500, headers={REQUEST_ID_HEADER: rid})


class RequestIds:
    """ASGI middleware around the API's own: gives each request its id (`request.state.request_id`),
    sends it back in `X-Request-ID`, and answers what raised past every handler with a 500
    `internal_error` and one log line. Nothing is raised on to the server, which would log
    the whole traceback again."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = Headers(scope=scope).get(REQUEST_ID_HEADER, "")
        rid = given if _PLAIN_REQUEST_ID.match(given) else f"req_{uuid.uuid4().hex[:16]}"
        scope.setdefault("state", {})["request_id"] = rid
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = rid
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception as exc:
            log_unexpected(exc, rid, scope.get("method", ""), scope.get("path", ""))
            if not started:  # else the answer is under way (a stream, a background task): it ends there
                await internal_error(rid)(scope, receive, send)


def _status_of(exc: PhotoGenError) -> int:
    if isinstance(exc, BadInput):
        return 413 if exc.code in SIZE_CODES else 422
    if isinstance(exc, NotFound):
        return 422 if exc.code in BODY_REFERENCE_CODES else 404
    if isinstance(exc, IllegalTransition | Conflict):
        return 409
    if isinstance(exc, PaymentRequired):
        return 402
    if isinstance(exc, LimitReached):
        return 429
    if isinstance(exc, PaymentError):
        return 503 if exc.code != "bad_signature" else 400
    return 500


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(error_body(exc.code, exc.message, **exc.details), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(PhotoGenError)
    async def core_error(request: Request, exc: PhotoGenError) -> JSONResponse:
        status = _status_of(exc)
        if status >= 500:
            log.error("request failed [%s]: %s [%s]", request_id(request), exc, exc.code)
        headers = {"Retry-After": "30"} if status == 503 else None
        if status == 429 and "retry_after" in exc.details:
            headers = {"Retry-After": str(exc.details["retry_after"])}
        return JSONResponse(error_body(exc.code, str(exc), **exc.details), status_code=status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [{"field": ".".join(str(p) for p in e["loc"] if p != "body"), "problem": _problem(e)} for e in exc.errors()]
        summary = "; ".join(f"{p['field'] or 'body'}: {p['problem']}" for p in problems)
        return JSONResponse(error_body("invalid_request", summary, problems=problems), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # 400: FastAPI could not read the body at all (a JSON parse error is a 422)
        codes = {400: "malformed_body", 404: "not_found", 405: "method_not_allowed", 413: "request_too_large"}
        code = codes.get(exc.status_code, f"http_{exc.status_code}")
        return JSONResponse(error_body(code, str(exc.detail)), status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        # only what raises outside RequestIds (the CORS middleware) gets here
        rid = request_id(request)
        log_unexpected(exc, rid, request.method, request.url.path)
        return internal_error(rid)


def _problem(error: dict) -> str:
    if error["type"] == "extra_forbidden":
        return "not a field of this request (a typo?)"
    return error["msg"]


# -- the errors in the OpenAPI document -----------------------------------------------------

ERROR_SCHEMA = "Error"
# what each status means on this API, with its codes; a route's own `responses` say more
ERROR_STATUSES = {
    400: "malformed: the request cannot be read as what this operation takes",
    401: "missing_credentials or invalid_api_key: send a valid API key (or order token) as 'Authorization: Bearer …'",
    403: "api_key_required (an order token where only the API key will do), or api_key_from_browser (a key sent by a web page)",
    404: "the id in the path names nothing this caller may see (e.g. order_not_found), or it holds a control character",
    413: "body_too_large: the body is over the limit",
    422: "invalid_request (details.problems names each field: wrong type, unknown field, control character) "
    "or this operation's own code",
    429: "rate_limited: too many requests from this caller (or too many failed authentications from this address); "
    "Retry-After says when to retry",
}
RETRY_AFTER = {"Retry-After": {"description": "seconds to wait before retrying", "schema": {"type": "integer"}}}


def _calls(dependant) -> set[Callable]:
    found = {dependant.call} if dependant.call is not None else set()
    for sub in dependant.dependencies:
        found |= _calls(sub)
    return found


def _path_params(dependant) -> bool:
    return bool(dependant.path_params) or any(_path_params(sub) for sub in dependant.dependencies)


def _api_routes(app: FastAPI) -> Iterable[APIRoute]:
    """The app's operations, with what the routers they were included through added (their
    prefix, their dependencies)."""
    contexts = getattr(routing, "iter_route_contexts", None)  # FastAPI keeps included routers as such
    for route in contexts(app.routes) if contexts else app.routes:
        if isinstance(getattr(route, "original_route", route), APIRoute) and route.include_in_schema:
            yield route


def _statuses(route: APIRoute, authenticated: set[Callable], limited: set[Callable]) -> list[int]:
    """The errors a route can answer besides its own: from its dependencies, path and method."""
    calls = _calls(route.dependant)
    statuses = []
    if calls & authenticated:
        statuses += [401, 403]
    if calls & limited:
        statuses += [403, 429]  # every limited route refuses an API key from a browser (api/deps.py)
    if _path_params(route.dependant):
        statuses.append(404)
    if route.methods & {"POST", "PUT", "PATCH"}:
        statuses.append(413)
    return sorted(set(statuses))


def install_error_docs(app: FastAPI, authenticated: Iterable[Callable], limited: Iterable[Callable]) -> None:
    """Declare in the OpenAPI document the errors each operation answers, all with the `Error`
    body: those its dependencies and method bring (401/403 where it authenticates, 429 where
    it is rate-limited, 404 where the path names something, 413 where it takes a body), those
    its route declares (`responses={409: {"description": ...}}`), and FastAPI's 422 with the
    body the API really sends (not FastAPI's default one)."""
    authenticated, limited = set(authenticated), set(limited)
    build, declared = app.openapi, []

    def openapi() -> dict:
        schema = build()  # FastAPI's, cached until the routes change
        if any(schema is done for done in declared):
            return schema
        for route in _api_routes(app):
            for method in route.methods:
                operation = schema["paths"].get(route.path_format, {}).get(method.lower())
                if operation is not None:
                    _declare(operation, _statuses(route, authenticated, limited))
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components[ERROR_SCHEMA] = ErrorOut.model_json_schema(ref_template="#/components/schemas/{model}")
        for unused in ("HTTPValidationError", "ValidationError"):  # FastAPI's 422 body, which the API never sends
            components.pop(unused, None)
        declared[:] = [schema]
        return schema

    app.openapi = openapi


def _declare(operation: dict, statuses: list[int]) -> None:
    responses = operation.setdefault("responses", {})
    for status in statuses:
        responses.setdefault(str(status), {"description": ERROR_STATUSES[status]})
    error = {"application/json": {"schema": {"$ref": f"#/components/schemas/{ERROR_SCHEMA}"}}}
    for status, response in responses.items():
        if not status.isdigit() or int(status) < 400:
            continue
        if status == "422" or "content" not in response:
            response["content"] = error
        if status == "422" and response.get("description") == "Validation Error":
            response["description"] = ERROR_STATUSES[422]
        if status in ("429", "503"):
            response.setdefault("headers", RETRY_AFTER)
    operation["responses"] = dict(sorted(responses.items()))
