"""The storefront API: `uvicorn storefront_api.main:app`. Versioned under /v1, docs at /docs
and /redoc (served offline, api/routes/docs.py)."""

from __future__ import annotations

import contextlib
import logging

from fastapi import Depends, FastAPI

from storefront_api.api.deps import RateLimits, limit_request, order_caller, storefront_caller
from storefront_api.api.routes import (
    catalog,
    customers,
    files,
    fulfilment,
    health,
    identities,
    jobs,
    metrics,
    orders,
    packs,
    quotes,
    shop_sessions,
    uploads,
    webhook_endpoints,
    webhooks,
)
from storefront_api.api.routes.docs import install_docs
from storefront_api.config import Settings, get_settings
from storefront_api.cors import allow_storefront_pages
from storefront_api.errors import RequestIds, install_error_docs, install_error_handlers
from storefront_api.limits import RequestLimits
from storefront_api.log_context import LogContext
from storefront_api.prometheus import install_metrics
from storefront_api.services import build_services
from storefront_api.shop import install_shop

log = logging.getLogger("storefront_api")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        services = build_services(settings)
        if settings.auto_migrate:
            services.database.migrate()
        if services.gateway is None:
            log.warning("payments are OFF: orders are marked paid on creation and nobody is charged")
        app.state.services = services
        yield

    app = FastAPI(
        title="PhotoGen storefront API",
        version="1.0.0",
        summary="Selfies in, print-ready art out: uploads, orders, proofs, approvals and print files.",
        lifespan=lifespan,
        docs_url=None,  # FastAPI's pages load Swagger UI and ReDoc from a CDN: install_docs serves them
        redoc_url=None,
    )
    app.state.rate_limits = RateLimits(settings)
    install_error_handlers(app)
    app.add_middleware(RequestLimits, settings=settings)
    app.add_middleware(LogContext)  # inside RequestIds: every line of a request names it and its order
    app.add_middleware(RequestIds)  # around the limits: their refusals carry the request id too
    install_metrics(app, settings)  # around the limits too: their refusals are counted
    allow_storefront_pages(app, settings)  # CORS, outside the request limits: their refusals carry it too
    install_docs(app)
    app.include_router(health.router)
    # per caller (API key, order token) when authenticated, else per client address (api/deps.py)
    limited = [Depends(limit_request)]
    prefix = settings.api_v1_prefix
    routers = (
        *(uploads, identities, jobs, catalog, orders, customers, packs, quotes),
        *(files, fulfilment, webhook_endpoints, shop_sessions),
    )
    for router in (module.router for module in routers):
        app.include_router(router, prefix=prefix, dependencies=limited)
    # the rejection chart's operator link (signed for good, no API key): limited per address
    app.include_router(metrics.router, prefix=prefix, dependencies=limited)
    app.include_router(webhooks.router, prefix=prefix)  # Stripe retries on 429: never rate-limit it
    install_error_docs(app, authenticated=[storefront_caller, order_caller], limited=[limit_request])
    # the customer's pages under /shop/ (storefront_api/shop/); outermost, so their headers go on every answer
    install_shop(app, settings)
    return app


app = create_app()
