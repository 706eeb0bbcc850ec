"""What must hold of the shop however many orders went through and whatever failed meanwhile.

The soak (benchmarks/soak.py) checks these at its end, and tests check them after they kill,
cancel and refund: every order settled or waiting on its customer; money moved once, as Stripe
itself records it; no run left running; no file of a live order missing and none of a gone
order left behind; every credit wallet adds up, a credit-paid order gets its credits back at
most once, and the packs' money is their prices less their refunds; no photo nobody ordered
with and no unpaid checkout's recipient outlives the retention policy. Each check takes plain
inputs (orders, Stripe's records, run statuses, a store, the wallets' ledger), so the caller
decides where they come from; nothing here imports Dagster.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from photogen_pipelines.credits.wallet import Entry, EntryKind, lots_of
from photogen_pipelines.orders.states import FULFILMENT, OWES_REFUND, PRINT_FILE_MADE, PROOFS_VISIBLE, SETTLED, Order, OrderState
from photogen_pipelines.storage.stores import ArtifactStore
from photogen_pipelines.workflows.retention import RetentionPolicy, is_expired, is_print_file

S = OrderState
# a Dagster run in one of these is working, or thinks it is: none may be left when all is quiet
UNFINISHED_RUN_STATUSES = frozenset({"STARTING", "STARTED", "CANCELING"})

SETTLED_OR_WAITING = "every order settled or waiting on its customer"
MONEY = "charged once, refunds owed made once (Stripe's records)"
RUNS = "no run left starting or started"
FILES = "live orders' files present, expired orders' files gone"
REPORT = "the ledger and photogen report agree with the orders database"
WALLETS = "each wallet: balance = its entries' sum = its lots' total, none below zero"
CREDIT_REFUNDS = "credit-paid orders refunded at most once, never more than paid"
PACK_MONEY = "money kept for packs = paid packs' prices less refunds"
LEFTOVERS = "no photo nobody ordered with, and no unpaid checkout's recipient, kept past the policy's days"


@dataclass(frozen=True)
class Violation:
    invariant: str
    subject: str  # an order id, a PaymentIntent id, a run id, a key
    detail: str

    def __str__(self) -> str:
        return f"{self.invariant}: {self.subject}: {self.detail}"


@dataclass
class InvariantReport:
    checked: dict[str, int] = field(default_factory=dict)  # invariant -> how many subjects it looked at
    violations: list[Violation] = field(default_factory=list)

    @property
    def holds(self) -> bool:
        return not self.violations

    def add(self, invariant: str, checked: int, violations: Iterable[Violation]) -> None:
        self.checked[invariant] = self.checked.get(invariant, 0) + checked
        self.violations.extend(violations)

    def lines(self) -> list[str]:
        failed: dict[str, int] = {}
        for violation in self.violations:
            failed[violation.invariant] = failed.get(violation.invariant, 0) + 1
        summary = [
            f"{'FAIL' if failed.get(name) else 'ok  '} {name}: {checked} checked"
            + (f", {failed[name]} violated" if failed.get(name) else "")
            for name, checked in self.checked.items()
        ]
        return summary + [f"     {violation}" for violation in self.violations]


# -- orders ------------------------------------------------------------------------------------


def waiting_on_customer(order: Order) -> bool:
    """Not settled, but only because the customer has not paid or not chosen a proof yet."""
    return order.state == S.AWAITING_PAYMENT or (order.state == S.PROOFS_READY and order.approval == "customer")


def with_print_provider(order: Order) -> bool:
    """Delivered to the print provider, which ships it on its own time."""
    return order.state in FULFILMENT


def orders_settled(orders: Iterable[Order]) -> tuple[int, list[Violation]]:
    """Every order is settled (delivered, or ended and owing nothing) or waiting on its customer."""
    violations, count = [], 0
    for order in orders:
        count += 1
        if order.refund_owed:
            violations.append(
                Violation(
                    SETTLED_OR_WAITING,
                    order.id,
                    f"{order.state.value}, owes a refund of {order.refund_due_cents - order.refunded_cents}",
                )
            )
        elif order.state not in SETTLED and not waiting_on_customer(order) and not with_print_provider(order):
            violations.append(
                Violation(SETTLED_OR_WAITING, order.id, f"left in {order.state.value} ({order.reason or 'no reason'})")
            )
    return count, violations


# -- money, as Stripe records it ---------------------------------------------------------------


@dataclass(frozen=True)
class StripeRecords:
    """Stripe's own record of the money moved, per PaymentIntent: its succeeded charges and its refunds."""

    charges: Mapping[str, list[int]]  # PaymentIntent id -> amounts of its succeeded charges
    refunds: Mapping[str, list[int]]  # PaymentIntent id -> amounts of its refunds (succeeded or pending)

    @classmethod
    def read(cls, client) -> StripeRecords:
        """Every charge and refund, page by page, through a `stripe.StripeClient`."""
        charges: dict[str, list[int]] = {}
        for charge in _all(client.v1.charges):
            if charge.get("status") == "succeeded" and charge.get("payment_intent"):
                charges.setdefault(_id(charge["payment_intent"]), []).append(int(charge["amount"]))
        refunds: dict[str, list[int]] = {}
        for refund in _all(client.v1.refunds):
            if refund.get("status") in ("succeeded", "pending") and refund.get("payment_intent"):
                refunds.setdefault(_id(refund["payment_intent"]), []).append(int(refund["amount"]))
        return cls(charges, refunds)


