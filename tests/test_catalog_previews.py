"""Catalog previews: each style rendered on the reference faces through Dagster with the real
embedded engines, kept current by a weekly schedule and a catalog-version sensor, and
linked from the storefront's style list."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime

import dagster as dg
import numpy as np
import pytest
import yaml
from fastapi.testclient import TestClient
from PIL import Image

from assets.catalog_previews import catalog_assets, catalog_preview_job, style_previews
from photogen_pipelines.catalog import load_styles
from photogen_pipelines.generation.previews import GAP, catalog_version, latest_key, latest_preview, preview_key, reference_faces
from photogen_pipelines.storage.stores import LocalArtifactStore, get_json
from resources import ArtifactStorage, CatalogResource, FaceEngine, SafetyEngine, StoreConfig, StyleEngine
from sensors.catalog import catalog_schedules_and_sensors, catalog_version_changed, weekly_catalog_previews
from tests.api_helpers import make_app, make_settings
from tests.dagster_helpers import local_instance

RENDERED = ["sepia_oil", "pastel_cubist"]


def _resources(root) -> dict:
    return {
        "storage": ArtifactStorage(settings=StoreConfig(root=str(root))),
        "catalog": CatalogResource(),
        "faces": FaceEngine(),
        "styles": StyleEngine(),
        "safety": SafetyEngine(),  # every preview tile is checked for explicit content
    }


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """Two styles' previews materialized on a real instance: (artifact root, result per style)."""
    base = tmp_path_factory.mktemp("previews")
    results = {}
    with local_instance(base / "dagster") as instance:
        for style_id in RENDERED:
            results[style_id] = dg.materialize(
                catalog_assets, partition_key=style_id, instance=instance, resources=_resources(base / "artifacts")
            )
        yield base / "artifacts", results


@pytest.fixture(scope="module")
def version(stylizer) -> str:
    return catalog_version(load_styles(), stylizer.version)


def test_a_style_preview_is_stored_with_its_pointer_and_numeric_metadata(rendered, version, analyzer):
    root, results = rendered
    store = LocalArtifactStore(root)
    faces = [f.name for f in reference_faces()]
    assert faces == ["ardern", "macron", "obama", "astronaut"]
    for style_id, result in results.items():
        assert result.success
        (materialization,) = result.asset_materializations_for_node("style_previews")
        assert materialization.partition == style_id
        metadata = materialization.metadata
        assert metadata["version"].value == version
        assert metadata["preview"].value == store.uri(preview_key(style_id, version))
        scores = {name: metadata[f"identity_{name}"].value for name in faces}
        assert all(isinstance(v, float) and -1.0 <= v <= 1.0 for v in scores.values())
        assert metadata["faces"].value == 4 and 0 <= metadata["faces_passed"].value <= 4
        # images are linked, never inlined into the event log
        assert all(len(json.dumps(v.value, default=str)) < 500 for v in metadata.values())

        latest = get_json(store, latest_key(style_id))
        assert latest["version"] == version and latest["key"] == preview_key(style_id, version)
        assert datetime.fromisoformat(latest["rendered_at"]).tzinfo is not None
        assert {k: (v if v is not None else -1.0) for k, v in latest["identity_scores"].items()} == scores
        assert latest["threshold"] == load_styles().get(style_id).identity_threshold
        assert [f["passed"] for f in latest["faces"]].count(True) == metadata["faces_passed"].value

        with Image.open(io.BytesIO(store.get_bytes(latest["key"]))) as sheet:
            assert sheet.format == "PNG" and sheet.mode == "RGB"
            pixels = np.asarray(sheet)
        # four 4:5 portraits at 512 px high, side by side, each with a face the detector finds
        tile_w = (sheet.width - 5 * GAP) // 4
        assert sheet.height == 512 + 2 * GAP and abs(tile_w / 512 - 0.8) < 0.01
        for i in range(4):
            tile = pixels[GAP : GAP + 512, GAP + i * (tile_w + GAP) : GAP + i * (tile_w + GAP) + tile_w]
            assert tile.std() > 20  # painted, not blank
    # the well-behaved sepia style keeps every reference face recognisable
    assert results["sepia_oil"].asset_materializations_for_node("style_previews")[0].metadata["faces_passed"].value == 4
    assert not store.exists(latest_key("fauve"))


@pytest.mark.slow
def test_a_catalog_backfill_renders_many_styles_in_one_run(tmp_path, version):
    """The backfill policy is single-run: one process, the style engine loaded once."""
    first, second = load_styles().ids()[:2]
    resources = _resources(tmp_path / "artifacts")
    defs = dg.Definitions(assets=catalog_assets, jobs=[catalog_preview_job], resources=resources)
    assert style_previews.backfill_policy == dg.BackfillPolicy.single_run()
    with local_instance(tmp_path / "dagster") as instance:
        result = defs.resolve_job_def("catalog_preview_job").execute_in_process(
            instance=instance,
            tags={"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": second},
        )
        assert result.success
        materialized = instance.get_materialized_partitions(style_previews.key)
        assert materialized == {first, second} and len(instance.get_runs()) == 1
    store = LocalArtifactStore(tmp_path / "artifacts")
    assert [latest_preview(store, s).version for s in (first, second)] == [version, version]
    metadata = result.asset_materializations_for_node("style_previews")[0].metadata
    assert metadata["styles"].value == 2 and metadata["version"].value == version
    table = metadata["per_style"].value
    assert f"| {first} |" in table and f"| {second} |" in table


