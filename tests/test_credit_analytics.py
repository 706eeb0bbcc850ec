"""Credits by UTC day (photogen_pipelines/analytics/credits.py), from a ledger written by the
wallet itself on SQLite and PostgreSQL: each day's movements, the balance, the deferred
revenue (purchased lots' unspent credits at their pack's price per credit) and the money
received for packs, checked to the credit and the cent."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

import pytest

from photogen_pipelines.analytics.credits import COLUMNS, CreditDay, credit_day, credit_days, credit_frame, credits_summary
from photogen_pipelines.catalog import load_products
from photogen_pipelines.credits import customers, wallet
from photogen_pipelines.credits.wallet import EntryKind
from photogen_pipelines.db.database import Database
from photogen_pipelines.db.tables import PackPurchaseRow

K = EntryKind
D1, D2, D3 = date(2026, 12, 1), date(2026, 12, 2), date(2026, 12, 3)


def at(day: date, hour: int) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC)


class Shop:
    def __init__(self, database: Database):
        self.database, self.products = database, load_products()
        self.ids: dict[str, int] = {}

    def customer(self, ref: str) -> None:
        with self.database.session() as session:
            customers.ensure(session, self.products, None, ref, plan="basic")  # no welcome credits

    def post(self, ref: str, kind: K, amount: int, when: datetime, name: str, **fields) -> None:
        with self.database.session() as session:
            row = customers.get(session, None, ref, lock=True)
            if "lot" in fields:
                fields["lot_id"] = self.ids[fields.pop("lot")]
            posted = wallet.post(session, row, kind, amount, key=name, reason=name, now=when, **fields)
            self.ids[name] = posted.entry.id

    def pack(self, ref: str, pack_id: str, state: str, when: datetime, refunded: int = 0) -> str:
        pack = self.products.pack(pack_id)
        with self.database.session() as session:
            row = customers.get(session, None, ref)
            purchase = PackPurchaseRow(
                id=f"pp_{pack_id}_{ref}",
                customer_id=row.id,
                pack_id=pack.id,
                credits=pack.credits,
                amount_cents=pack.price_cents,
                currency="usd",
                payment_intent_id=None,
                state=state,
                paid_cents=pack.price_cents if state != "awaiting_payment" else 0,
                refunded_cents=refunded,
                idempotency_key=f"buy-{pack_id}-{ref}",
                request_hash="x" * 64,
                created_at=when,
                updated_at=when,
            )
            session.add(purchase)
        return purchase.id

    def refund_pack(self, purchase_id: str, when: datetime) -> None:
        with self.database.session() as session:
            row = session.get(PackPurchaseRow, purchase_id)
            row.state, row.refunded_cents, row.updated_at = "refunded", row.paid_cents, when


@pytest.fixture
def shop(database_url) -> Shop:
    database = Database(database_url)
    database.migrate()
    yield Shop(database)
    database.dispose()


def three_days(shop: Shop) -> None:
    """Alice: a grant expiring on day 3, a starter pack (100 credits for $29), a spend its
    order's failure gives back, an operator's correction down. Bob: a pro pack (500 credits
    for $79), a spend, then the pack refunded and its unspent credits clawed back."""
    shop.customer("alice")
    shop.customer("bob")
    shop.post("alice", K.GRANT, 20, at(D1, 9), "grant", expires_at=at(D3, 12))
    starter = shop.pack("alice", "starter", "paid", at(D1, 10))
    shop.post("alice", K.PURCHASE, 100, at(D1, 10), "buy-starter", pack_purchase_id=starter)
    shop.post("alice", K.SPEND, -30, at(D1, 11), "spend-1")  # the grant's 20 first (it expires), then 10 bought
    pro = shop.pack("bob", "pro", "paid", at(D1, 12))
    shop.post("bob", K.PURCHASE, 500, at(D1, 12), "buy-pro", pack_purchase_id=pro)
    shop.pack("bob", "enterprise", "awaiting_payment", at(D1, 13))  # never paid: no money, no credits

    shop.post("alice", K.REFUND, 30, at(D2, 9), "refund-1", lot="spend-1")  # back into the lots it came from
    shop.post("bob", K.SPEND, -8, at(D2, 10), "spend-2")
    shop.post("alice", K.ADJUSTMENT, -5, at(D2, 11), "fix-down")  # from the grant: it expires first

    shop.refund_pack(pro, at(D3, 9))
    shop.post("bob", K.CLAWBACK, -492, at(D3, 9), "clawback", lot="buy-pro", pack_purchase_id=pro)
    shop.post("bob", K.ADJUSTMENT, 7, at(D3, 10), "fix-up")
    with shop.database.session() as session:
        expired = wallet.expire_due(session, customers.get(session, None, "alice", lock=True), at(D3, 13))
    assert [(e.kind, e.amount) for e in expired] == [(K.EXPIRY, -15)]


def test_each_days_movements_balance_and_deferred_revenue_to_the_credit_and_cent(shop):
    three_days(shop)
    with shop.database.session() as session:
        days = credit_days(session)
    assert days == [
        # deferred: alice 90 left of 100 bought at 29 ¢ (2610) + bob's 500 at 15.8 ¢ (7900)
        CreditDay(D1, granted=20, sold=600, spent=30, balance=590, deferred_credits=590, deferred_cents=10510,
                  pack_paid_cents=10800, pack_received_cents=10800),
        # alice's 10 bought come back (100: 2900); bob 492 at 15.8 ¢ = 7773.6: 10673.6 rounds once, to 10674
        CreditDay(D2, spent=8, refunded=30, adjusted=-5, balance=607, deferred_credits=592, deferred_cents=10674,
                  pack_received_cents=10800),
        # bob's pack refunded: its 492 unspent clawed back, $79 given back; alice's grant's last 15 expire
        CreditDay(D3, expired=15, clawed_back=492, adjusted=7, balance=107, deferred_credits=100, deferred_cents=2900,
                  pack_refunded_cents=7900, pack_received_cents=2900),
    ]  # fmt: skip
    with shop.database.session() as session:
        assert sum(wallet.all_balances(session).values()) == days[-1].balance  # the books agree with the wallets
        assert credit_days(session, since=D2) == days[1:]  # the end-of-day numbers still count day 1
        quiet = credit_day(session, date(2026, 12, 9))  # nothing moved: the books as day 3 left them
        assert quiet == CreditDay(date(2026, 12, 9), balance=107, deferred_credits=100, deferred_cents=2900,
                                  pack_received_cents=2900)  # fmt: skip
        assert credit_day(session, D2) == days[1]
        assert credit_day(session, date(2026, 11, 30)) == CreditDay(date(2026, 11, 30))
        summary = credits_summary(session, since=D3)
    assert [d["day"] for d in summary["days"]] == ["2026-12-03"]
    assert summary["totals"]["clawed_back"] == 492 and summary["totals"]["sold"] == 0
    assert summary["now"] == {"balance": 107, "deferred_credits": 100, "deferred_cents": 2900, "pack_received_cents": 2900}

    frame = credit_frame(days)
    assert list(frame.columns) == COLUMNS and list(frame["deferred_cents"]) == [10510, 10674, 2900]


def test_a_shop_without_credits_has_no_days_and_an_old_database_no_tables(database_url):
    database = Database(database_url)
    try:
        database.migrate("0005")  # before credits existed: a report must not fail on it
        with database.session() as session:
            assert credits_summary(session) == {
                "days": [],
                "totals": dict.fromkeys(["granted", "sold", "spent", "refunded", "expired", "clawed_back", "adjusted"], 0),
                "now": {"balance": 0, "deferred_credits": 0, "deferred_cents": 0, "pack_received_cents": 0},
            }
        database.migrate()
        with database.session() as session:
            assert credit_days(session) == []
    finally:
        database.dispose()


def test_photogen_report_shows_the_credits_by_day_and_the_books_now(shop, database_url, tmp_path):
    from click.testing import CliRunner

    from photogen_pipelines.cli import main as cli_main
    from photogen_pipelines.orders.book import SqlOrderBook
    from photogen_pipelines.orders.states import Order, OrderEvent, OrderState

    three_days(shop)
    rejected = OrderEvent(at=at(D3, 8), from_state=None, to_state=OrderState.REJECTED)
    settled = Order(style_id="ink_etching", product_id="poster_a3", upload_key="k", state=OrderState.REJECTED,
                    created_at=at(D3, 8), events=[rejected])  # fmt: skip
    SqlOrderBook(shop.database).add(settled)  # the text report starts once an order settled

    def report(*args: str):
        env = {"PHOTOGEN_DATABASE_URL": database_url}
        result = CliRunner().invoke(cli_main.cli, ["report", *args, "--home", str(tmp_path / "home")], env=env)
        assert result.exit_code == 0, result.output
        return result.stdout

    with shop.database.session() as session:
        assert json.loads(report("--json"))["credits"] == json.loads(json.dumps(credits_summary(session)))
    since = json.loads(report("--json", "--since", D2.isoformat()))["credits"]
    assert [d["day"] for d in since["days"]] == ["2026-12-02", "2026-12-03"] and since["totals"]["spent"] == 8
    text = report().splitlines()
    header = next(i for i, line in enumerate(text) if line.startswith("Credits per day"))
    assert "107 credits in wallets, 100 of them sold and unspent ($29.00 deferred)" in text[header]
    rows = {line.split()[0]: line.split() for line in text[header + 3 : header + 6]}
    assert rows["2026-12-02"] == ["2026-12-02", "0", "0", "8", "30", "0", "0", "-5", "607", "592", "$106.74", "$108.00"]
    assert rows["2026-12-03"][-3:] == ["100", "$29.00", "$29.00"]


def test_the_ledger_asset_carries_the_days_credits_in_its_metadata(shop, database_url, tmp_path):
    import dagster as dg

    from assets.analytics import generation_ledger
    from resources import ArtifactStorage, OrdersDatabase, StoreConfig

    three_days(shop)
    resources = {"orders": OrdersDatabase(url=database_url), "storage": ArtifactStorage(settings=StoreConfig(root=str(tmp_path)))}
    with dg.instance_for_test() as instance:
        result = dg.materialize([generation_ledger], partition_key=D2.isoformat(), instance=instance, resources=resources)
    metadata = result.asset_materializations_for_node("generation_ledger")[0].metadata
    credits = {k.split("/", 1)[1]: v.value for k, v in metadata.items() if k.startswith("credits/")}
    assert credits == {"granted": 0, "sold": 0, "spent": 8, "refunded": 30, "expired": 0, "clawed_back": 0, "adjusted": -5,
                       "balance": 607, "deferred_cents": 10674}  # fmt: skip
