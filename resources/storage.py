from typing import TYPE_CHECKING

import dagster as dg

from photogen_pipelines import factories
from photogen_pipelines.db.database import Database, open_database
from photogen_pipelines.factories import StoreSettings
from photogen_pipelines.orders.book import SqlOrderBook
from photogen_pipelines.storage.stores import LocalArtifactStore

if TYPE_CHECKING:
    from photogen_pipelines.storage.s3 import S3ArtifactStore


class StoreConfig(dg.Config, StoreSettings):
    """StoreSettings as Dagster config: its fields are declared once, in
    photogen_pipelines/factories.py."""


class ArtifactStorage(dg.ConfigurableResource):
    """Where uploads, proofs and print files are written: a local directory (`root`) by
    default, an S3 bucket (`s3_bucket`, on AWS or any S3 endpoint) in production.

    AWS credentials are never resource config: boto3 reads them from its own chain
    (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, a profile, an instance or task role).
    `s3_endpoint_url` unset means boto3's AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL, else AWS.
    """

    settings: StoreConfig

    def store_settings(self) -> StoreSettings:
        return StoreSettings(**self.settings.model_dump())

    def store(self) -> "LocalArtifactStore | S3ArtifactStore":
        return factories.artifact_store(self.store_settings())


class OrdersDatabase(dg.ConfigurableResource):
    """The orders database the storefront writes and the runs advance: SQLite or PostgreSQL."""

    url: str

    def database(self) -> Database:
        return open_database(self.url)

    def book(self) -> SqlOrderBook:
        return SqlOrderBook(self.database())
