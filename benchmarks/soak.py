"""A day of a shop in minutes, with faults: orders through `photogen serve` while its parts fail.

    .venv/bin/python benchmarks/soak.py [--orders 200] [--seed 7] [--faults 10] [--outage 60]
        [--customers 4] [--timeout 5400] [--keep DIR] [--json]

PostgreSQL for the orders and the Dagster instance (throwaway databases), payments on against
localstripe, whose webhooks pass through a relay that duplicates, delays and reorders them, and
whose API the shop reaches through a proxy that can cut it. Customers (threads, each order a
seeded plan) upload, order, pay as a browser does, then approve, approve late, never approve
or cancel at every state; some uploads are refused. Meanwhile, `--faults` times each, in a
seeded order: a run worker SIGKILLed, the daemon SIGKILLed, the whole service SIGKILLed, and
Stripe unreachable for `--outage` seconds; the service is started again after each kill, as a
process manager would. Then the soak waits until every order has settled or waits on its
customer, stops the service, and checks tests/invariants.py against Stripe's own
records, the instance and the artifact store. Prints the invariants, the faults injected,
p50/p95 paid → proofs_ready and paid → ready, and orders per hour. Exit 1 if an invariant fails.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import requests
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.demo_order import machine  # noqa: E402
from benchmarks.postgres import POSTGRES_URL, create_database, drop_database  # noqa: E402
from benchmarks.soak_faults import SwitchableProxy, WebhookRelay  # noqa: E402
from tests.servers import free_port, group_alive, localstripe_server  # noqa: E402
from tests.test_serve import CHILD_PID  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
PHOTOGEN = Path(sys.executable).with_name("photogen")
API_KEY, WEBHOOK_SECRET = "sk_test_soak", "whsec_soak"
CARD = {"number": "4242424242424242", "exp_month": 12, "exp_year": 2034, "cvc": "123"}
# what a customer does with an order; weights for the seeded draw
PLANS = {
    "approve": 30,
    "auto": 20,
    "approve late": 8,
    "never approve": 8,
    "cancel before paying": 6,
    "cancel when paid": 6,
    "cancel at proofs": 8,
    "never pay": 4,
    "refused upload": 10,
    "pay in credits": 8,  # a pack bought through Stripe first, then an order paid from the wallet
}
FAULTS = ("run worker killed", "daemon killed", "service killed", "stripe unreachable")
SETTLED = {"ready", "refunded", "rejected", "failed", "cancelled"}


# -- the service ---------------------------------------------------------------------------------


@dataclass
class Shop:
    """`photogen serve` with payments on, PostgreSQL everywhere, restartable on the same ports."""

    home: Path
    env: dict[str, str]
    api_port: int = field(default_factory=free_port)
    ui_port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None
    starts: int = 0
    unexpected_exits: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)  # held while a fault kills and restarts it

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def log(self) -> Path:
        return self.home.parent / "serve.log"

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [str(PHOTOGEN), "serve", "--api-port", str(self.api_port), "--ui-port", str(self.ui_port)],
                env=self.env, cwd=REPO, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        self.starts += 1
        mark = self.starts
        deadline = time.monotonic() + 240
        while self._log().count("[photogen] ready") < mark:
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"photogen serve did not start:\n{self._log()[-3000:]}")
            time.sleep(1)

    def watch(self, stop: threading.Event) -> None:
        """The process manager: a service that stopped on its own is noted and started again."""
        while not stop.wait(2):
            with self.lock:
                if self.process and self.process.poll() is not None and not stop.is_set():
                    crashed = [line for line in self._log().splitlines() if "stopped on its own" in line]
                    self.unexpected_exits.append(crashed[-1] if crashed else f"serve exited {self.process.returncode}")
                    self.start()

    def _log(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def children(self) -> dict[str, int]:
        """The children of the latest start, by name (serve's own lines, as the tests read them)."""
        since = self._log().split("[photogen] PHOTOGEN_HOME")[-1]
        return {name: int(pid) for name, pid in CHILD_PID.findall(since)}

    def groups(self) -> list[int]:
        return [self.process.pid, *self.children().values()] if self.process else []

    def kill_all(self) -> None:
        """A power cut: every process of the service at once."""
        for pgid in self.groups():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
        if self.process:
            self.process.wait(timeout=60)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=120)
            except subprocess.TimeoutExpired:
                self.kill_all()
        for pgid in self.groups():  # nothing may outlive the soak
            if group_alive(pgid):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pgid, signal.SIGKILL)


