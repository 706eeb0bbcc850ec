"""deploy/monitoring/ (issue 28, alerting): the alert rules and the Grafana dashboard read
series the API really exposes, their PromQL parses, and each alert fires on the series
that should raise it (promtool, from Debian's `prometheus` package, which .ci/run
installs; locally the promtool tests skip and say so, with CI=true they fail without it)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
import requests
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.api_helpers import jpeg_bytes, make_app, make_settings, new_key, order_body
from tests.servers import api_server

MONITORING = Path(__file__).resolve().parents[1] / "deploy" / "monitoring"
OUR_SERIES = re.compile(r"\bphotogen_[a-z_]+\b")


def _promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is missing on CI: .ci/run installs Debian's prometheus package")
        pytest.skip("promtool is not installed (apt-get install prometheus); CI runs these")
    return found


def _rule_expressions() -> list[str]:
    rules = yaml.safe_load((MONITORING / "alerts.yaml").read_text())
    return [rule["expr"] for group in rules["groups"] for rule in group["rules"]]


def _dashboard_expressions() -> list[str]:
    dashboard = json.loads((MONITORING / "grafana-dashboard.json").read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


def test_the_alert_rules_and_the_scrape_config_pass_promtools_checks():
    promtool = _promtool()
    for command in (["check", "rules", "alerts.yaml"], ["check", "config", "prometheus.yaml"]):
        checked = subprocess.run([promtool, *command], cwd=MONITORING, capture_output=True, text=True, timeout=60)
        assert checked.returncode == 0, checked.stdout + checked.stderr


def test_each_alert_fires_on_its_series_and_stays_quiet_on_a_healthy_shop():
    tested = subprocess.run(
        [_promtool(), "test", "rules", "alerts.test.yaml"], cwd=MONITORING, capture_output=True, text=True, timeout=120
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr
    fired = {
        test["alertname"]
        for case in yaml.safe_load((MONITORING / "alerts.test.yaml").read_text())["tests"]
        for test in case["alert_rule_test"]
        if test["exp_alerts"]
    }
    alerts = {
        rule["alert"] for group in yaml.safe_load((MONITORING / "alerts.yaml").read_text())["groups"] for rule in group["rules"]
    }
    assert fired == alerts  # every alert is shown firing at least once


def test_every_dashboard_query_is_promql(tmp_path):
    # promtool parses PromQL in rule files: the dashboard's queries, as recording rules
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [{"record": f"dashboard:q{i}", "expr": e} for i, e in enumerate(_dashboard_expressions())],
            }
        ]
    }
    (tmp_path / "dashboard-queries.yaml").write_text(yaml.safe_dump(rules))
    checked = subprocess.run(
        [_promtool(), "check", "rules", "dashboard-queries.yaml"], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_every_series_the_rules_and_the_dashboard_read_is_one_the_api_exposes(tmp_path, face_images):
    """Scraped from a real API after one order: a renamed metric breaks this, not an alert that silently never fires."""
    settings = make_settings(tmp_path, f"sqlite:///{tmp_path / 'orders.db'}")
    with api_server(make_app(settings)) as url:
        auth = new_key(settings)
        upload = requests.post(
            f"{url}/v1/uploads",
            headers=auth,
            data={"consent": "true"},
            files={"file": ("me.jpg", jpeg_bytes(face_images["obama"]))},
            timeout=30,
        )
        headers = {**auth, "Idempotency-Key": str(uuid.uuid4())}
        requests.post(f"{url}/v1/orders", headers=headers, json=order_body(upload.json()["id"]), timeout=30).raise_for_status()
        scraped = requests.get(f"{url}/metrics", timeout=10).text
    families = list(text_string_to_metric_families(scraped))
    # a counter with no sample yet (nothing refunded) is still declared: its series will be `<name>_total`
    counters = {f"{family.name}_total" for family in families if family.type == "counter"}
    exposed = {family.name for family in families} | counters | {sample.name for family in families for sample in family.samples}

    read = {name for expr in _rule_expressions() + _dashboard_expressions() for name in OUR_SERIES.findall(expr)}
    # the engine service's series are its own /metrics' (tests/test_engine_service_metrics.py scrapes it)
    read = {name for name in read if not name.startswith("photogen_engine_")}

    assert read, "the rules and the dashboard read no photogen_ series"
    assert read <= exposed, f"read but never exposed: {sorted(read - exposed)}"
