"""`photogen credits grant|adjust|show` on SQLite and PostgreSQL: the movements land in the
wallet's ledger once per idempotency key and never below zero, the customer is found in the
right shop (or the operator is asked for --key), and every bad input is one line and exit
code 2, from the installed command as an operator runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from photogen_pipelines.access.api_keys import create_api_key, revoke_api_key
from photogen_pipelines.cli import main as cli_main
from photogen_pipelines.credits import customers
from photogen_pipelines.db.database import Database
from photogen_pipelines.db.tables import CreditEntryRow

PHOTOGEN = Path(sys.executable).with_name("photogen")


@pytest.fixture
def shop(database_url, tmp_path):
    """The orders database the commands use (PHOTOGEN_DATABASE_URL), migrated, and a runner."""
    database = Database(database_url)
    database.migrate()
    env = {"PHOTOGEN_DATABASE_URL": database_url, "PHOTOGEN_HOME": str(tmp_path / "home")}

    def photogen(*args: str, code: int = 0):
        result = CliRunner().invoke(cli_main.cli, ["credits", *args], env=env)
        assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
        assert result.exit_code == code, (args, result.exit_code, result.stdout, result.stderr)
        if code == 2:
            errors = [line for line in result.stderr.splitlines() if line.startswith("photogen: error:")]
            assert len(errors) == 1 and result.stdout == "", result.stderr
            return errors[0]
        return json.loads(result.stdout) if "--json" in args else result.stdout

    yield database, photogen, env
    database.dispose()


def _entries(database: Database) -> list[tuple[str, int, str]]:
    with database.session() as session:
        rows = session.query(CreditEntryRow).order_by(CreditEntryRow.id).all()
        return [(row.kind, row.amount, row.reason) for row in rows]


def test_grant_adjust_and_show_move_the_wallet_once_and_never_below_zero(shop):
    database, photogen, _ = shop
    granted = photogen("grant", "alice", "25", "--reason", "sorry for the wait", "--json")
    # a shop without storefront keys: the customer is the operator's own, on the default plan with its welcome credits
    assert (granted["api_key_id"], granted["plan"], granted["welcome_credits"], granted["balance"]) == (None, "free", 10, 35)
    assert granted["entry"]["counter_account"] == "shop:grants" and granted["created"]

    assert "balance 30" in photogen("adjust", "alice", "-5", "--reason", "double grant")  # "-5" is a number, not an option
    refused = photogen("adjust", "alice", "-31", "--reason", "too much", code=2)
    assert "has 30 credits" in refused and refused.endswith("[insufficient_credits]")

    again = ("grant", "alice", "7", "--reason", "retried script", "--idempotency-key", "ticket-42", "--json")
    first, second = photogen(*again), photogen(*again)
    assert (first["created"], second["created"], second["balance"]) == (True, False, 37)
    assert second["entry"]["id"] == first["entry"]["id"]
    reused = photogen("grant", "alice", "8", "--reason", "x", "--idempotency-key", "ticket-42", code=2)
    assert "ticket-42" in reused and reused.endswith("[idempotency_key_reused]")

    shown = photogen("show", "alice", "--json")
    assert (shown["ref"], shown["plan"], shown["balance"], shown["customer_id"]) == ("alice", "free", 37, granted["customer_id"])
    moved = [(e["kind"], e["amount"]) for e in shown["entries"]]
    assert moved == [("grant", 10), ("grant", 25), ("adjustment", -5), ("grant", 7)]
    assert sum(lot["remaining"] for lot in shown["lots"]) == 37
    assert _entries(database)[1:] == [("grant", 25, "sorry for the wait"), ("adjustment", -5, "double grant"),
                                      ("grant", 7, "retried script")]  # fmt: skip
    text = photogen("show", "alice")
    assert text.splitlines()[0].endswith(": 37 credits") and "double grant" in text


def test_expiry_is_a_day_an_iso_time_or_days_from_now(shop):
    _, photogen, _ = shop
    day = (datetime.now(UTC) + timedelta(days=3)).date()
    through = photogen("grant", "bob", "5", "--reason", "promo", "--expires", day.isoformat(), "--json")
    assert through["entry"]["expires_at"] == f"{day + timedelta(days=1)}T00:00:00+00:00"  # spendable through the day
    week = photogen("grant", "bob", "5", "--reason", "promo", "--expires-in-days", "7", "--json")
    left = datetime.fromisoformat(week["entry"]["expires_at"]) - datetime.now(UTC)
    assert timedelta(days=7) - timedelta(minutes=5) < left <= timedelta(days=7)
    assert "not both" in photogen("grant", "bob", "1", "--reason", "x", "--expires", str(day), "--expires-in-days", "1", code=2)
    assert "is past" in photogen("grant", "bob", "1", "--reason", "x", "--expires", "2020-01-01", code=2)
    assert "YYYY-MM-DD" in photogen("grant", "bob", "1", "--reason", "x", "--expires", "next week", code=2)


def test_the_customer_is_found_in_its_shop_or_the_operator_is_asked_for_the_key(shop):
    database, photogen, _ = shop
    first, _ = create_api_key(database, "first shop")
    grant = ("--reason", "goodwill", "--json")
    # the only active key: a new customer is that shop's, as if its storefront had named them
    assert photogen("grant", "carol", "3", *grant)["api_key_id"] == first.id
    second, _ = create_api_key(database, "second shop")
    assert photogen("grant", "carol", "2", *grant)["balance"] == 15  # one carol: no doubt which
    asked = photogen("grant", "dave", "3", "--reason", "x", code=2)  # new, and two shops it could be in
    assert "--key" in asked and first.id in asked and second.id in asked
    assert photogen("grant", "dave", "3", *grant, "--key", second.id)["api_key_id"] == second.id
    assert photogen("grant", "carol", "4", *grant, "--key", second.id)["balance"] == 14  # the second shop's carol

    ambiguous = photogen("show", "carol", code=2)
    assert "2 storefront keys" in ambiguous and "--key" in ambiguous
    assert photogen("show", "carol", "--key", first.id, "--json")["balance"] == 15
    assert photogen("adjust", "carol", "-14", "--reason", "x", "--key", second.id, "--json")["balance"] == 0
    assert "no API key key_nope" in photogen("show", "carol", "--key", "key_nope", code=2)
    assert photogen("show", "erin", code=2).endswith("[customer_not_found]")
    # a correction needs a wallet to correct
    assert photogen("adjust", "erin", "5", "--reason", "x", code=2).endswith("[customer_not_found]")

    revoke_api_key(database, first.id)  # a revoked key's shop takes no new customers
    assert photogen("grant", "frank", "1", *grant)["api_key_id"] == second.id
    assert photogen("grant", "gina", "1", *grant, "--key", "")["api_key_id"] is None  # the operator's own, explicitly
    with database.session() as session:
        assert customers.find(session, None, "gina") is not None


BAD = [
    (["grant", "alice", "5"], "--reason is required"),
    (["grant", "alice", "5", "--reason", "  "], "--reason is required"),
    (["grant", "alice", "five", "--reason", "x"], "'five' is not a valid integer"),
    (["grant", "alice", "0", "--reason", "x"], "at least 1"),
    (["grant", "alice", "-3", "--reason", "x"], "at least 1"),
    (["grant", "alice", "2000000", "--reason", "x"], "[invalid_credits]"),
    (["grant", "no spaces", "5", "--reason", "x"], "[invalid_customer_ref]"),
    (["grant", "--reason", "x"], "Missing argument 'REF'"),
    (["grant", "alice", "1", "--reason", "x", "--expires-in-days", "0"], "--expires-in-days"),
    (["adjust", "alice", "0", "--reason", "x"], "changes nothing"),
    (["adjust", "alice", "-1", "--reason", "x"], "[customer_not_found]"),
    (["show"], "Missing argument 'REF'"),
]


def test_every_bad_input_is_one_line_and_exit_2_and_moves_nothing(shop):
    database, photogen, _ = shop
    for args, says in BAD:
        assert says in photogen(*args, code=2), args
    assert _entries(database) == []


@pytest.mark.parametrize(("args", "says"), [BAD[0], BAD[2], BAD[-2]])
def test_bad_input_from_the_installed_command_is_one_line_and_exit_2(tmp_path, args, says):
    env = {"PATH": "/usr/bin:/bin", "PHOTOGEN_HOME": str(tmp_path / "home")}
    result = subprocess.run([str(PHOTOGEN), "credits", *args], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 2, (result.returncode, result.stderr)
    errors = [line for line in result.stderr.splitlines() if line.startswith("photogen: error:")]
    assert len(errors) == 1 and says in errors[0], result.stderr
    assert all(line.startswith("[photogen] ") for line in result.stderr.splitlines() if line not in errors), result.stderr
    assert result.stdout == "" and "Traceback" not in result.stderr
