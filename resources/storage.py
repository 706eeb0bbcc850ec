import dagster as dg

from photogen_pipelines.orderbook import JsonOrderBook
from photogen_pipelines.storage import LocalArtifactStore


class ArtifactStorage(dg.ConfigurableResource):
    """Where uploads, proofs and print files are written: a local directory by default."""

    root: str

    def store(self) -> LocalArtifactStore:
        return LocalArtifactStore(self.root)


class OrderBookResource(dg.ConfigurableResource):
    """The orders the pipeline reads and advances through their states."""

    directory: str

    def book(self) -> JsonOrderBook:
        return JsonOrderBook(self.directory)