def _id(value) -> str:
    return value if isinstance(value, str) else value["id"]


def _all(resource) -> Iterable[dict]:
    after = None
    while True:
        page = resource.list(params={"limit": 100, **({"starting_after": after} if after else {})})
        items = [item.to_dict() for item in page.data]
        yield from items
        if not page.has_more or not items:
            return
        after = items[-1]["id"]


def money_moved_once(
    orders: Iterable[Order], stripe: StripeRecords, not_orders: Iterable[str] = ()
) -> tuple[int, list[Violation]]:
    """Each order that was paid was charged once, for its amount; each refund owed was made
    once, in full (less a fee the cancellation policy kept); nothing delivered was refunded; every other payment (a stray one) was
    given back once. Compared with Stripe's records, not only with ours. `not_orders`: the
    PaymentIntents that pay for something else (packs of credits: packs_paid checks them)."""
    violations: list[Violation] = []
    own = {order.payment_intent_id: order for order in orders if order.payment_intent_id}
    others = set(not_orders)
    for order in own.values():
        charged, refunded = stripe.charges.get(order.payment_intent_id, []), stripe.refunds.get(order.payment_intent_id, [])
        subject = f"{order.id} ({order.payment_intent_id})"
        if len(charged) > 1:
            violations.append(Violation(MONEY, subject, f"{len(charged)} charges: {charged}"))
        if order.paid_cents and not charged:
            violations.append(Violation(MONEY, subject, f"recorded as paid {order.paid_cents}, Stripe has no charge"))
        if charged and not order.paid_cents and order.state not in (S.FAILED, S.REFUNDED):
            violations.append(Violation(MONEY, subject, f"Stripe charged {charged} but the order is {order.state.value}, unpaid"))
        if len(refunded) > 1:
            violations.append(Violation(MONEY, subject, f"{len(refunded)} refunds: {refunded}"))
        # all of it, less the fee the shop's cancellation policy kept (Order.kept_cents)
        if order.state == S.REFUNDED and charged and sum(refunded) != sum(charged) - order.kept_cents:
            kept = f", {order.kept_cents} kept" if order.kept_cents else ""
            violations.append(Violation(MONEY, subject, f"refunded {sum(refunded)} of {sum(charged)} charged{kept}"))
        if refunded and order.state not in (S.REFUNDED, *OWES_REFUND):
            violations.append(Violation(MONEY, subject, f"refunded {refunded} but the order is {order.state.value}"))
    strays = {pi: amounts for pi, amounts in stripe.charges.items() if pi not in own and pi not in others}
    for intent, charged in strays.items():
        refunded = stripe.refunds.get(intent, [])
        if len(refunded) != 1 or refunded[0] != sum(charged):
            violations.append(
                Violation(MONEY, intent, f"a stray payment: charged {charged}, refunded {refunded} (once, in full, expected)")
            )
    return len(own) + len(strays), violations


# -- credits: the wallets' ledger, packs ---------------------------------------------------------


@dataclass(frozen=True)
class PackRecord:
    id: str
    state: str  # awaiting_payment | paid | refunded
    credits: int
    amount_cents: int  # the pack's price when it was bought
    paid_cents: int
    refunded_cents: int
    payment_intent_id: str | None


