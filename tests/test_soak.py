"""The soak's CI variant (benchmarks/soak.py): a handful of orders through `photogen serve` on
PostgreSQL with payments on (localstripe), while a run worker, the daemon and the whole service
are SIGKILLed, Stripe is unreachable, and Stripe's webhooks come twice, late and out of order.
Every invariant of tests/invariants.py must hold at the end, against localstripe's
own records. The full soak (200 orders, 10 faults of each kind) is in BENCHMARKS.md."""

from __future__ import annotations

import argparse

import pytest

from benchmarks.soak import FAULTS, soak

pytestmark = pytest.mark.slow  # the soak: photogen serve on PostgreSQL with localstripe, killed and restarted


def test_a_small_soak_with_every_kind_of_fault_keeps_every_invariant(tmp_path, postgres_server):
    args = argparse.Namespace(orders=8, seed=11, faults=1, outage=10.0, fault_every=12.0, customers=3, timeout=900.0, keep=False)
    result = soak(args, tmp_path)

    assert result["invariants_hold"], "\n".join(result["invariants"] + result["customer_errors"] + result["unexpected_exits"])
    assert result["faults_injected"] == dict.fromkeys(FAULTS, 1)
    assert sum(result["webhook_faults"].values()) >= 1 and result["webhooks_received"] >= 1
    assert result["service_starts"] == 3  # the first start, and after the daemon and the service were killed
    assert result["orders"] + result["refused_uploads"] == args.orders
    assert result["paid_to_proofs_ready_p50_s"] is not None
    checked = [line.split(":")[0] for line in result["invariants"] if line.startswith("ok ")]
    # settled, money, runs, files, the report against the orders database, the credits' three,
    # and what never became a paid order (photos nobody ordered with, unpaid checkouts' recipients)
    assert len(checked) == 9