def _instance_yaml(dagster_url: str) -> str:
    """The project's local instance (run queue, retries, monitoring) on PostgreSQL."""
    config = yaml.safe_load((REPO / "dagster.yaml").read_text())
    # psycopg2, as deploy/dagster.yaml: with SQLAlchemy 2.1 a bare postgresql:// picks psycopg 3,
    # on which Dagster's NOTIFY fails
    scheme_url = dagster_url.replace("postgresql://", "postgresql+psycopg2://", 1)
    config["storage"] = {"postgres": {"postgres_url": scheme_url}}
    return "# the soak's instance: the project's dagster.yaml on PostgreSQL\n" + yaml.safe_dump(config)


# -- customers -----------------------------------------------------------------------------------


class Customers:
    """Every order's customer, a seeded plan each, served by a few threads; every call retried
    through restarts and outages, with the same Idempotency-Key, as a storefront would."""

    def __init__(self, shop: Shop, stripe_client, auth: dict, rng: random.Random, selfie: bytes, refused: bytes):
        self.shop, self.stripe, self.auth, self.rng = shop, stripe_client, auth, rng
        self.selfie, self.refused = selfie, refused
        self.orders: dict[str, str] = {}  # order id -> plan
        self.refused_uploads = 0
        self.lock = threading.Lock()

    def _call(self, method: str, path: str, patience: float = 600, headers: dict | None = None, **kwargs) -> requests.Response:
        deadline = time.monotonic() + patience
        while True:
            try:
                response = requests.request(
                    method, self.shop.api + path, headers={**self.auth, **(headers or {})}, timeout=30, **kwargs
                )
                if response.status_code < 500 and response.status_code != 429:
                    return response
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{method} {path} did not answer for {patience:.0f} s")
            time.sleep(2)

    def serve(self, plan: str) -> None:
        if plan == "refused upload":
            answer = self._call("POST", "/v1/uploads", data={"consent": "true"}, files={"file": ("me.png", self.refused)})
            assert 400 <= answer.status_code < 500, answer.text
            with self.lock:
                self.refused_uploads += 1
            return
        upload = self._call("POST", "/v1/uploads", data={"consent": "true"}, files={"file": ("me.png", self.selfie)}).json()["id"]
        body = {"upload_id": upload, "style_id": "ink_etching", "product_id": "poster_a3", "variants": 2,
                "approval": "auto" if plan in ("auto", "pay in credits") else "customer"}  # fmt: skip
        if plan == "pay in credits":
            body |= {"payment": "credits", "customer_ref": self._customer_with_a_pack()}
        key = {"Idempotency-Key": str(uuid.uuid4())}
        created = self._call("POST", "/v1/orders", json=body, headers=key)
        assert created.status_code in (200, 201), created.text
        order = created.json()
        with self.lock:
            self.orders[order["id"]] = plan
        if plan == "cancel before paying":
            self._call("POST", f"/v1/orders/{order['id']}/cancel", json={"reason": "changed my mind"})
            if self.rng.random() < 0.5:
                self._pay(order)  # the browser was still on the payment page: refunded
            return
        if plan == "never pay":
            return
        if plan == "pay in credits":
            self._wait(order["id"], {"proofs_ready", *SETTLED})
            return
        self._pay(order)
        if plan == "cancel when paid":  # as soon as the payment shows, whatever the run is doing
            self._wait(order["id"], {"paid", "generating", "proofs_ready", *SETTLED})
            self._cancel(order["id"])
            return
        state = self._wait(order["id"], {"proofs_ready", *SETTLED})
        if plan == "cancel at proofs" and state == "proofs_ready":
            self._cancel(order["id"])
        elif state == "proofs_ready" and plan in ("approve", "approve late"):
            if plan == "approve late":
                time.sleep(self.rng.uniform(20, 60))
            view = self._call("GET", f"/v1/orders/{order['id']}").json()
            passed = [p["variant"] for p in view["proofs"] if p["passed"]]
            if passed:
                self._call("POST", f"/v1/orders/{order['id']}/approve", json={"proof": passed[0]})

    def _cancel(self, order_id: str, patience: float = 600) -> None:
        """Cancel; while a run works on the order (409) try again, until it is settled."""
        deadline = time.monotonic() + patience
        while time.monotonic() < deadline:
            answer = self._call("POST", f"/v1/orders/{order_id}/cancel", json={"reason": "no longer wanted"})
            if answer.status_code == 200:
                return
            if self._call("GET", f"/v1/orders/{order_id}").json()["state"] in SETTLED:
                return
            time.sleep(3)

    def _customer_with_a_pack(self) -> str:
        """A new customer who buys the starter pack and waits until its credits are in."""
        ref = f"soak-{uuid.uuid4().hex[:12]}"
        key = {"Idempotency-Key": str(uuid.uuid4())}
        bought = self._call("POST", f"/v1/customers/{ref}/pack-purchases", json={"pack_id": "starter"}, headers=key)
        assert bought.status_code in (200, 201), bought.text
        self._pay_intent(bought.json()["payment_intent_id"])
        deadline = time.monotonic() + 1800  # the webhook, or the reconciliation after an outage
        while self._call("GET", f"/v1/customers/{ref}").json()["balance"] < 100 and time.monotonic() < deadline:
            time.sleep(3)
        return ref

    def _pay(self, order: dict) -> None:
        self._pay_intent(order["payment"]["payment_intent_id"])

    def _pay_intent(self, intent: str) -> None:
        """What Stripe.js does in the browser: straight to Stripe (never through the shop's proxy)."""
        method = self.stripe.v1.payment_methods.create(params={"type": "card", "card": CARD})
        self.stripe.v1.payment_intents.update(intent, params={"payment_method": method.id})
        self.stripe.v1.payment_intents.confirm(intent)

    def _wait(self, order_id: str, states: set[str], patience: float = 1800) -> str:
        deadline = time.monotonic() + patience
        while time.monotonic() < deadline:
            state = self._call("GET", f"/v1/orders/{order_id}").json()["state"]
            if state in states:
                return state
            time.sleep(3)
        return "timed out"


