import dagster as dg

from photogen_pipelines.db.database import Database, open_database
from photogen_pipelines.orderbook import SqlOrderBook
from photogen_pipelines.storage import LocalArtifactStore


class ArtifactStorage(dg.ConfigurableResource):
    """Where uploads, proofs and print files are written: a local directory by default."""

    root: str

    def store(self) -> LocalArtifactStore:
        return LocalArtifactStore(self.root)


class OrdersDatabase(dg.ConfigurableResource):
    """The orders database the storefront writes and the runs advance: SQLite or PostgreSQL."""

    url: str

    def database(self) -> Database:
        return open_database(self.url)

    def book(self) -> SqlOrderBook:
        return SqlOrderBook(self.database())