def test_the_weekly_schedule_requests_one_run_per_style():
    context = dg.build_schedule_context(
        scheduled_execution_time=datetime(2026, 3, 2, 3, 0, tzinfo=UTC), resources={"catalog": CatalogResource()}
    )
    requests = weekly_catalog_previews(context)
    assert [r.partition_key for r in requests] == load_styles().ids()
    assert len({r.run_key for r in requests}) == len(requests)
    assert all(r.run_key == f"weekly:2026-03-02:{r.partition_key}" for r in requests)
    later = dg.build_schedule_context(
        scheduled_execution_time=datetime(2026, 3, 9, 3, 0, tzinfo=UTC), resources={"catalog": CatalogResource()}
    )
    assert not {r.run_key for r in requests} & {r.run_key for r in weekly_catalog_previews(later)}  # next week runs again


def _tick(context):
    result = catalog_version_changed(context)
    if isinstance(result, dg.SensorResult) and result.cursor:
        context.update_cursor(result.cursor)
    return result


def test_the_version_sensor_renders_on_first_tick_and_after_a_change_only(tmp_path, version, stylizer, monkeypatch):
    resources = _resources(tmp_path / "artifacts")
    with dg.build_sensor_context(resources=resources) as context:
        first = _tick(context)
        assert [r.partition_key for r in first.run_requests] == load_styles().ids()
        assert {r.run_key for r in first.run_requests} == {f"{version}:{s}" for s in load_styles().ids()}
        assert context.cursor == version

        unchanged = _tick(context)
        assert isinstance(unchanged, dg.SkipReason) and version in unchanged.skip_message

        # merchandising softens a style
        edited = load_styles().model_dump(mode="json")
        edited["styles"][0]["embedded"]["strength"] = 0.4
        path = tmp_path / "styles.yaml"
        path.write_text(yaml.safe_dump(edited))
        resources["catalog"] = CatalogResource(styles_path=str(path))
    with dg.build_sensor_context(resources=resources, cursor=context.cursor) as context:
        changed = _tick(context)
        new_version = catalog_version(load_styles(str(path)), stylizer.version)
        assert new_version != version and context.cursor == new_version
        assert [r.run_key for r in changed.run_requests] == [f"{new_version}:{s}" for s in load_styles().ids()]
        assert isinstance(_tick(context), dg.SkipReason)

        # a new style engine renders everything again too
        monkeypatch.setattr(stylizer, "version", stylizer.version + " (retrained)")
        engine = _tick(context)
        assert len(engine.run_requests) == len(load_styles().ids()) and context.cursor not in (version, new_version)


def test_a_first_tick_skips_styles_already_rendered_at_this_version(rendered, version):
    root, _ = rendered
    with dg.build_sensor_context(resources=_resources(root)) as context:
        result = _tick(context)
    assert [r.partition_key for r in result.run_requests] == [s for s in load_styles().ids() if s not in RENDERED]


def test_the_storefront_links_each_rendered_preview_and_null_for_the_others(tmp_path, rendered, version):
    root, _ = rendered
    settings = make_settings(tmp_path, f"sqlite:///{tmp_path / 'orders.db'}", artifacts_root=str(root))
    with TestClient(make_app(settings), raise_server_exceptions=False) as client:
        styles = {s["id"]: s for s in client.get("/v1/styles").json()}
        assert set(styles) == set(load_styles().ids())
        for style_id, style in styles.items():
            if style_id not in RENDERED:
                assert style["preview_url"] is None, style_id
                continue
            assert f"/v1/files/catalog/previews/{style_id}/{version}.png?" in style["preview_url"]
            response = client.get(style["preview_url"])
            assert response.status_code == 200, response.text
            assert response.headers["content-type"] == "image/png"
            assert Image.open(io.BytesIO(response.content)).format == "PNG"
        # the link is signed: another key with the same signature is refused
        forged = styles["sepia_oil"]["preview_url"].replace("sepia_oil", "pastel_cubist")
        assert client.get(forged).status_code == 403


def test_the_catalog_definitions_load_together():
    defs = dg.Definitions(
        assets=catalog_assets,
        jobs=[catalog_preview_job],
        schedules=[d for d in catalog_schedules_and_sensors if isinstance(d, dg.ScheduleDefinition)],
        sensors=[d for d in catalog_schedules_and_sensors if isinstance(d, dg.SensorDefinition)],
        resources=_resources("/tmp/unused"),
    )
    dg.Definitions.validate_loadable(defs)
    job = defs.resolve_job_def("catalog_preview_job")
    assert job.partitions_def.get_partition_keys() == load_styles().ids()
    assert style_previews.group_names_by_key[style_previews.key] == "catalog"
