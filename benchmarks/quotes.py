"""A quote's promised waits against what real orders of its tier took.

    .venv/bin/python -m benchmarks.quotes [--tier fast] [--orders 5] [--held-out 2] [--at-once 1]
        [--product poster_a3] [--style ink_etching] [--timeout 1200] [--json]

Starts `photogen serve` in a new home (payments off), lets the catalog preview runs a new
home starts with finish (they would hold a run slot and a core), and asks for a quote: the
tier's catalog estimate, since no order has been measured. Then places `--orders` real,
auto-approved orders of the tier, `--at-once` at a time (the next batch once the last one
is ready), asking for a quote after each batch; from MEASURED_FROM (5) orders on, the quote
is the median of the tier's orders (orders/waits.py). Last, `--held-out` more orders that
the quote did not see: what a customer who got that quote then waited.

A quote is made as the storefront makes one (workflows/quotes.py `make_quote`, on the home's
orders database); an order's waits are read from its history as `tier_wait` reads them:
payment -> proofs ready, approval -> print file ready. Prints the catalog estimate and the
measured quote each beside the measured medians (ratio), and each held-out order's waits
against the quote. Record the table in BENCHMARKS.md with the machine named.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.demo_order import machine  # noqa: E402
from benchmarks.order_runs import (  # noqa: E402
    READY_WAIT_SECONDS,
    Service,
    _request,
    _stamp,
    wait_for_orders,
    wait_for_quiet_queue,
)
from tests.test_serve import new_api_key  # noqa: E402

PHASES = {"proofs": ("paid", "proofs_ready"), "print": ("approved", "ready")}  # as orders/waits.py measures them


def phases(view: dict) -> dict[str, float | None]:
    """An order's waits from its history: first entry into each phase's start and end."""
    first: dict[str, float] = {}
    for event in view["events"]:
        first.setdefault(event["to_state"], _stamp(event["at"]))
    return {name: first[end] - first[start] if start in first and end in first else None for name, (start, end) in PHASES.items()}


class Shop:
    """The home's orders database, for quotes made as the storefront makes them."""

    def __init__(self, home: Path, product: str, tier: str) -> None:
        from photogen_pipelines.catalog import load_products
        from photogen_pipelines.db.database import Database
        from photogen_pipelines.orders.book import SqlOrderBook
        from photogen_pipelines.settings import PhotoGenSettings

        self.database = Database(PhotoGenSettings(home=str(home)).resolved_database_url)
        self.book, self.products, self.product, self.tier = SqlOrderBook(self.database), load_products(), product, tier

    def quote(self) -> dict:
        from photogen_pipelines.workflows.quotes import make_quote

        quote = make_quote(self.book, self.products, self.product, self.tier)
        return {"proofs": quote.proofs_seconds, "print": quote.print_seconds, "basis": quote.basis}


def place(service: Service, auth: dict, upload_id: str, args: argparse.Namespace, count: int) -> list[str]:
    body = {"upload_id": upload_id, "style_id": args.style, "product_id": args.product, "tier": args.tier, "approval": "auto"}
    placed = []
    for _ in range(count):
        response = _request("POST", f"{service.api}/v1/orders", headers={**auth, "Idempotency-Key": str(uuid.uuid4())}, json=body)
        if response.status_code != 201 or response.json().get("state") != "paid":
            raise RuntimeError(f"the order was not placed and paid: {response.status_code} {response.text[:300]}")
        placed.append(response.json()["id"])
    return placed


def _median(values: list[float]) -> float:
    return statistics.median(values)


def summarize(catalog: dict, measured: list[dict], quote: dict, held_out: list[dict]) -> dict:
    med = {name: _median([o[name] for o in measured]) for name in PHASES}
    held = {name: _median([o[name] for o in held_out]) for name in PHASES} if held_out else None
    return {
        "catalog": catalog,
        "measured_median": med,
        "catalog_over_measured": {name: catalog[name] / med[name] for name in PHASES},
        "quote": quote,
        "quote_over_measured": {name: quote[name] / med[name] for name in PHASES},
        "held_out_median": held,
        "quote_over_held_out": {name: quote[name] / held[name] for name in PHASES} if held else None,
        "held_out_ratios": [{name: o[name] / quote[name] for name in PHASES} for o in held_out],
    }


