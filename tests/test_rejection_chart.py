"""The rejection-metrics chart where an operator can see it: each style's rate as a float
Dagster plots across the daily partitions, and the PNG behind an http(s) link the storefront
API serves, signed for good for its day. Materialized on a real Dagster instance, the link
fetched over real HTTP from the API started on the same home folder."""

from __future__ import annotations

import io
import json
from urllib.parse import parse_qs, urlsplit

import dagster as dg
import pandas as pd
import pytest
import requests
from PIL import Image

from assets.analytics import analytics_assets
from photogen_pipelines.access.signing import Signer
from photogen_pipelines.analytics.ledger import read_ledger_day
from photogen_pipelines.analytics.metrics import CHART_LINK, chart_path, metrics_key, rejection_table
from photogen_pipelines.definitions import build_defs
from photogen_pipelines.settings import LocalPaths
from resources import ArtifactStorage, OrdersDatabase, StoreConfig
from resources.links import OperatorLinks
from tests.api_helpers import make_app, make_settings
from tests.dagster_helpers import local_instance
from tests.servers import api_server
from tests.test_costs import DAY, shop  # noqa: F401  (the fixture: six orders settled on DAY, no pipeline run)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SHOWN = "/tmp/photogen_rejection_chart_served.png"  # what the API served, for a person to look at


@pytest.fixture
def served(tmp_path, shop):  # noqa: F811
    """The storefront API on the shop's database and artifacts, and a home folder that holds
    its signing secret, which the code location shares (as `photogen serve` sets them up)."""
    home = tmp_path / "home"
    settings = make_settings(tmp_path, shop["url"], artifacts_root=str(shop["store"].root), secret_key=None)
    assert settings.home == str(home)
    with api_server(make_app(settings)) as base:
        yield {"base": base, "home": home, **shop}


def _materialize(instance: dg.DagsterInstance, resources: dict, day: str) -> dg.ExecuteInJobResult:
    result = dg.materialize(analytics_assets, partition_key=day, instance=instance, resources=resources)
    assert result.success
    return result


def _metadata(result: dg.ExecuteInJobResult) -> dict:
    return result.asset_materializations_for_node("rejection_metrics")[0].metadata


