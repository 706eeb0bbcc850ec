"""The API's documentation pages, /docs (Swagger UI) and /redoc (ReDoc), with no internet:
their JavaScript, CSS and icon come from this API (/static/docs/), not from a CDN.

The files are those the `fastapi-offline` package ships (Swagger UI 5, ReDoc 2; pinned in
pyproject.toml); the pages are FastAPI's own, pointed at them.
"""

from __future__ import annotations

from importlib.resources import files

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

STATIC_URL = "/static/docs"
STATIC_FILES = ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js", "favicon.png")


def static_directory() -> str:
    directory = files("fastapi_offline") / "static"
    missing = [name for name in STATIC_FILES if not (directory / name).is_file()]
    if missing:  # a fastapi-offline that moved its files: fail at start, not on a customer's page
        raise RuntimeError(f"fastapi-offline has no {', '.join(missing)} in {directory}")
    return str(directory)


def install_docs(app: FastAPI, docs_url: str = "/docs", redoc_url: str = "/redoc") -> None:
    """Serve the documentation pages and their files; build the app with docs_url=None and
    redoc_url=None so FastAPI's CDN-backed pages are not there too."""
    app.mount(STATIC_URL, StaticFiles(directory=static_directory()), name="docs-static")

    def static(request: Request, name: str) -> str:
        return f"{request.scope.get('root_path', '')}{STATIC_URL}/{name}"

    def openapi_url(request: Request) -> str:
        return f"{request.scope.get('root_path', '')}{app.openapi_url}"

    @app.get(docs_url, include_in_schema=False)
    def swagger_ui(request: Request) -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url(request),
            title=f"{app.title} - Swagger UI",
            swagger_js_url=static(request, "swagger-ui-bundle.js"),
            swagger_css_url=static(request, "swagger-ui.css"),
            swagger_favicon_url=static(request, "favicon.png"),
            swagger_ui_parameters=app.swagger_ui_parameters,
        )

    @app.get(redoc_url, include_in_schema=False)
    def redoc(request: Request) -> HTMLResponse:
        return get_redoc_html(
            openapi_url=openapi_url(request),
            title=f"{app.title} - ReDoc",
            redoc_js_url=static(request, "redoc.standalone.js"),
            redoc_favicon_url=static(request, "favicon.png"),
            with_google_fonts=False,
        )
