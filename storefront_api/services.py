"""What the API talks to, built once per process from the settings."""

from __future__ import annotations

import functools
from dataclasses import dataclass

from photogen_pipelines.access.signing import Signer
from photogen_pipelines.catalog import ProductCatalog, StyleCatalog, load_products, load_quality, load_styles
from photogen_pipelines.catalog.kinds import KindCatalog, load_kinds
from photogen_pipelines.db.database import Database, open_database
from photogen_pipelines.engines.base import FaceAnalyzer
from photogen_pipelines.factories import artifact_store, deployment, face_analyzer, safety_detector
from photogen_pipelines.fulfilment.providers import print_provider
from photogen_pipelines.fulfilment.providers.base import PrintProvider
from photogen_pipelines.generation.safety import SafetyGate, safety_gate
from photogen_pipelines.orders.book import SqlOrderBook
from photogen_pipelines.payments.stripe_payments import StripeGateway
from photogen_pipelines.storage.stores import ArtifactStore
from photogen_pipelines.workflows.jobs import Placement, running_engines
from storefront_api.config import Settings


@dataclass
class Services:
    settings: Settings
    database: Database
    book: SqlOrderBook
    store: ArtifactStore
    styles: StyleCatalog
    products: ProductCatalog
    gateway: StripeGateway | None
    signer: Signer

    def link(self, base_url: str, key: str) -> str:
        """A short-lived link to a stored file: S3's presigned URL, or this API's signed one."""
        ttl = self.settings.file_url_ttl_seconds
        presigned = getattr(self.store, "presigned_url", None)
        url = presigned(key, ttl) if presigned else None
        return url or self.signer.file_url(base_url, key, ttl)

    @functools.cached_property
    def print_provider(self) -> PrintProvider | None:
        """The shop's print provider (settings.print_provider), for reading callbacks back."""
        settings = self.settings
        return print_provider(
            settings.print_provider,
            api_key=settings.print_provider_api_key,
            api_base=settings.print_provider_api_base,
            store_id=settings.printful_store_id,
            confirm=settings.printful_confirm,
        )

    @functools.cached_property
    def faces(self) -> FaceAnalyzer:
        # loaded on the first upload; the same engine the pipelines' FaceEngine validates with
        return face_analyzer(deployment(self.settings).faces)

    @functools.cached_property
    def safety(self) -> SafetyGate:
        """Customers' photos are checked with the detector the runs check proofs with
        (loaded on the first upload), at quality.yaml's threshold for uploads."""
        detector = safety_detector(deployment(self.settings).safety)
        return safety_gate(detector, load_quality(self.settings.quality_path), "upload")

    @functools.cached_property
    def kinds(self) -> KindCatalog:
        return load_kinds(self.settings.kinds_path)

    def placement(self) -> Placement:
        """Where a job is placed and what checks it. The engines are named from the settings
        alone: the API refuses a kind this shop's engines cannot make without loading them."""
        engine, video_engine = running_engines(self.settings)
        return Placement(
            database=self.database,
            store=self.store,
            faces=self.faces,
            kinds=self.kinds,
            styles=self.styles,
            products=self.products,
            engine=engine,
            video_engine=video_engine,
            payments_on=self.settings.payments_on,
        )


def build_services(settings: Settings) -> Services:
    if not (settings.database_url and settings.artifacts_root):  # customers' data in the home folder
        settings.paths.make_private()
    database = open_database(settings.resolved_database_url)
    gateway = None
    if settings.payments_on:
        gateway = StripeGateway(settings.stripe_api_key, settings.stripe_webhook_secret, settings.stripe_api_base)
    return Services(
        settings=settings,
        database=database,
        book=SqlOrderBook(database),
        store=artifact_store(deployment(settings).store),
        styles=load_styles(settings.styles_path),
        products=load_products(settings.products_path),
        gateway=gateway,
        signer=Signer(settings.resolved_secret_key),
    )
