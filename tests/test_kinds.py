"""The job kinds as catalog data (catalog/kinds.yaml): what the shipped kinds promise, what the
loader refuses (`photogen kinds` is tested with the other commands in test_cli.py)."""

from __future__ import annotations

import pytest
import yaml
from pydantic import ValidationError

from photogen_pipelines.catalog.kinds import KindCatalog, load_kinds
from photogen_pipelines.errors import BadInput, NotFound

FASHION_POSES = ["front", "back", "left", "right", "three_quarter", "walking", "seated", "hand_on_hip", "close_up"]


def test_the_shipped_kinds_are_the_studios_jobs():
    catalog = load_kinds()
    assert [k.id for k in catalog.kinds] == ["portrait_print", "pose_pack", "fashion_shoot", "try_on", "living_portrait"]
    fashion = catalog.get("fashion_shoot")
    assert fashion.shot_names() == FASHION_POSES and fashion.seeds == "locked" and fashion.max_retries == 3
    assert {"identity", "product_lock"} <= set(fashion.gates) and fashion.across == ["consistency"]
    assert fashion.product_lock.min_ssim == pytest.approx(0.80)
    assert catalog.get("pose_pack").across == ["consistency"] and "identity" in catalog.get("pose_pack").gates
    assert catalog.get("try_on").shot_names() == ["front"] and catalog.get("portrait_print").shot_names() is None
    living = catalog.get("living_portrait")
    assert living.outputs == ["mp4", "poster"] and "frames_identity" in living.gates
    assert fashion.shot_names(["front", "back"]) == ["front", "back"]  # a job's own poses
    assert catalog.get("pose_pack").price_for("premium").credits == 100
    with pytest.raises(BadInput) as refused:
        catalog.get("try_on").price_for("fast")
    assert refused.value.code == "unknown_tier"


def test_the_cpu_engine_makes_a_smaller_kind_or_refuses_naming_the_engines_that_can():
    catalog = load_kinds()
    catalog.get("pose_pack").check_engine("embedded")  # its takes, said plainly
    assert "without a model" in catalog.get("fashion_shoot").embedded
    for kind in ("try_on", "living_portrait"):
        with pytest.raises(BadInput) as refused:
            catalog.get(kind).check_engine("embedded")
        assert refused.value.code == "kind_needs_engine" and refused.value.details["engines"] == catalog.get(kind).engines
        assert catalog.get(kind).engines[0] in str(refused.value)


def test_poses_and_kinds_are_checked_by_name():
    catalog = load_kinds()
    assert catalog.check_poses(["front", "seated"]) == ["front", "seated"]
    for poses in (["front", "moonwalk"], ["front", "front"], []):
        with pytest.raises(BadInput) as refused:
            catalog.check_poses(poses)
        assert refused.value.code == "unknown_pose"
    with pytest.raises(NotFound) as unknown:
        catalog.get("wedding_album")
    assert unknown.value.code == "unknown_kind" and "fashion_shoot" in str(unknown.value)


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (lambda k: k.update(inputs=[i for i in k["inputs"] if i["type"] != "garment_photo"]), "needs a product or garment"),
        (lambda k: k.update(poses=["front", "moonwalk"]), "unknown poses"),
        (lambda k: k.pop("product_lock"), "go together"),
        (lambda k: k.pop("embedded"), "embedded engine"),
        (lambda k: k.update(shots="poses", poses=[]), "default poses"),
    ],
    ids=["lock-without-product", "unknown-pose", "lock-settings", "embedded-words", "no-poses"],
)
def test_a_catalog_that_promises_what_cannot_be_made_is_refused(change, words):
    from importlib import resources

    document = yaml.safe_load(resources.files("photogen_pipelines.catalog").joinpath("kinds.yaml").read_text())
    KindCatalog.model_validate(document)  # the shipped one loads
    fashion = next(k for k in document["kinds"] if k["id"] == "fashion_shoot")
    change(fashion)
    with pytest.raises(ValidationError, match=words):
        KindCatalog.model_validate(document)
