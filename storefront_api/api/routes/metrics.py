"""Operators' charts: the rejection-metrics chart the `rejection_metrics` asset stores for
each UTC day, behind the link its Dagster metadata shows (`chart`).

The link is signed for that one day and never expires (photogen_pipelines/analytics/metrics.py
says why that is safe: rates and order counts per style, no customer data). It is a plain
link, not an API-key route: an operator opens it from Dagster's UI in a browser, where API
keys are refused (api/deps.py) and there is no operator login to check."""

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Path, Query
from fastapi.responses import Response

from photogen_pipelines.analytics.metrics import chart_signature_valid, metrics_key
from storefront_api.api.deps import ServicesDep
from storefront_api.errors import ApiError

# not in the storefront's API document: an operator's link, not something a shop calls
router = APIRouter(prefix="/metrics", tags=["metrics"], include_in_schema=False)

# the partition of today is rebuilt during the day, and yesterday's by the nightly run:
# a browser keeps it a minute; `private`: no shared cache keeps a signed answer
HEADERS = {"Cache-Control": "private, max-age=60", "Content-Disposition": "inline"}


@router.get("/rejections/{day}.png")
def rejection_chart(
    day: Annotated[date, Path(description="the UTC day, YYYY-MM-DD")],
    signature: Annotated[str, Query(max_length=100)],
    services: ServicesDep,
) -> Response:
    """The day's rejection-rate chart (PNG), as the last materialization of the day stored it."""
    if not chart_signature_valid(services.signer, day, signature):
        raise ApiError(403, "link_expired_or_invalid", "this link is not valid: open the chart from the asset's page in Dagster")
    key = metrics_key(day, "png")
    if not services.store.exists(key):
        raise ApiError(404, "file_not_found", f"no rejection chart for {day.isoformat()}: materialize rejection_metrics for it")
    return Response(services.store.get_bytes(key), media_type="image/png", headers=HEADERS)