@dataclass(frozen=True)
class CreditRecords:
    """The wallets as the orders database has them: each customer's entries (oldest first)
    and balance as the database sums it, and every pack purchase."""

    entries: Mapping[str, list[Entry]]  # customer id -> entries
    balances: Mapping[str, int]  # customer id -> SUM(amount), as wallet.balance reads it
    packs: list[PackRecord] = field(default_factory=list)

    @classmethod
    def read(cls, database) -> CreditRecords:
        """Everything, from a photogen_pipelines.db.database.Database (migrated)."""
        from sqlalchemy import select

        from photogen_pipelines.credits import wallet
        from photogen_pipelines.db.tables import CreditEntryRow, PackPurchaseRow

        with database.session() as session:
            balances = wallet.all_balances(session)
            entries: dict[str, list[Entry]] = {customer_id: [] for customer_id in balances}
            for row in session.scalars(select(CreditEntryRow).order_by(CreditEntryRow.id)).all():
                entries.setdefault(row.customer_id, []).append(wallet.to_entry(row))
            packs = [
                PackRecord(p.id, p.state, p.credits, p.amount_cents, p.paid_cents, p.refunded_cents, p.payment_intent_id)
                for p in session.scalars(select(PackPurchaseRow).order_by(PackPurchaseRow.id)).all()
            ]
        return cls(entries, balances, packs)


def wallets_add_up(credits: CreditRecords) -> tuple[int, list[Violation]]:
    """Every customer's balance is the sum of their entries and not below zero; replayed into
    lots (wallet.lots_of), no lot has gone below zero and the lots hold the balance, no more
    and no less (a spend of credits that had expired, or taken twice, shows here)."""
    violations: list[Violation] = []
    customers = sorted({*credits.entries, *credits.balances})
    for customer in customers:
        entries = credits.entries.get(customer, [])
        total = sum(entry.amount for entry in entries)
        balance = credits.balances.get(customer, 0)
        if balance != total:
            violations.append(Violation(WALLETS, customer, f"balance {balance}, its entries sum to {total}"))
        if total < 0:
            violations.append(Violation(WALLETS, customer, f"balance {total}, below zero"))
        lots = lots_of(entries)
        for lot in lots.lots.values():
            if lot.remaining < 0:
                violations.append(Violation(WALLETS, customer, f"lot of entry {lot.entry_id} has {lot.remaining} credits left"))
        if lots.total != total:
            violations.append(Violation(WALLETS, customer, f"lots hold {lots.total} credits, the balance is {total}"))
    return len(customers), violations


def credit_refunds_once(orders: Iterable[Order], credits: CreditRecords) -> tuple[int, list[Violation]]:
    """A credit-paid order that will not be delivered got its credits back in at most one
    entry (a refund, or a free re-roll's grant), and never more than it paid; an order that
    was delivered, or still may be, got none back."""
    given_back: dict[str, list[Entry]] = {}
    for entries in credits.entries.values():
        for entry in entries:
            if entry.order_id and entry.amount > 0:  # a refund, or a re-roll granted for the order
                given_back.setdefault(entry.order_id, []).append(entry)
    violations: list[Violation] = []
    count = 0
    for order in orders:
        if order.payments != "credits":
            continue
        count += 1
        back = given_back.get(order.id, [])
        if order.state in (*OWES_REFUND, S.REFUNDED):
            if len(back) > 1:
                violations.append(Violation(CREDIT_REFUNDS, order.id, f"{len(back)} refunds: {[e.amount for e in back]}"))
        elif back:
            detail = f"{order.state.value}, yet {back[0].amount} credits given back"
            violations.append(Violation(CREDIT_REFUNDS, order.id, detail))
        if order.credits_refunded > order.credits_paid:
            detail = f"{order.credits_refunded} credits refunded of {order.credits_paid} paid"
            violations.append(Violation(CREDIT_REFUNDS, order.id, detail))
    return count, violations