# -- faults --------------------------------------------------------------------------------------


class Faults:
    """Injects each kind `count` times, one at a time, in a seeded order, `every` seconds apart."""

    def __init__(self, shop: Shop, proxy: SwitchableProxy, rng: random.Random, count: int, outage: float, every: float):
        self.shop, self.proxy, self.rng, self.outage, self.every = shop, proxy, rng, outage, every
        self.plan = [kind for kind in FAULTS for _ in range(count)]
        rng.shuffle(self.plan)
        self.injected: Counter[str] = Counter()
        self.skipped: Counter[str] = Counter()
        self.stop = threading.Event()
        self.lock = threading.Lock()  # the customers' calls do not take it: they retry through restarts

    def run(self) -> None:
        for kind in self.plan:
            if self.stop.wait(self.rng.uniform(0.5, 1.5) * self.every):
                return
            while not self._inject(kind):  # no run was working at that moment: a little later
                self.skipped[kind] += 1
                if self.stop.wait(3):
                    return
            self.injected[kind] += 1

    def _inject(self, kind: str) -> bool:
        with self.shop.lock:
            return self._inject_now(kind)

    def _inject_now(self, kind: str) -> bool:
        if kind == "stripe unreachable":
            self.proxy.down()
            self.stop.wait(self.outage)
            self.proxy.up()
            return True
        if kind == "run worker killed":
            return self._kill_a_run_worker()
        if kind == "daemon killed":
            os.kill(self.shop.children()["Dagster daemon"], signal.SIGKILL)
            self.shop.process.wait(timeout=120)  # serve stops the rest and exits 1
        else:
            self.shop.kill_all()
        self.shop.start()  # the process manager's restart
        return True

    def _kill_a_run_worker(self) -> bool:
        import dagster as dg

        from sensors.dead_runs import run_worker

        with dg.DagsterInstance.from_config(self.shop.env["DAGSTER_HOME"]) as instance:
            for record in instance.get_run_records(dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED]), limit=10):
                worker = run_worker(instance, record.dagster_run, record.start_time)
                if worker:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(worker.pid, signal.SIGKILL)
                        return True
        return False


# -- the end -------------------------------------------------------------------------------------


def settled_or_waiting(orders) -> bool:
    from tests.invariants import waiting_on_customer

    return all(o.state.value in SETTLED and not o.refund_owed or waiting_on_customer(o) for o in orders)


def latencies(orders) -> dict[str, list[float]]:
    seen: dict[str, list[float]] = {"proofs_ready": [], "ready": []}
    for order in orders:
        paid = next((e.at for e in order.events if e.to_state.value == "paid"), None)
        for state, values in seen.items():
            reached = next((e.at for e in order.events if e.to_state.value == state), None)
            if paid and reached:
                values.append((reached - paid).total_seconds())
    return seen


def _p(values: list[float], q: float) -> float | None:
    if not values:
        return None
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


