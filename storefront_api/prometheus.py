"""`GET /metrics`: what Prometheus scrapes from the API.

Two kinds of series, on one registry per app (tests and `photogen serve` may build several
apps in one process; the global registry would refuse the second):
- the API itself, through prometheus-fastapi-instrumentator: requests by route template,
  method and status, their latency and sizes (`photogen_api_http_*`);
- the pipeline as the orders database has it at the scrape (analytics/live.py): orders by
  state and the age of the oldest in each waiting state, today's identity-gate verdicts
  and rejection rate per style, refunds, print-provider errors, the webhook backlog.

`PHOTOGEN_METRICS_TOKEN` set: the endpoint wants it as `Authorization: Bearer …` (a 401
`metrics_token_required` otherwise), for a deployment whose /metrics is reachable from
outside the scraper's network. Unset: open, as Prometheus endpoints usually are.
"""

from __future__ import annotations

import hmac

from fastapi import FastAPI, Request
from fastapi.responses import Response
from fastapi.security.utils import get_authorization_scheme_param
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from prometheus_fastapi_instrumentator import Instrumentator

from photogen_pipelines.analytics.live import shop_now
from photogen_pipelines.clock import utc_now
from storefront_api.config import Settings
from storefront_api.errors import ApiError

METRICS_PATH = "/metrics"


class PipelineCollector(Collector):
    """The pipeline's series, read from the orders database at each scrape."""

    def __init__(self, app: FastAPI):
        self.app = app  # its services exist once the lifespan started

    def collect(self):
        services = getattr(self.app.state, "services", None)
        if services is None:
            return
        now = shop_now(services.database, utc_now())
        orders = GaugeMetricFamily("photogen_orders", "Orders in each state.", labels=["state"])
        for state, count in now.orders_by_state.items():
            orders.add_metric([state], count)
        oldest = GaugeMetricFamily(
            "photogen_order_oldest_seconds", "Seconds since the oldest order in each waiting state entered it.", labels=["state"]
        )
        for state, seconds in now.oldest_seconds_by_state.items():
            oldest.add_metric([state], seconds)
        verdicts = GaugeMetricFamily(
            "photogen_gate_verdicts_today",
            "The identity gate's verdicts since UTC midnight, per style.",
            labels=["style", "verdict"],
        )
        rate = GaugeMetricFamily(
            "photogen_rejection_rate_today", "Share of today's verdicts that rejected the order, per style.", labels=["style"]
        )
        for style, counts in now.verdicts_today.items():
            verdicts.add_metric([style, "passed"], counts.passed)
            verdicts.add_metric([style, "rejected"], counts.rejected)
            if counts.rejection_rate is not None:
                rate.add_metric([style], counts.rejection_rate)
        refunded = CounterMetricFamily("photogen_refunded_cents", "Money refunded to customers, in cents.", labels=["currency"])
        for currency, cents in now.refunded_cents.items():
            refunded.add_metric([currency], cents)
        refunded_orders = CounterMetricFamily("photogen_refunded_orders", "Orders given money or credits back.")
        refunded_orders.add_metric([], now.refunded_orders)
        credits = CounterMetricFamily("photogen_credits_refunded", "Credits given back to customers' wallets for orders.")
        credits.add_metric([], now.credits_refunded)
        provider = GaugeMetricFamily(
            "photogen_provider_errors", "Print-provider submissions whose last attempt failed.", labels=["provider"]
        )
        for name, count in now.provider_errors.items():
            provider.add_metric([name], count)
        backlog = GaugeMetricFamily("photogen_webhooks_pending", "Webhook deliveries owed to storefronts.")
        backlog.add_metric([], now.webhooks_pending)
        backlog_age = GaugeMetricFamily("photogen_webhook_oldest_pending_seconds", "Age of the oldest webhook delivery owed.")
        backlog_age.add_metric([], now.oldest_webhook_pending_seconds)
        yield from (orders, oldest, verdicts, rate, refunded, refunded_orders, credits, provider, backlog, backlog_age)


def install_metrics(app: FastAPI, settings: Settings) -> None:
    """Instrument every request and serve both kinds of series at /metrics."""
    registry = CollectorRegistry()
    instrumentator = Instrumentator(registry=registry, excluded_handlers=[METRICS_PATH], should_group_status_codes=False)
    instrumentator.instrument(app, metric_namespace="photogen", metric_subsystem="api")
    registry.register(PipelineCollector(app))
    token = settings.metrics_token

    @app.get(METRICS_PATH, include_in_schema=False)
    def metrics(request: Request) -> Response:
        if token:
            scheme, given = get_authorization_scheme_param(request.headers.get("Authorization"))
            if scheme.lower() != "bearer" or not hmac.compare_digest(given.encode(), token.encode()):
                raise ApiError(401, "metrics_token_required", "send PHOTOGEN_METRICS_TOKEN as 'Authorization: Bearer …'")
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