def packs_paid(credits: CreditRecords, stripe: StripeRecords | None = None) -> tuple[int, list[Violation]]:
    """The money kept for packs (paid less refunded) is the paid packs' prices less their
    refunds: each pack paid for is paid its price, one not paid for nothing, and no refund
    exceeds what was paid; a paid pack's credits were posted once. With Stripe's records, each
    pack's PaymentIntent was charged once, for that price, and refunded what the pack says."""
    violations: list[Violation] = []
    purchases: dict[str, list[Entry]] = {}
    for entries in credits.entries.values():
        for entry in entries:
            if entry.kind == EntryKind.PURCHASE and entry.pack_purchase_id:
                purchases.setdefault(entry.pack_purchase_id, []).append(entry)
    for pack in credits.packs:
        paid = pack.state in ("paid", "refunded")
        price = pack.amount_cents if paid else 0
        if pack.paid_cents != price:
            violations.append(Violation(PACK_MONEY, pack.id, f"{pack.state}, {pack.paid_cents} paid for a price of {price}"))
        if not 0 <= pack.refunded_cents <= pack.paid_cents:
            violations.append(Violation(PACK_MONEY, pack.id, f"{pack.refunded_cents} refunded of {pack.paid_cents} paid"))
        posted = [entry.amount for entry in purchases.get(pack.id, [])]
        if posted != ([pack.credits] if paid else []):
            violations.append(Violation(PACK_MONEY, pack.id, f"{pack.state} pack of {pack.credits} credits, posted {posted}"))
        if stripe is not None and pack.payment_intent_id:
            charged = stripe.charges.get(pack.payment_intent_id, [])
            refunded = sum(stripe.refunds.get(pack.payment_intent_id, []))
            if charged != ([pack.paid_cents] if pack.paid_cents else []) or refunded != pack.refunded_cents:
                detail = f"Stripe charged {charged}, refunded {refunded}; the pack: {pack.paid_cents}, {pack.refunded_cents}"
                violations.append(Violation(PACK_MONEY, pack.id, detail))
    kept = sum(p.paid_cents - p.refunded_cents for p in credits.packs)
    prices = sum(p.amount_cents for p in credits.packs if p.state in ("paid", "refunded"))
    priced = prices - sum(p.refunded_cents for p in credits.packs)
    if kept != priced:
        violations.append(Violation(PACK_MONEY, "all packs", f"{kept} kept, the paid packs' prices less refunds are {priced}"))
    return len(credits.packs), violations


# -- runs and files ----------------------------------------------------------------------------


def runs_finished(run_statuses: Mapping[str, str]) -> tuple[int, list[Violation]]:
    """No Dagster run is left starting, started or cancelling (`run_statuses`: run id -> status name)."""
    violations = [Violation(RUNS, run_id, status) for run_id, status in run_statuses.items() if status in UNFINISHED_RUN_STATUSES]
    return len(run_statuses), violations


def files_kept_and_let_go(
    orders: Iterable[Order], store: ArtifactStore, policy: RetentionPolicy, now: datetime
) -> tuple[int, list[Violation]]:
    """A live order has the files its customer can reach (its proofs, its print file once
    ready); an order past the retention policy keeps none but what the policy keeps (the
    print file, its manifest); no order's folder belongs to an order that does not exist."""
    violations: list[Violation] = []
    orders = list(orders)
    for order in orders:
        keys = [key for key in store.list(f"orders/{order.id}/") if key.startswith(f"orders/{order.id}/")]
        if is_expired(order, now, policy):
            kept = [k for k in keys if not (policy.keep_print_files and is_print_file(k, order.id))]
            if kept:
                violations.append(Violation(FILES, order.id, f"expired, still has {kept[:3]}"))
            continue
        if order.state in PROOFS_VISIBLE and not any(k.startswith(f"orders/{order.id}/proofs/proof_") for k in keys):
            violations.append(Violation(FILES, order.id, f"{order.state.value} without a proof"))
        if order.approved_proof is not None and order.state in PROOFS_VISIBLE:
            if f"orders/{order.id}/proofs/proof_{order.approved_proof}.png" not in keys:
                violations.append(Violation(FILES, order.id, f"approved proof {order.approved_proof} missing"))
        if order.state in PRINT_FILE_MADE and not any(is_print_file(k, order.id) and "/print_file." in k for k in keys):
            violations.append(Violation(FILES, order.id, f"{order.state.value} without a print file"))
    known = {order.id for order in orders}
    strangers = sorted({key.split("/")[1] for key in store.list("orders/") if key.count("/") >= 2} - known)
    violations += [Violation(FILES, order_id, "files of an order the database does not know") for order_id in strangers]
    return len(orders), violations


@dataclass(frozen=True)
class LeftoverRecords:
    """Personal data that never became a paid order, read from the orders database: every
    upload (when made, whether an order or a set of photos uses it) and every recipient of
    an order still awaiting payment (when the order was placed)."""

    uploads: list[tuple[str, datetime, bool]]  # (upload id, created_at, used by an order)
    unpaid_recipients: list[tuple[str, datetime]]  # (order id, placed at)

    @classmethod
    def read(cls, database) -> LeftoverRecords:
        from sqlalchemy import select

        from photogen_pipelines.clock import as_utc
        from photogen_pipelines.db.tables import OrderPhotoRow, OrderRow, RecipientRow, UploadRow

        with database.session() as session:
            used = set(session.scalars(select(OrderRow.upload_id))) | set(session.scalars(select(OrderPhotoRow.upload_id)))
            uploads = [(i, as_utc(at), i in used) for i, at in session.execute(select(UploadRow.id, UploadRow.created_at))]
            unpaid = session.execute(
                select(OrderRow.id, OrderRow.created_at)
                .join(RecipientRow, RecipientRow.order_id == OrderRow.id)
                .where(OrderRow.state == OrderState.AWAITING_PAYMENT.value)
            ).all()
        return cls(uploads, [(order_id, as_utc(at)) for order_id, at in unpaid])


