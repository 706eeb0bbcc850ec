"""Every error a client sees is JSON: a stable `code` and a message for people.
Nothing else leaves the API: no stack trace, no framework default page."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from photogen_pipelines.errors import BadInput, Conflict, IllegalTransition, NotFound, PhotoGenError
from photogen_pipelines.payments.stripe_payments import PaymentError

log = logging.getLogger("storefront_api")

# bad uploads that are about size get 413; the rest of BadInput is 422
SIZE_CODES = {"file_too_large", "image_too_large"}
# ids named in a request body that do not exist: the request is wrong (422), not the URL (404)
BODY_REFERENCE_CODES = {"unknown_style", "unknown_product", "unknown_tier", "upload_not_found"}


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None, **details):
        super().__init__(message)
        self.status, self.code, self.message, self.headers, self.details = status, code, message, headers, details


def error_body(code: str, message: str, **details) -> dict:
    return {"code": code, "message": message, **({"details": details} if details else {})}


def _status_of(exc: PhotoGenError) -> int:
    if isinstance(exc, BadInput):
        return 413 if exc.code in SIZE_CODES else 422
    if isinstance(exc, NotFound):
        return 422 if exc.code in BODY_REFERENCE_CODES else 404
    if isinstance(exc, IllegalTransition | Conflict):
        return 409
    if isinstance(exc, PaymentError):
        return 503 if exc.code != "bad_signature" else 400
    return 500


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(error_body(exc.code, exc.message, **exc.details), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(PhotoGenError)
    async def core_error(_request: Request, exc: PhotoGenError) -> JSONResponse:
        status = _status_of(exc)
        if status >= 500:
            log.error("request failed: %s [%s]", exc, exc.code)
        headers = {"Retry-After": "30"} if status == 503 else None
        return JSONResponse(error_body(exc.code, str(exc)), status_code=status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [{"field": ".".join(str(p) for p in e["loc"] if p != "body"), "problem": e["msg"]} for e in exc.errors()]
        summary = "; ".join(f"{p['field'] or 'body'}: {p['problem']}" for p in problems)
        return JSONResponse(error_body("invalid_request", summary, problems=problems), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {404: "not_found", 405: "method_not_allowed", 413: "request_too_large"}
        code = codes.get(exc.status_code, f"http_{exc.status_code}")
        return JSONResponse(error_body(code, str(exc.detail)), status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return JSONResponse(error_body("internal_error", "something went wrong on our side; nothing was lost"), 500)