def check(shop: Shop, stripe_client, orders_url: str) -> tuple[object, list]:
    import dagster as dg

    from photogen_pipelines.db.database import Database
    from photogen_pipelines.orders.book import SqlOrderBook
    from photogen_pipelines.storage.stores import LocalArtifactStore
    from tests.invariants import CreditRecords, LeftoverRecords, StripeRecords, check_shop

    database = Database(orders_url)
    try:
        orders = SqlOrderBook(database).list(limit=100_000)
        with dg.DagsterInstance.from_config(shop.env["DAGSTER_HOME"]) as instance:
            statuses = {r.dagster_run.run_id: r.dagster_run.status.value for r in instance.get_run_records()}
        # what an analyst runs right after: the ledger (none materialized here) and the rest
        # read from the orders database
        answer = subprocess.run([str(PHOTOGEN), "report", "--json"], env=shop.env, cwd=REPO, capture_output=True, text=True)
        report = check_shop(
            orders,
            stripe=StripeRecords.read(stripe_client),
            run_statuses=statuses,
            store=LocalArtifactStore(shop.home / "artifacts"),
            now=datetime.now(UTC),
            report_json=json.loads(answer.stdout) if answer.returncode == 0 else {"styles": [], "orders": None},
            credits=CreditRecords.read(database),  # wallets, credit refunds, packs (none, where nobody used credits)
            leftovers=LeftoverRecords.read(database),  # photos nobody ordered with, unpaid checkouts' recipients
        )
        return report, orders
    finally:
        database.dispose()


def soak(args: argparse.Namespace, workdir: Path) -> dict:
    import stripe
    from skimage import data

    from photogen_pipelines.db.database import Database
    from photogen_pipelines.imaging.images import png_bytes
    from photogen_pipelines.orders.book import SqlOrderBook

    rng = random.Random(args.seed)
    orders_url, dagster_url = (create_database(POSTGRES_URL, f"photogen_soak_{kind}") for kind in ("orders", "dagster"))
    started = time.monotonic()
    try:
        with localstripe_server(workdir) as stripe_base:
            stripe_port = int(stripe_base.rsplit(":", 1)[1])
            proxy = SwitchableProxy("127.0.0.1", stripe_port)
            home = workdir / "home"
            (home / "dagster").mkdir(parents=True)
            (home / "dagster" / "dagster.yaml").write_text(_instance_yaml(dagster_url))
            env = {k: v for k, v in os.environ.items() if not k.startswith(("PHOTOGEN_", "DAGSTER_"))}
            env.update(
                PHOTOGEN_HOME=str(home), DAGSTER_HOME=str(home / "dagster"), PHOTOGEN_DATABASE_URL=orders_url,
                PHOTOGEN_STRIPE_API_KEY=API_KEY, PHOTOGEN_STRIPE_WEBHOOK_SECRET=WEBHOOK_SECRET,
                PHOTOGEN_STRIPE_API_BASE=proxy.url,
            )  # fmt: skip
            shop = Shop(home, env)
            relay = WebhookRelay(f"{shop.api}/v1/webhooks/stripe", seed=args.seed)
            faults = None
            try:
                shop.start()
                requests.post(f"{stripe_base}/_config/webhooks/photogen", data={"url": relay.url, "secret": WEBHOOK_SECRET},
                              timeout=10).raise_for_status()  # fmt: skip
                created = subprocess.run([str(PHOTOGEN), "api-key", "create", "--name", "soak", "--json"], env=env,
                                         cwd=REPO, capture_output=True, text=True, check=True)  # fmt: skip
                auth = {"Authorization": f"Bearer {json.loads(created.stdout)['secret']}"}
                client = stripe.StripeClient(API_KEY, base_addresses={"api": stripe_base})
                customers = Customers(shop, client, auth, rng, png_bytes(data.astronaut()), png_bytes(data.coins()))
                plans = rng.choices(list(PLANS), weights=list(PLANS.values()), k=args.orders)
                if "pay in credits" not in plans and len(plans) >= 4:
                    plans[-1] = "pay in credits"  # every soak, however small, puts a wallet and a pack to the test
                faults = Faults(shop, proxy, random.Random(args.seed + 1), args.faults, args.outage, args.fault_every)
                fault_thread = threading.Thread(target=faults.run, daemon=True)
                fault_thread.start()
                threading.Thread(target=shop.watch, args=(faults.stop,), daemon=True).start()
                errors: list[str] = []
                queue = list(enumerate(plans))
                queue_lock = threading.Lock()

                def customer() -> None:
                    while True:
                        with queue_lock:
                            if not queue:
                                return
                            _, plan = queue.pop(0)
                        try:
                            customers.serve(plan)
                        except Exception as error:  # noqa: BLE001 - reported, the soak goes on
                            errors.append(f"{plan}: {type(error).__name__}: {error}")

                threads = [threading.Thread(target=customer, daemon=True) for _ in range(args.customers)]
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join(timeout=args.timeout)
                fault_thread.join(timeout=args.timeout)  # every fault injected before the end
                database = Database(orders_url)
                book = SqlOrderBook(database)
                deadline = time.monotonic() + args.timeout
                while not settled_or_waiting(book.list(limit=100_000)) and time.monotonic() < deadline:
                    time.sleep(5)
                database.dispose()
                quiet_at = time.monotonic()
            finally:
                if faults:
                    faults.stop.set()
                shop.stop()
                relay.close()
                proxy.close()
            report, orders = check(shop, client, orders_url)
    finally:
        if not args.keep:
            for url in (orders_url, dagster_url):
                drop_database(POSTGRES_URL, url)
    times = latencies(orders)
    hours = (quiet_at - started) / 3600
    return {
        "orders": len(orders),
        "plans": dict(Counter(customers.orders.values())),
        "refused_uploads": customers.refused_uploads,
        "states": dict(Counter(o.state.value for o in orders)),
        "faults_injected": dict(faults.injected),
        "faults_not_possible": dict(faults.skipped),
        "webhook_faults": dict(relay.faults),
        "webhooks_received": relay.received,
        "service_starts": shop.starts,
        "unexpected_exits": shop.unexpected_exits,
        "customer_errors": errors,
        "invariants": report.lines(),
        "invariants_hold": report.holds and not errors and not shop.unexpected_exits,
        "paid_to_proofs_ready_p50_s": _p(times["proofs_ready"], 50),
        "paid_to_proofs_ready_p95_s": _p(times["proofs_ready"], 95),
        "paid_to_ready_p50_s": _p(times["ready"], 50),
        "paid_to_ready_p95_s": _p(times["ready"], 95),
        "orders_per_hour": round(len(orders) / hours, 1) if hours else None,
        "wall_s": round(quiet_at - started, 1),
        "machine": machine(),
        "setup": {k: getattr(args, k) for k in ("orders", "seed", "faults", "outage", "fault_every", "customers")},
    }


