"""Fulfilment: the delivered print file goes to the shop's print provider."""

import dagster as dg

from assets._helpers import OrderGroup, order_asset
from assets.partitions import approved_orders_partitions
from assets.printing import delivery
from photogen_pipelines.fulfilment.providers.base import ProviderError
from photogen_pipelines.fulfilment.submission import NotFulfillable, fulfilment_of
from photogen_pipelines.orders.states import FULFILMENT, OrderState
from resources import ArtifactStorage, CatalogResource, OrdersDatabase
from resources.fulfilment import PrintProviderResource

# In the `printing` group: a ready order goes to the provider; one the provider has already
# is read back from the orders database (the submission is idempotent: never a second
# provider order). Any other order is not for the printer.
SUBMITTING = OrderGroup("printing", approved_orders_partitions, runs_in=frozenset({OrderState.READY, *FULFILMENT}))


@order_asset(
    SUBMITTING,
    {"photogen"},
    deps=[delivery],
    # a provider that is down for a while: the run retries, then the reconciliation sensor does
    retry_policy=dg.RetryPolicy(max_retries=3, delay=10.0, backoff=dg.Backoff.EXPONENTIAL),
)
def fulfilment(
    context: dg.AssetExecutionContext,
    orders: OrdersDatabase,
    storage: ArtifactStorage,
    catalog: CatalogResource,
    print_provider: PrintProviderResource,
) -> dg.MaterializeResult:
    """The order submitted to the shop's print provider, with the provider's order id and status."""
    order_id = context.partition_key
    book, store = orders.book(), storage.store()
    if not print_provider.enabled:
        context.log.info(f"fulfilment: no print provider configured; order {order_id} waits at ready for download")
        return dg.MaterializeResult(
            metadata={"provider": dg.TextMetadataValue("none"), "status": dg.TextMetadataValue("not_sent")}
        )
    try:
        result = print_provider.submit(book, store, catalog.products(), order_id)
    except NotFulfillable as exc:
        raise dg.Failure(description=str(exc), metadata={"code": exc.code}, allow_retries=False) from None
    except ProviderError as exc:
        # retried by the policy; no personal data in the message (the adapters keep it out)
        raise dg.Failure(description=f"{print_provider.provider} unavailable: {exc}", metadata={"code": exc.code}) from None
    if result.status == "refused":
        raise dg.Failure(description=result.reason, metadata={"code": "provider_refused"}, allow_retries=False)
    record = fulfilment_of(orders.database(), order_id)
    # ids and statuses only: the recipient never reaches Dagster's metadata, logs or event log
    metadata = {
        "provider": dg.TextMetadataValue(print_provider.provider),
        "status": dg.TextMetadataValue(record.status.value if record else result.status),
        "order_state": dg.TextMetadataValue(book.get(order_id).state.value),
    }
    if record and record.provider_order_id:
        metadata["provider_order_id"] = dg.TextMetadataValue(record.provider_order_id)
    context.log.info(
        f"fulfilment: order {order_id} {result.status} at {print_provider.provider}"
        + (f" ({result.reason})" if result.reason else "")
    )
    return dg.MaterializeResult(metadata=metadata)


@dg.asset_check(asset=fulfilment, partitions_def=approved_orders_partitions)
def provider_accepted(
    context: dg.AssetCheckExecutionContext, orders: OrdersDatabase, print_provider: PrintProviderResource
) -> dg.AssetCheckResult:
    """The print provider holds the order under its own id, read back from the orders
    database (or no provider is configured and the file waits for download)."""
    record = fulfilment_of(orders.database(), context.partition_key)
    if not print_provider.enabled:
        return dg.AssetCheckResult(passed=True, metadata={"provider": "none"}, description="no print provider configured")
    if record is None:
        return dg.AssetCheckResult(
            passed=True, metadata={"provider": print_provider.provider}, description="no recipient: shipped by the storefront"
        )
    accepted = record.provider_order_id is not None and record.status.accepted
    return dg.AssetCheckResult(
        passed=accepted,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "provider": dg.TextMetadataValue(record.provider),
            "status": dg.TextMetadataValue(record.status.value),
            "provider_order_id": dg.TextMetadataValue(record.provider_order_id or ""),
            "attempts": dg.IntMetadataValue(record.attempts),
        },
        description=None if accepted else f"not accepted by {record.provider}: {record.last_error or record.status}",
    )
