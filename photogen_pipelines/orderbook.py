"""Where orders are kept between the storefront and the pipeline runs.

`JsonOrderBook` keeps one JSON document per order in a directory: enough for the
embedded default and the CLI. The storefront's SQL database implements the same
methods, so the assets do not care which one they are given.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Protocol

from photogen_pipelines.errors import NotFound
from photogen_pipelines.orders import Order, OrderState


class OrderBook(Protocol):
    def add(self, order: Order) -> Order: ...
    def get(self, order_id: str) -> Order: ...
    def save(self, order: Order) -> Order: ...
    def transition(self, order_id: str, target: OrderState, reason: str | None = None) -> Order: ...
    def record_stage(self, order_id: str, stage: str, seconds: float) -> Order: ...


class JsonOrderBook:
    def __init__(self, directory: str | os.PathLike):
        self.directory = Path(directory)

    def _path(self, order_id: str) -> Path:
        if not order_id or "/" in order_id or order_id.startswith("."):
            raise NotFound(f"bad order id {order_id!r}", code="order_not_found")
        return self.directory / f"{order_id}.json"

    def add(self, order: Order) -> Order:
        if self._path(order.id).exists():
            raise ValueError(f"order {order.id} already exists")
        return self.save(order)

    def get(self, order_id: str) -> Order:
        try:
            return Order.model_validate_json(self._path(order_id).read_text())
        except FileNotFoundError:
            raise NotFound(f"order {order_id} not found", code="order_not_found") from None

    def save(self, order: Order) -> Order:
        self.directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".tmp-")
        with os.fdopen(fd, "w") as handle:
            handle.write(order.model_dump_json(indent=2))
        os.replace(tmp, self._path(order.id))
        return order

    def transition(self, order_id: str, target: OrderState, reason: str | None = None) -> Order:
        order = self.get(order_id)
        if order.transition(target, reason):
            self.save(order)
        return order

    def record_stage(self, order_id: str, stage: str, seconds: float) -> Order:
        order = self.get(order_id)
        order.stage_seconds[stage] = round(seconds, 3)
        return self.save(order)

    def list(self) -> list[Order]:
        if not self.directory.exists():
            return []
        return [Order.model_validate_json(p.read_text()) for p in sorted(self.directory.glob("ord_*.json"))]
