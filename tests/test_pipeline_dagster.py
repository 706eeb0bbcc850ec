"""Every asset materialized through Dagster on a real (SQLite) instance, one order each."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import numpy as np
import pytest
import yaml
from PIL import Image, ImageCms

import assets
from photogen_pipelines.catalog import load_quality, load_styles
from photogen_pipelines.definitions import build_defs, register_local_order
from photogen_pipelines.imaging.variety import proof_variety
from photogen_pipelines.orders.states import OrderState
from photogen_pipelines.storage.artifacts import OrderKeys
from photogen_pipelines.storage.stores import get_json
from resources import CatalogResource

ALL_ASSETS = [*assets.proof_assets, *assets.print_assets, *assets.order_checks]


@pytest.fixture
def instance(tmp_path):
    (tmp_path / "dagster").mkdir()
    with dg.DagsterInstance.local_temp(str(tmp_path / "dagster"), overrides={"telemetry": {"enabled": False}}) as instance:
        yield instance


@pytest.fixture
def defs(tmp_path):
    return build_defs(str(tmp_path / "home"))


def _register(defs, instance, upload: bytes, style_id="sepia_oil", product_id="poster_a3", variants=2):
    order = register_local_order(defs, upload, style_id, product_id, variants, approval="auto")
    instance.add_dynamic_partitions("orders", [order.id])
    return order


def _materialize(defs, instance, selection, order_id, raise_on_error=True):
    return dg.materialize(
        ALL_ASSETS,
        selection=selection,
        partition_key=order_id,
        instance=instance,
        resources=defs.resources,
        raise_on_error=raise_on_error,
    )


@pytest.mark.slow
def test_an_order_materializes_every_asset_and_ends_ready(defs, instance, astronaut_png):
    book, store = defs.resources["orders"].book(), defs.resources["storage"].store()
    order = _register(defs, instance, astronaut_png)
    assert book.get(order.id).state == OrderState.PAID

    proof_run = _materialize(defs, instance, assets.proof_assets, order.id)
    assert proof_run.success
    # approval="auto": the proof run approves the best-scoring proof itself
    best = get_json(store, OrderKeys(order.id).validation)["best_variant"]
    approved = book.get(order.id)
    assert approved.state == OrderState.APPROVED and approved.approved_proof == best
    assert [e.to_state for e in approved.events][-2:] == [OrderState.PROOFS_READY, OrderState.APPROVED]
    checks = proof_run.get_asset_check_evaluations()
    assert sorted((c.check_name, c.passed) for c in checks) == [
        ("identity_preserved", True),
        ("one_face_per_proof", True),
        ("proofs_are_safe", True),
    ]
    similarities = proof_run.asset_materializations_for_node("validated_proofs")[0].metadata
    assert similarities["best_similarity"].value >= similarities["threshold"].value
    # the order's variety, as the UI plots it, is that of the proofs it stored
    stored = [
        Image.open(io.BytesIO(store.get_bytes(key))).convert("RGB")
        for key in get_json(store, OrderKeys(order.id).validation)["proofs"].values()
    ]
    variety = proof_variety([np.asarray(image) for image in stored])
    assert similarities["proof_variety"].value == pytest.approx(variety if variety is not None else -1.0, abs=1e-3)

    print_run = _materialize(defs, instance, assets.print_assets, order.id)
    assert print_run.success
    finished = book.get(order.id)
    assert finished.state == OrderState.READY
    assert set(finished.stage_seconds) == {"selfie", "styled_candidates", "validated_proofs", "print_master", "print_file"}
    print_checks = {c.check_name: c for c in print_run.get_asset_check_evaluations()}
    assert {name: c.passed for name, c in print_checks.items()} == {
        "print_spec_met": True,
        "upscale_faithful": True,
        "print_detail_clean": True,
        "provider_accepted": True,  # no print provider configured: the file waits for download
    }
    fulfilled = print_run.asset_materializations_for_node("fulfilment")[0].metadata
    assert fulfilled["provider"].value == "none" and fulfilled["status"].value == "not_sent"
    ssim = print_checks["upscale_faithful"].metadata["ssim"].value
    assert load_quality().upscale_faithful.min_ssim <= ssim < 1.0
    detail = print_checks["print_detail_clean"].metadata
    assert detail["max_pattern_score"].value == load_quality().print_detail_clean.max_pattern_score
    assert detail["pattern_score"].value <= detail["max_pattern_score"].value

    # the instance remembers every materialization of this partition, as the UI shows them
    for asset in ["selfie", "styled_candidates", "validated_proofs", "print_master", "print_file"]:
        event = instance.get_latest_materialization_event(dg.AssetKey(asset))
        assert event is not None and event.dagster_event.partition == order.id, asset

    manifest = get_json(store, OrderKeys(order.id).manifest)
    with Image.open(io.BytesIO(store.get_bytes(manifest["file"]))) as printed:
        assert printed.format == "JPEG"
        assert printed.size == (3508, 4961) == tuple(manifest["pixel_size"])
        assert tuple(round(float(v)) for v in printed.info["dpi"]) == (300, 300)
        profile = ImageCms.ImageCmsProfile(io.BytesIO(printed.info["icc_profile"]))
        assert "sRGB" in ImageCms.getProfileDescription(profile)
    assert manifest["effective_dpi"] >= 150
    assert manifest["identity_score"] >= manifest["identity_threshold"]
    # images are stored as image files, never pickles
    stored = store.list(f"orders/{order.id}")
    assert not [k for k in stored if k.endswith((".pkl", ".pickle"))]
    assert all(Image.open(store.path(k)).format == "PNG" for k in stored if "/proofs/proof_" in k)


def test_a_selfie_of_two_people_rejects_the_order_with_the_reason(defs, instance, face_images, astronaut_png):
    import numpy as np

    from photogen_pipelines.imaging.images import png_bytes

    order = _register(defs, instance, astronaut_png)
    # the upload is replaced after intake's check, as a corrupted store or a bad API client would
    pair = np.concatenate([face_images["astronaut"][:, 100:400], face_images["astronaut"][:, 100:400]], axis=1)
    defs.resources["storage"].store().put_bytes(order.upload_key, png_bytes(pair))
    result = _materialize(defs, instance, assets.proof_assets, order.id, raise_on_error=False)
    assert not result.success
    rejected = defs.resources["orders"].book().get(order.id)
    assert rejected.state == OrderState.REJECTED
    assert rejected.reason.startswith("several_faces")
    assert instance.get_latest_materialization_event(dg.AssetKey("validated_proofs")) is None


@pytest.mark.slow
def test_an_identity_gate_that_no_proof_passes_rejects_and_blocks(tmp_path, instance, astronaut_png):
    styles = tmp_path / "styles.yaml"
    catalog = load_styles().model_dump(mode="json")
    catalog["max_rounds"] = 1
    for style in catalog["styles"]:
        style["identity_threshold"] = 0.99  # no stylised face is this close to the photo
    styles.write_text(yaml.safe_dump(catalog))
    defs = build_defs(str(tmp_path / "home"))
    resources = {**defs.resources, "catalog": CatalogResource(styles_path=str(styles))}
    order = _register(defs, instance, astronaut_png, variants=1)
    result = dg.materialize(
        ALL_ASSETS,
        selection=assets.proof_assets,
        partition_key=order.id,
        instance=instance,
        resources=resources,
        raise_on_error=False,
    )
    rejected = defs.resources["orders"].book().get(order.id)
    assert rejected.state == OrderState.REJECTED
    assert "no proof kept the customer's likeness after 1 rounds" in rejected.reason
    evaluations = sorted((c.check_name, c.passed) for c in result.get_asset_check_evaluations())
    # no proof left to check for faces or explicit content
    assert evaluations == [("identity_preserved", False), ("one_face_per_proof", True), ("proofs_are_safe", True)]
    # the blocking check stops the run before anything is approved, so nothing is ever printed
    assert order.id not in instance.get_dynamic_partitions(assets.approved_orders_partitions.name)
    assert instance.get_latest_materialization_event(dg.AssetKey("print_master")) is None


def test_dagster_definitions_validate(tmp_path):
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path), "PHOTOGEN_HOME": str(tmp_path / "home")}
    dagster = Path(sys.executable).with_name("dagster")
    done = subprocess.run(
        [str(dagster), "definitions", "validate", "-w", "workspace.yaml"],
        cwd=Path(__file__).parents[1],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Validation successful" in done.stdout + done.stderr


def test_the_code_location_defines_the_order_jobs_over_the_order_partitions_and_the_studio_jobs_per_shot():
    defs = build_defs()
    # proofs for every paid order; print files only for the approved ones (tests/test_operator_ui.py)
    assert defs.resolve_job_def("proof_job").partitions_def == assets.orders_partitions
    assert defs.resolve_job_def("print_job").partitions_def == assets.approved_orders_partitions
    keys = {key.to_user_string() for key in defs.resolve_all_asset_keys()}
    order_assets = {"selfie", "styled_candidates", "validated_proofs", "print_master", "print_file", "delivery", "fulfilment"}
    studio = {"job_shots", "job_export", "job_ledger"}
    assert keys == order_assets | {"style_previews", "generation_ledger", "rejection_metrics"} | studio
    schedules = {s.name for s in defs.schedules}
    assert schedules == {"weekly_catalog_previews", "nightly_analytics", "weekly_catalog_shoots"}
    # a studio job's shot is its own partition (job x shot); its export one per job
    shots = defs.resolve_job_def("shot_job").partitions_def
    assert isinstance(shots, dg.MultiPartitionsDefinition) and [d.name for d in shots.partitions_defs] == ["job", "shot"]
    assert defs.resolve_job_def("job_export_job").partitions_def == assets.partitions.jobs_partitions


@pytest.mark.slow
def test_quality_gates_come_from_quality_yaml_and_an_error_severity_stops_the_order(tmp_path, defs, instance, astronaut_png):
    book = defs.resources["orders"].book()
    order = _register(defs, instance, astronaut_png, variants=1)
    assert _materialize(defs, instance, assets.proof_assets, order.id).success
    assert book.get(order.id).state == OrderState.APPROVED

    def strict(**gates) -> dict:
        quality = load_quality().model_dump(mode="json")
        for name, values in gates.items():
            quality[name].update(values)
        path = tmp_path / f"quality_{len(gates)}_{next(iter(gates))}.yaml"
        path.write_text(yaml.safe_dump(quality))
        return {**defs.resources, "catalog": CatalogResource(quality_path=str(path))}

    def strict_check(name: str, selection, **gate):
        run = dg.materialize(
            ALL_ASSETS,
            selection=selection,
            partition_key=order.id,
            instance=instance,
            resources=strict(**{name: gate}),
            raise_on_error=False,
        )
        (check,) = [c for c in run.get_asset_check_evaluations() if c.check_name == name]
        return check

    # an upscale that is not faithful enough, made an error: print_file is never made
    check = strict_check("upscale_faithful", assets.print_assets, severity="error", min_ssim=0.9999)
    assert not check.passed and check.severity == dg.AssetCheckSeverity.ERROR
    assert instance.get_latest_materialization_event(dg.AssetKey("print_file")) is None

    # a pattern score over the limit, made an error: the master is held back the same way
    check = strict_check("print_detail_clean", [assets.print_master], severity="error", max_pattern_score=0.5)
    assert not check.passed and check.severity == dg.AssetCheckSeverity.ERROR
    assert check.metadata["pattern_score"].value > check.metadata["max_pattern_score"].value == 0.5
    assert "a maze" in check.description
    # and, an error, it fails the order with the score (the failure sensor refunds)
    held_back = book.get(order.id)
    assert held_back.state == OrderState.FAILED and held_back.reason.startswith("print_detail_failed: a 100 % crop scores")

    # a file over the provider's size limit fails the order with the reason (a fresh order:
    # a failed one is never printed again)
    order = _register(defs, instance, astronaut_png, variants=1)
    assert _materialize(defs, instance, assets.proof_assets, order.id).success
    run = dg.materialize(
        ALL_ASSETS,
        selection=assets.print_assets,
        partition_key=order.id,
        instance=instance,
        resources=strict(print_spec_met={"max_megabytes": 0.5}),
        raise_on_error=False,
    )
    assert not run.success
    failed = book.get(order.id)
    assert failed.state == OrderState.FAILED and failed.reason.startswith("print_spec_failed: the file is")