def leftovers_let_go(records: LeftoverRecords, policy: RetentionPolicy, now: datetime) -> tuple[int, list[Violation]]:
    """No unused upload older than `unordered_upload_days`, and no recipient of an order
    awaiting payment for longer than `abandoned_checkout_days` (workflows/abandoned.py)."""
    upload_cutoff = now - timedelta(days=policy.unordered_upload_days)
    checkout_cutoff = now - timedelta(days=policy.abandoned_checkout_days)
    violations = [
        Violation(LEFTOVERS, upload_id, f"unordered since {at:%Y-%m-%d}")
        for upload_id, at, used in records.uploads
        if not used and at < upload_cutoff
    ]
    violations += [
        Violation(LEFTOVERS, order_id, f"awaiting payment since {at:%Y-%m-%d}, recipient kept")
        for order_id, at in records.unpaid_recipients
        if at < checkout_cutoff
    ]
    return len(records.uploads) + len(records.unpaid_recipients), violations


def report_agrees(orders: Iterable[Order], report: Mapping) -> tuple[int, list[Violation]]:
    """`photogen report --json` (the ledger, and what it lacks read from the orders database)
    counts every order that settled, once, under its style, as the orders database has them."""
    settled = [o for o in orders if any(e.to_state in SETTLED for e in o.events)]
    expected: dict[str, int] = {}
    for order in settled:
        expected[order.style_id] = expected.get(order.style_id, 0) + 1
    reported = {style["style_id"]: style["orders"] for style in report.get("styles", [])}
    violations = [
        Violation(REPORT, style, f"the report has {reported.get(style, 0)} orders, the orders database {count}")
        for style, count in sorted(expected.items())
        if reported.get(style, 0) != count
    ]
    violations += [
        Violation(REPORT, style, f"the report has {count} orders the orders database does not")
        for style, count in sorted(reported.items())
        if style not in expected
    ]
    if report.get("orders", 0) != len(settled):
        detail = f"the report has {report.get('orders')} orders, the database {len(settled)}"
        violations.append(Violation(REPORT, "all styles", detail))
    return len(settled), violations


def check_shop(
    orders: Iterable[Order],
    *,
    stripe: StripeRecords | None = None,
    run_statuses: Mapping[str, str] | None = None,
    store: ArtifactStore | None = None,
    policy: RetentionPolicy | None = None,
    now: datetime | None = None,
    report_json: Mapping | None = None,
    pipeline_ran: bool = True,
    credits: CreditRecords | None = None,
    leftovers: LeftoverRecords | None = None,
) -> InvariantReport:
    """Every invariant the given inputs allow: orders settled (unless `pipeline_ran` is False:
    without runs a paid order stays paid); money with Stripe's records; runs with their
    statuses; files with the store (and `policy` and `now`); `photogen report --json`'s
    counts with `report_json`; the wallets, credit refunds and packs with `credits` (packs
    with Stripe's records too, when given); what never became a paid order with `leftovers`
    (and `policy` and `now`)."""
    orders = list(orders)
    report = InvariantReport()
    if pipeline_ran:
        report.add(SETTLED_OR_WAITING, *orders_settled(orders))
    if stripe is not None:
        pack_intents = [p.payment_intent_id for p in credits.packs if p.payment_intent_id] if credits else []
        report.add(MONEY, *money_moved_once(orders, stripe, pack_intents))
    if run_statuses is not None:
        report.add(RUNS, *runs_finished(run_statuses))
    if store is not None:
        if now is None:
            raise ValueError("checking files needs `now`, the moment retention is judged at")
        report.add(FILES, *files_kept_and_let_go(orders, store, policy or RetentionPolicy(), now))
    if report_json is not None:
        report.add(REPORT, *report_agrees(orders, report_json))
    if credits is not None:
        report.add(WALLETS, *wallets_add_up(credits))
        report.add(CREDIT_REFUNDS, *credit_refunds_once(orders, credits))
        report.add(PACK_MONEY, *packs_paid(credits, stripe))
    if leftovers is not None:
        if now is None:
            raise ValueError("checking what was let go needs `now`, the moment retention is judged at")
        report.add(LEFTOVERS, *leftovers_let_go(leftovers, policy or RetentionPolicy(), now))
    return report
