"""The shop's print provider and its approval policy, as Dagster resources."""

from __future__ import annotations

from datetime import timedelta
from typing import Literal

import dagster as dg
from pydantic import Field

from photogen_pipelines.access.signing import Signer
from photogen_pipelines.catalog import ProductCatalog
from photogen_pipelines.fulfilment import providers
from photogen_pipelines.fulfilment.providers.base import PrintProvider
from photogen_pipelines.fulfilment.submission import NotFulfillable, SubmitResult, file_md5, submit
from photogen_pipelines.orders.book import SqlOrderBook
from photogen_pipelines.settings import LocalPaths
from photogen_pipelines.storage.artifacts import Manifest, OrderKeys
from photogen_pipelines.storage.stores import ArtifactStore
from photogen_pipelines.workflows.approvals import ApprovalPolicy


class PrintProviderResource(dg.ConfigurableResource):
    """Where ready orders are printed: Prodigi or Printful (`provider`), or none (the order
    ends at ready with a file to download). The API key is an environment variable
    (PHOTOGEN_PRINT_PROVIDER_API_KEY), never config shown in the UI."""

    provider: Literal["none", "prodigi", "printful"] = "none"
    api_key: str | None = None
    api_base: str | None = Field(None, description="default: Prodigi's sandbox, or Printful's API")
    store_id: str | None = Field(None, description="Printful's store id, for a token that reaches several stores")
    confirm: bool = Field(False, description="Printful: confirm orders for fulfilment (False leaves drafts)")
    public_base_url: str | None = Field(None, description="where the provider reaches the storefront API (local storage)")
    secret_key: str | None = None  # signs file links; default: the one in the home folder
    home: str | None = None
    file_url_ttl_seconds: int = Field(7 * 24 * 3600, ge=3600, le=7 * 24 * 3600)

    @property
    def enabled(self) -> bool:
        return self.provider != "none"

    def client(self) -> PrintProvider | None:
        if not self.enabled:
            return None
        return providers.print_provider(
            self.provider, api_key=self.api_key, api_base=self.api_base, store_id=self.store_id, confirm=self.confirm
        )

    def file_url(self, store: ArtifactStore, key: str) -> str:
        """A link the provider downloads the print file from, valid long enough for its queue."""
        presigned = getattr(store, "presigned_url", None)
        url = presigned(key, self.file_url_ttl_seconds) if presigned else None  # S3: a presigned URL; local: None
        if url:
            return url
        if not self.public_base_url:
            raise NotFulfillable(
                "set PHOTOGEN_PUBLIC_BASE_URL (where the provider reaches the storefront API) to send files from local storage"
            )
        signer = Signer(self.secret_key or LocalPaths.resolve(self.home).secret_key())
        return signer.file_url(self.public_base_url, key, self.file_url_ttl_seconds)

    def submit(self, book: SqlOrderBook, store: ArtifactStore, products: ProductCatalog, order_id: str) -> SubmitResult:
        """Submit a ready order's print file (fulfilment.submit: once, whatever happens)."""
        provider = self.client()
        if provider is None:
            raise NotFulfillable("no print provider is configured (PHOTOGEN_PRINT_PROVIDER)")
        order = book.get(order_id)
        manifest = OrderKeys(order_id).load(store, Manifest)
        return submit(
            book,
            provider,
            order_id,
            products.get(order.product_id),
            file_url=lambda: self.file_url(store, manifest.file),
            # Prodigi checks what it downloaded against it; the others do not ask
            file_checksum=file_md5(store.get_bytes(manifest.file)) if provider.name == "prodigi" else None,
            callback_url=self.callback_url(),
        )

    def callback_url(self) -> str | None:
        """Where the provider posts status changes (read back before they count)."""
        if not self.public_base_url or not self.enabled:
            return None
        return f"{self.public_base_url.rstrip('/')}/v1/fulfilment/{self.provider}/callbacks"


class ApprovalDeadline(dg.ConfigurableResource):
    """What happens to proofs nobody chooses from: after `deadline_hours` the best proof is
    approved (auto_approve) or the order is cancelled and refunded (cancel); the customer
    is reminded `reminder_hours` before."""

    deadline_hours: float = Field(48.0, gt=0)
    reminder_hours: float = Field(12.0, ge=0)
    action: Literal["auto_approve", "cancel"] = "auto_approve"

    def policy(self) -> ApprovalPolicy:
        return ApprovalPolicy(
            deadline=timedelta(hours=self.deadline_hours),
            reminder_before=timedelta(hours=self.reminder_hours),
            action=self.action,
        )