def print_report(result: dict) -> None:
    def s(value):
        return "–" if value is None else f"{value:.1f} s"

    print(f"soak: {result['orders']} orders ({result['refused_uploads']} uploads refused besides), {result['machine']}")
    print(f"plans: {result['plans']}")
    print(f"end states: {result['states']}")
    put_off = result["faults_not_possible"] or "–"
    print(f"faults injected: {result['faults_injected']}; put off (no run working at that moment): {put_off}")
    print(f"webhooks: {result['webhooks_received']} received by the relay, {result['webhook_faults']}")
    print(f"service started {result['service_starts']} times")
    for line in result["unexpected_exits"]:
        print(f"UNEXPECTED: {line}")
    print(f"paid → proofs_ready p50 {s(result['paid_to_proofs_ready_p50_s'])}, p95 {s(result['paid_to_proofs_ready_p95_s'])}")
    print(f"paid → ready p50 {s(result['paid_to_ready_p50_s'])}, p95 {s(result['paid_to_ready_p95_s'])}")
    print(f"{result['orders_per_hour']} orders per hour ({result['wall_s']} s until all settled)")
    for error in result["customer_errors"]:
        print(f"customer error: {error}")
    print("invariants:")
    for line in result["invariants"]:
        print(f"  {line}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=200)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--faults", type=int, default=10, help="how many of each kind of fault")
    parser.add_argument("--outage", type=float, default=60.0, help="seconds Stripe stays unreachable each time")
    parser.add_argument("--fault-every", type=float, default=30.0, help="mean seconds between two faults")
    parser.add_argument("--customers", type=int, default=4, help="customers acting at once")
    parser.add_argument("--timeout", type=float, default=5400.0)
    parser.add_argument("--keep", action="store_true", help="keep the PostgreSQL databases")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    # SIGTERM unwinds like Ctrl-C, through the blocks that stop the service and drop the databases
    signal.signal(signal.SIGTERM, lambda signum, _frame: (_ for _ in ()).throw(KeyboardInterrupt(f"signal {signum}")))
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        result = soak(args, Path(tmp))
    if args.json:
        print(json.dumps(result, indent=2, default=str))
    else:
        print_report(result)
    sys.exit(0 if result["invariants_hold"] else 1)


if __name__ == "__main__":
    main()