def test_the_chart_link_opens_the_png_from_the_api_and_the_rates_are_plotted_per_style(served, tmp_path):
    day = DAY.date().isoformat()
    # the code location as `photogen` builds it: the same home (its secret), the public base URL
    defs = build_defs(
        str(served["home"]), database_url=served["url"], artifacts_root=str(served["store"].root), public_base_url=served["base"]
    )
    resources = {name: defs.resources[name] for name in ("orders", "storage", "links")}
    with local_instance(tmp_path / "dagster") as instance:
        result = _materialize(instance, resources, day)
        # what the UI reads: the materialization as the instance recorded it
        (record,) = instance.fetch_materializations(dg.AssetKey("rejection_metrics"), limit=5).records
        metadata = record.asset_materialization.metadata
    assert record.partition_key == day
    assert metadata == _metadata(result)

    # one float per style that had an order that day, over all its engines: the Plots tab's series
    ledger = read_ledger_day(served["store"], day)
    per_style = {k.removeprefix("rejection_rate/"): v for k, v in metadata.items() if k.startswith("rejection_rate/")}
    assert set(per_style) == set(ledger["style_id"]) == {"sepia_oil", "starry_swirl", "fauve"}
    assert all(isinstance(v, dg.FloatMetadataValue) for v in per_style.values())
    assert per_style["sepia_oil"].value == 0.0 and per_style["starry_swirl"].value == 0.5  # 0 of 3, 1 of 2
    assert per_style["fauve"].value is None  # its one order was cancelled before a verdict: a gap in its plot
    table = rejection_table(ledger, by=("style_id",)).set_index("style_id")["rejection_rate"]
    assert {s: v.value for s, v in per_style.items()} == {s: None if pd.isna(r) else round(r, 4) for s, r in table.items()}
    assert isinstance(metadata["rejection_rate"], dg.FloatMetadataValue)  # the overall rate, as before

    # the chart: an http link to the API, never a file:// or s3:// path
    chart = metadata["chart"]
    assert isinstance(chart, dg.UrlMetadataValue)
    url = chart.value
    assert chart_path(day) == f"/v1/metrics/rejections/{day}.png"
    assert url.startswith(f"{served['base']}{chart_path(day)}?signature=")
    response = requests.get(url, timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    assert "private" in response.headers["cache-control"]
    png = response.content
    assert png[:8] == PNG_MAGIC
    assert png == served["store"].get_bytes(metrics_key(day, "png"))
    with Image.open(io.BytesIO(png)) as image:
        image.verify()
    with Image.open(io.BytesIO(png)) as image:
        assert image.format == "PNG" and image.width >= 800 and image.height >= 200
    with open(SHOWN, "wb") as copy:
        copy.write(png)

    # images stay out of the event log: a link and numbers, a few kilobytes in all
    everything = json.dumps([str(v) for v in metadata.values()])
    assert "base64" not in everything and "data:image" not in everything and len(everything) < 20_000
    assert [name for name, value in metadata.items() if ".png" in str(value)] == ["chart"]  # the link, and only it


def test_the_link_is_refused_when_tampered_with_or_used_for_another_day(served, tmp_path):
    day = DAY.date().isoformat()
    links = OperatorLinks(public_base_url=served["base"], home=str(served["home"]))
    resources = {
        "orders": OrdersDatabase(url=served["url"]),
        "storage": ArtifactStorage(settings=StoreConfig(root=str(served["store"].root))),
        "links": links,
    }
    with local_instance(tmp_path / "dagster") as instance:
        url = _metadata(_materialize(instance, resources, day))["chart"].value
    assert requests.get(url, timeout=10).status_code == 200
    signature = parse_qs(urlsplit(url).query)["signature"][0]
    base = served["base"]

    def error(response: requests.Response) -> tuple[int, str]:
        return response.status_code, response.json()["code"]

    refused = (403, "link_expired_or_invalid")
    assert error(requests.get(url.replace("signature=", "signature=x"), timeout=10)) == refused
    assert error(requests.get(f"{base}{chart_path('2026-11-21')}?signature={signature}", timeout=10)) == refused
    assert requests.get(f"{base}{chart_path(day)}", timeout=10).status_code == 422  # no signature at all
    assert requests.get(f"{base}/v1/metrics/rejections/yesterday.png?signature={signature}", timeout=10).status_code == 422
    # another purpose's signature over the same text is not a chart link (file links, order tokens)
    signer = Signer(LocalPaths.resolve(served["home"]).secret_key())
    file_like = parse_qs(signer.file_query(day, 3600))["signature"][0]
    assert error(requests.get(f"{base}{chart_path(day)}?signature={file_like}", timeout=10)) == refused
    # a valid link to a day nobody materialized: no chart (yet)
    other_day = f"{base}{chart_path('2026-11-21')}?signature={signer.link_signature(CHART_LINK, '2026-11-21')}"
    assert error(requests.get(other_day, timeout=10)) == (404, "file_not_found")
    # the route is an operator's link, not part of the storefront's API document
    assert not any(p.startswith("/v1/metrics") for p in requests.get(f"{base}/openapi.json", timeout=10).json()["paths"])


def test_without_a_public_base_url_the_metadata_says_so_instead_of_a_dead_link(served, tmp_path):
    day = DAY.date().isoformat()
    defs = build_defs(str(served["home"]), database_url=served["url"], artifacts_root=str(served["store"].root))
    assert defs.resources["links"].public_base_url is None
    resources = {name: defs.resources[name] for name in ("orders", "storage", "links")}
    with local_instance(tmp_path / "dagster") as instance:
        metadata = _metadata(_materialize(instance, resources, day))
    chart = metadata["chart"]
    assert isinstance(chart, dg.MarkdownMetadataValue)
    assert "PHOTOGEN_PUBLIC_BASE_URL" in chart.value and metrics_key(day, "png") in chart.value
    assert "file://" not in chart.value and "s3://" not in chart.value and "http" not in chart.value
    assert metadata["rejection_rate/starry_swirl"].value == 0.5  # the plots need no link
    assert not any(isinstance(v, dg.UrlMetadataValue | dg.PathMetadataValue) and "png" in str(v.value) for v in metadata.values())


def test_a_deploys_secret_reaches_the_resource_as_its_variable_and_signs_the_link(shop, tmp_path, monkeypatch):  # noqa: F811
    secret = "a-secret-of-the-deploy-" + "0123456789"
    monkeypatch.setenv("PHOTOGEN_SECRET_KEY", secret)
    defs = build_defs(
        str(tmp_path / "home"),
        database_url=shop["url"],
        artifacts_root=str(shop["store"].root),
        public_base_url="https://api.shop.example/",
    )
    links = defs.resources["links"]
    # the UI shows the resource's config: the variable's name, never the secret
    assert isinstance(links.secret_key, dg.EnvVar) and links.secret_key == dg.EnvVar("PHOTOGEN_SECRET_KEY")
    resources = {name: defs.resources[name] for name in ("orders", "storage", "links")}
    day = DAY.date().isoformat()
    with local_instance(tmp_path / "dagster") as instance:
        url = _metadata(_materialize(instance, resources, day))["chart"].value
    signature = Signer(secret).link_signature(CHART_LINK, day)
    assert url == f"https://api.shop.example/v1/metrics/rejections/{day}.png?signature={signature}"
