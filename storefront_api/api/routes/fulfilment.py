"""The print provider's callbacks: a hint to read the order back, never taken as it stands."""

from fastapi import APIRouter, BackgroundTasks, Request, status
from starlette.concurrency import run_in_threadpool

from photogen_pipelines.fulfilment.providers.base import ProviderError
from photogen_pipelines.fulfilment.submission import fulfilment_of, read_back
from storefront_api.api.deps import ServicesDep
from storefront_api.errors import ApiError, log
from storefront_api.schemas import WebhookOut

router = APIRouter(prefix="/fulfilment", tags=["fulfilment"])


def _read_back(services, order_id: str) -> None:
    try:
        order = read_back(services.book, services.print_provider, order_id)
    except Exception as exc:  # the reconciliation sensor reads it back later
        log.warning("read-back of %s from the print provider deferred to reconciliation: %s", order_id, exc)
        return
    if order is not None:
        log.info("order %s is %s after the print provider's callback", order_id, order.state.value)


@router.post(
    "/{provider}/callbacks",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=WebhookOut,
    responses={
        400: {"description": "malformed_callback: not one of the provider's callbacks"},
        404: {"description": "unknown_provider: this shop does not fulfil through that provider"},
    },
)
async def provider_callback(provider: str, request: Request, services: ServicesDep, background: BackgroundTasks) -> WebhookOut:
    """Prodigi's or Printful's status callback. Callbacks are not signed (or not in a way
    every provider shares), so one only names an order: PhotoGen reads that order back
    from the provider's API and follows what the API says."""
    try:
        client = services.print_provider
    except ValueError:  # a provider named without its key: the shop's set-up, said once in the log
        log.error("PHOTOGEN_PRINT_PROVIDER is set but its API key is not: provider callbacks are refused")
        client = None
    if client is None or client.name != provider:
        raise ApiError(404, "unknown_provider", f"this shop does not fulfil through {provider!r}")
    body = await request.body()
    try:
        order_id, provider_order_id = client.callback_reference(request.headers, body)
    except ProviderError as exc:
        raise ApiError(400, "malformed_callback", f"not a {provider} callback: {exc}") from None
    record = await run_in_threadpool(fulfilment_of, services.database, order_id) if order_id else None
    if record is None or record.provider != provider:
        # answered 2xx so the provider stops retrying; nothing here names an order of ours
        return WebhookOut(received=True, outcome="ignored: no order of this shop")
    if provider_order_id and record.provider_order_id and provider_order_id != record.provider_order_id:
        return WebhookOut(received=True, outcome="ignored: another provider order")
    background.add_task(_read_back, services, record.order_id)
    return WebhookOut(received=True, outcome=f"order {record.order_id} will be read back from {provider}")