def run(args: argparse.Namespace, tmp: str) -> dict:
    from skimage import data

    from photogen_pipelines.imaging.images import png_bytes

    home = Path(tmp) / "home"
    service = Service(home, Path(tmp) / "serve.log", [])
    started = time.monotonic()
    try:
        service.wait_ready(READY_WAIT_SECONDS)
        previews = wait_for_quiet_queue(service)
        print(f"serve ready, {previews} preview run(s) done after {time.monotonic() - started:.0f} s", file=sys.stderr)
        shop = Shop(home, args.product, args.tier)
        auth = new_api_key(home)
        upload = _request(
            "POST",
            f"{service.api}/v1/uploads",
            headers=auth,
            data={"consent": "true"},
            files={"file": ("me.png", png_bytes(data.astronaut()))},
        )
        if upload.status_code != 201:
            raise RuntimeError(f"upload failed: {upload.status_code} {upload.text}")
        quotes = [{"after_orders": 0, **shop.quote()}]
        measured: list[dict] = []
        while len(measured) < args.orders:
            batch = place(service, auth, upload.json()["id"], args, min(args.at_once, args.orders - len(measured)))
            measured += finished(service, auth, batch, args)
            quotes.append({"after_orders": len(measured), **shop.quote()})
            print(f"{len(measured)} orders measured; quote now {quotes[-1]}", file=sys.stderr)
        held_out: list[dict] = []
        while len(held_out) < args.held_out:
            batch = place(service, auth, upload.json()["id"], args, min(args.at_once, args.held_out - len(held_out)))
            held_out += finished(service, auth, batch, args)
        shop.database.dispose()
    except BaseException:
        print(f"\nphotogen serve's log (the end):\n{service.tail()}", file=sys.stderr)
        raise
    finally:
        service.stop()
    report = summarize(quotes[0], measured, quotes[-1], held_out)
    setup = ("tier", "orders", "held_out", "at_once", "product", "style")
    return {
        **report,
        "quotes": quotes,
        "orders": measured,
        "held_out": held_out,
        "setup": {k: getattr(args, k) for k in setup},
        "machine": machine(),
        "wall_s": time.monotonic() - started,
    }


def finished(service: Service, auth: dict, batch: list[str], args: argparse.Namespace) -> list[dict]:
    views = wait_for_orders(service, batch, auth, args.timeout)
    done = []
    for order_id in batch:
        view = views.get(order_id, {})
        if view.get("state") != "ready":
            raise RuntimeError(f"order {order_id} ended {view.get('state')}: {view.get('reason')}")
        done.append({"id": order_id, **phases(view)})
    return done


def print_report(report: dict) -> None:
    setup = report["setup"]
    print(f"\nQuotes against measured waits: the {setup['tier']} tier, {setup['product']}, {setup['style']}; "
          f"{setup['orders']} orders measured, {setup['held_out']} held out, {setup['at_once']} at a time")  # fmt: skip
    print(f"machine: {report['machine']}; {report['wall_s'] / 60:.1f} min in all\n")
    print("| seconds | to proofs | to print |")
    print("|---|---:|---:|")

    def row(name: str, values: dict, digits: int = 1) -> None:
        print(f"| {name} | {values['proofs']:.{digits}f} | {values['print']:.{digits}f} |")

    row("catalog estimate (the quote before any order)", report["catalog"], 0)
    row(f"median of the {setup['orders']} measured orders", report["measured_median"])
    row("catalog estimate / measured median", report["catalog_over_measured"], 2)
    row(f"quote after {setup['orders']} orders ({report['quote']['basis']})", report["quote"], 0)
    row("quote / median of the orders it rests on", report["quote_over_measured"], 2)
    if report["held_out_median"]:
        row(f"median of the {setup['held_out']} held-out orders", report["held_out_median"])
        row("quote / held-out median", report["quote_over_held_out"], 2)
    print("\nthe quote after each batch (seconds to proofs / to print, and its basis):")
    for quote in report["quotes"]:
        print(f"  after {quote['after_orders']} orders: {quote['proofs']} / {quote['print']} ({quote['basis']})")
    print("\neach order's waits, seconds (to proofs / to print):")
    for order in report["orders"]:
        print(f"  measured  {order['id']}: {order['proofs']:.1f} / {order['print']:.1f}")
    for order in report["held_out"]:
        print(f"  held out  {order['id']}: {order['proofs']:.1f} / {order['print']:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tier", default="fast")
    parser.add_argument("--orders", type=int, default=5, help="orders the quote is measured from [5: MEASURED_FROM]")
    parser.add_argument("--held-out", type=int, default=2, help="orders after the quote, to compare it with [2]")
    parser.add_argument("--at-once", type=int, default=1, help="orders placed together, the next batch once they are ready [1]")
    parser.add_argument("--product", default="poster_a3")
    parser.add_argument("--style", default="ink_etching")
    parser.add_argument("--timeout", type=float, default=1200, help="seconds to wait for each batch [1200]")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.orders < 1 or args.held_out < 0 or args.at_once < 1:
        parser.error("--orders and --at-once must be at least 1, --held-out at least 0")
    with tempfile.TemporaryDirectory(prefix="quotes-") as tmp:
        report = run(args, tmp)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_report(report)


if __name__ == "__main__":
    main()
