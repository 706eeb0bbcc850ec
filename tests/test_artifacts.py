"""An order's JSON documents are typed: what today's assets stored still loads, what the
models write reads back the same, and no production module reads one by raw key."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from photogen_pipelines.errors import NotFound
from photogen_pipelines.storage.artifacts import (
    CandidatesInfo,
    Manifest,
    MasterInfo,
    OrderKeys,
    SelfieInfo,
    Stage,
    Validation,
)
from photogen_pipelines.storage.stores import LocalArtifactStore

REPO = Path(__file__).parents[1]
V1 = Path(__file__).parent / "data" / "artifacts_v1"
DOCUMENTS = {
    "face.json": SelfieInfo,
    "candidates.json": CandidatesInfo,
    "validation.json": Validation,
    "master.json": MasterInfo,
    "manifest.json": Manifest,
}


def _stored_like_v1(tmp_path, folder: str) -> tuple[LocalArtifactStore, OrderKeys]:
    """The v1 files put where an order's stages put them."""
    store, keys = LocalArtifactStore(tmp_path), OrderKeys("ord_v1")
    for path in (V1 / folder).glob("*.json"):
        kind = DOCUMENTS[path.name]
        store.put_bytes(keys.key_of(kind), path.read_bytes())
    return store, keys


def test_documents_written_before_the_models_existed_still_load(tmp_path):
    store, keys = _stored_like_v1(tmp_path, "ready")
    validation = keys.load(store, Validation)
    assert validation.proofs == {0: keys.proof(0).replace("ord_v1", "ord_8d53b4c03a784739"), 1: validation.proofs[1]}
    assert validation.best_variant == 1 and not validation.rejected
    assert validation.approved_score(1).similarity == pytest.approx(0.6258)
    manifest = keys.load(store, Manifest)
    assert manifest.pixel_size == (3694, 5494) and manifest.effective_dpi == 223.5
    assert manifest.engines.upscale_passes == [4]
    master = keys.load(store, MasterInfo)
    assert (master.proof, master.passes) == (1, [4])
    candidates = keys.load(store, CandidatesInfo)
    assert [c.variant for c in candidates.candidates] == [0, 1] and candidates.candidates[1].zoom == pytest.approx(1.0483)
    selfie = keys.load(store, SelfieInfo)
    assert len(selfie.embedding) == 128 and len(selfie.face.box) == 4


def test_a_rejected_orders_documents_load_with_their_missing_scores(tmp_path):
    store, keys = _stored_like_v1(tmp_path, "rejected")
    validation = keys.load(store, Validation)
    assert validation.rejected and validation.proofs == {} and validation.best_variant is None
    assert len(validation.scores) == 6 and not validation.passing_similarities()
    assert keys.load_if_present(store, Manifest) is None
    with pytest.raises(NotFound):
        keys.load(store, MasterInfo)


def test_what_the_models_write_is_the_json_readers_had_and_reads_back_equal(tmp_path):
    store, keys = _stored_like_v1(tmp_path, "ready")
    for name, kind in DOCUMENTS.items():
        original = json.loads((V1 / "ready" / name).read_text())
        document = keys.load(store, kind)
        keys.save(store, document)
        assert json.loads(store.get_bytes(keys.key_of(kind))) == original, name
        assert keys.load(store, kind) == document


def test_a_document_missing_a_field_is_a_validation_error_not_a_key_error(tmp_path):
    store, keys = LocalArtifactStore(tmp_path), OrderKeys("ord_x")
    store.put_bytes(keys.validation, json.dumps({"threshold": 0.4}).encode())
    with pytest.raises(ValidationError, match="scores"):
        keys.load(store, Validation)


def test_stage_names_are_the_asset_names_in_order():
    import assets

    assert [s.value for s in Stage] == ["selfie", "styled_candidates", "validated_proofs", "print_master", "print_file"]
    assert {s.value for s in Stage} <= {a.key.to_user_string() for a in assets.proof_assets + assets.print_assets}


# the rule, enforced: an order's JSON documents are read and written through the models


PRODUCTION = ["photogen_pipelines", "assets", "sensors", "resources", "storefront_api"]
# modules that may handle stored JSON by hand, and why
RAW_JSON_ALLOWED = {
    "photogen_pipelines/storage/artifacts.py": "the models' own load and save",
    "photogen_pipelines/storage/stores.py": "defines get_json/put_json",
    "photogen_pipelines/generation/previews.py": "the catalog's preview records, not an order's documents",
}


def _raw_json_uses(path: Path) -> list[str]:
    uses = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module == "photogen_pipelines.storage.stores":
            uses += [f"imports {a.name}" for a in node.names if a.name in ("get_json", "put_json")]
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in ("loads", "load"):
            if any(isinstance(n, ast.Attribute) and n.attr == "get_bytes" for n in ast.walk(node)):
                uses.append(f"json.{node.func.attr} of stored bytes (line {node.lineno})")
    return uses


def test_no_production_module_reads_or_writes_an_orders_json_by_raw_key():
    found = {}
    for package in PRODUCTION:
        for path in (REPO / package).rglob("*.py"):
            relative = path.relative_to(REPO).as_posix()
            if relative not in RAW_JSON_ALLOWED and (uses := _raw_json_uses(path)):
                found[relative] = uses
    assert found == {}


def test_the_raw_json_finder_finds_both_kinds(tmp_path):
    path = tmp_path / "probe.py"
    path.write_text("from photogen_pipelines.storage.stores import get_json\nimport json\nx = json.loads(store.get_bytes(k))\n")
    assert _raw_json_uses(path) == ["imports get_json", "json.loads of stored bytes (line 3)"]
