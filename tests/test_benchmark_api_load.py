"""benchmarks/api_load.py, briefly: the real API under uvicorn on a throwaway PostgreSQL
database, every kind of request in the mix sent and answered as expected, the report whole.
No timing thresholds: this checks the benchmark, not the machine."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.api_load import MIX, schedule

ROOT = Path(__file__).resolve().parents[1]


def test_the_mix_holds_every_kind_in_its_share_in_any_20_requests():
    kinds = schedule(60)
    for start in range(0, 41):
        window = kinds[start : start + 20]
        assert {kind: window.count(kind) for kind, _ in MIX} == dict(MIX)


@pytest.mark.slow
def test_api_load_runs_every_request_kind_without_errors(postgres_server):
    env = {**os.environ, "PHOTOGEN_TEST_POSTGRES_URL": postgres_server}
    command = [sys.executable, str(ROOT / "benchmarks" / "api_load.py"), "--rate", "5", "--seconds", "4", "--json"]
    done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-5000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    rows = result["rows"]
    assert set(rows) == {kind for kind, _ in MIX} | {"all"}
    assert rows["all"]["planned"] == 20 and result["unanswered_at_drain"] == 0
    for kind, row in rows.items():
        assert row["sent"] > 0, kind
        assert row["sent"] == row["planned"] == row["ok"], (kind, row)
        assert row["errors"] == 0 and row["rate_limited"] == 0, (kind, row)
        assert row["p50_ms"] is not None and 0 < row["p50_ms"] <= row["p95_ms"] <= row["p99_ms"] <= row["max_ms"], (kind, row)
    assert sum(rows[kind]["sent"] for kind, _ in MIX) == rows["all"]["sent"]
    assert "| **all** |" in done.stdout  # the markdown table
