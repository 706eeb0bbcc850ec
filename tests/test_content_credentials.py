"""C2PA Content Credentials on every picture PhotoGen makes (imaging/content_credentials.py):
proofs and print files carry a signed manifest that says they are AI-generated, by which
models, for which shop; `photogen credentials verify` reads it back; a changed pixel, a file
without one, or a file that is no picture fails; the print file still meets its spec."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data

from photogen_pipelines.catalog import load_products
from photogen_pipelines.errors import BadInput
from photogen_pipelines.generation.gates import print_spec_report
from photogen_pipelines.generation.proofs import StoredSelfie, proof_models, validate_proofs
from photogen_pipelines.generation.references import face_embedding
from photogen_pipelines.imaging import content_credentials
from photogen_pipelines.imaging.content_credentials import (
    AI_GENERATED,
    ContentCredentials,
    CredentialsError,
    Model,
    certificate_chain,
    verify,
)
from photogen_pipelines.imaging.images import Box, encode_print_file, png_bytes
from photogen_pipelines.settings import PhotoGenSettings
from photogen_pipelines.storage.artifacts import CandidateParams, CandidatesInfo, EngineVersions, Manifest, OrderKeys
from photogen_pipelines.storage.stores import LocalArtifactStore

PHOTOGEN = Path(sys.executable).with_name("photogen")
MODELS = [Model("style", "multistyle26 (test)"), Model("identity check", "sface (test)"), Model("upscale", "realesrgan (test)")]


@pytest.fixture(scope="module")
def shop_chain(tmp_path_factory) -> dict[str, Path]:
    """A test shop's certificate chain, generated here: a CA, and a leaf it issued."""
    folder = tmp_path_factory.mktemp("shop_chain")
    chain, key, ca = certificate_chain("Test Portrait Shop Ltd", "Test Portrait Shop signer", days=2)
    paths = {"cert": folder / "chain.pem", "key": folder / "signer.key", "anchors": folder / "ca.pem"}
    for name, pem in (("cert", chain), ("key", key), ("anchors", ca)):
        paths[name].write_bytes(pem)
    return paths


@pytest.fixture(scope="module")
def shop(shop_chain, tmp_path_factory) -> ContentCredentials:
    """The shop's credentials as the settings give them (PHOTOGEN_C2PA_CERT, _KEY, _TRUST_ANCHORS)."""
    settings = PhotoGenSettings(
        home=str(tmp_path_factory.mktemp("home")),
        shop_name="Test Portrait Shop",
        c2pa_cert=str(shop_chain["cert"]),
        c2pa_key=str(shop_chain["key"]),
        c2pa_trust_anchors=str(shop_chain["anchors"]),
    )
    return ContentCredentials.from_settings(settings)


def _photogen(*args: str, returncode: int) -> subprocess.CompletedProcess:
    result = subprocess.run([str(PHOTOGEN), *args], capture_output=True, text=True, timeout=120)
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == returncode, (args, result.returncode, result.stdout, result.stderr)
    return result


def _tampered(signed: bytes) -> bytes:
    """The signed PNG with one byte of its pixel data changed: the manifest untouched."""
    changed = bytearray(signed)
    changed[signed.index(b"IDAT") + 500] ^= 0x55
    return bytes(changed)


def test_validate_proofs_stores_proofs_whose_credentials_name_the_models_and_the_shop(tmp_path, shop, analyzer):
    store, keys = LocalArtifactStore(tmp_path), OrderKeys("ord_c2pa")
    portrait = data.astronaut()
    # the first round holds the portrait itself: it keeps the likeness, so it passes the gate
    store.put_bytes(keys.candidate(0, 0), png_bytes(portrait))
    params = [CandidateParams(variant=0, round=0, seed=7, strength=0.5)]
    keys.save(store, CandidatesInfo(style="starry_swirl", engine="magenta test engine v1", candidates=params))
    selfie = StoredSelfie(portrait, Box(0, 0, 512, 512), face_embedding(portrait, analyzer))

    def no_more_rounds(variants, round_no):
        raise AssertionError("the first round passes")

    validate_proofs(store, keys, selfie, 0.363, analyzer, 1, no_more_rounds, credentials=shop)

    proof = store.get_bytes(keys.proof(0))
    result = shop.verify(proof)
    assert result.valid and result.trusted and result.hash_matched and result.state == "Trusted"
    assert result.ai_generated and result.generator.startswith("PhotoGen ")
    assert result.shop == "Test Portrait Shop" and not result.development_certificate
    assert result.signer == "Test Portrait Shop signer / Test Portrait Shop Ltd"
    assert result.models == [
        {"role": "style", "version": "magenta test engine v1"},
        {"role": "identity check", "version": analyzer.version},
    ]
    # the stored proof is still the picture the gate passed, pixel for pixel
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(proof)).convert("RGB")), portrait)


def test_the_manifest_says_ai_generated_in_a_c2pa_actions_assertion(shop):
    import c2pa

    signed = shop.sign(png_bytes(data.astronaut()), MODELS)
    with c2pa.Reader("image/png", io.BytesIO(signed)) as reader:
        store = json.loads(reader.json())
    manifest = store["manifests"][store["active_manifest"]]
    (created,) = [a for x in manifest["assertions"] if x["label"].startswith("c2pa.actions") for a in x["data"]["actions"]]
    assert created["action"] == "c2pa.created" and created["digitalSourceType"] == AI_GENERATED
    assert created["softwareAgent"]["name"] == "PhotoGen" and created["softwareAgent"]["version"]


@pytest.mark.parametrize("fmt", ["jpeg", "tiff"])
def test_a_signed_print_file_still_meets_the_print_spec(shop, fmt):
    """print_spec_met reads pixels, DPI tags and the ICC profile back from the file: the
    embedded manifest must leave all three as the provider needs them."""
    product = load_products().get("poster_12x18").model_copy(update={"format": fmt})
    width, height = product.pixel_size
    master = Image.fromarray(data.astronaut()).resize((width, height), Image.BILINEAR)
    plain = encode_print_file(master, fmt, product.dpi)
    signed = shop.sign(plain, MODELS, title=f"print {product.id}")
    assert len(signed) > len(plain)
    manifest = Manifest(
        order_id="ord_print",
        style_id="starry_swirl",
        product_id=product.id,
        file=f"orders/ord_print/print/print_file.{fmt}",
        format=fmt,
        bytes=len(signed),
        pixel_size=product.pixel_size,
        dpi=product.dpi,
        effective_dpi=200.0,
        bleed_px=product.bleed_px,
        trim_inches=product.trim_inches,
        color_profile="sRGB IEC61966-2.1 (embedded)",
        approved_proof=0,
        identity_score=0.9,
        identity_threshold=0.363,
        seeds=[1],
        engines=EngineVersions(faces="f", style="s", upscale="u", upscale_passes=[2]),
    )
    assert print_spec_report(signed, manifest, product, max_megabytes=200).problems == []
    result = shop.verify(signed)
    assert result.trusted and result.hash_matched and [m["role"] for m in result.models] == ["style", "identity check", "upscale"]
    # and a wrong pixel size is still caught on a signed file: the check can fail
    smaller = shop.sign(encode_print_file(master.resize((width // 2, height // 2)), fmt, product.dpi), MODELS)
    assert "pixel size" in print_spec_report(smaller, manifest, product, max_megabytes=200).problems[0]


def test_a_pixel_changed_after_signing_fails_verification(shop, tmp_path):
    signed = shop.sign(png_bytes(data.astronaut()), MODELS)
    assert shop.verify(signed).valid
    result = shop.verify(_tampered(signed))
    assert not result.valid and result.state == "Invalid" and not result.hash_matched
    assert "assertion.dataHash.mismatch" in result.failures
    path = tmp_path / "tampered.png"
    path.write_bytes(_tampered(signed))
    failed = _photogen("credentials", "verify", str(path), returncode=2)
    assert failed.stderr.count("\n") == 1 and "invalid" in failed.stderr and "dataHash.mismatch" in failed.stderr


def test_the_cli_verifies_a_signed_file_and_refuses_one_without_credentials(shop, shop_chain, tmp_path):
    signed, plain = tmp_path / "proof.png", tmp_path / "plain.png"
    signed.write_bytes(shop.sign(png_bytes(data.astronaut()), MODELS))
    plain.write_bytes(png_bytes(data.astronaut()))
    trusted = _photogen("credentials", "verify", str(signed), "--trust-anchors", str(shop_chain["anchors"]), returncode=0)
    lines = trusted.stdout.splitlines()
    assert lines[0] == f"{signed}: C2PA Content Credentials, Trusted"
    assert "  generator:   PhotoGen " in trusted.stdout and ", AI-generated" in lines[1]
    assert "  models:      style: multistyle26 (test); identity check: sface (test); upscale: realesrgan (test)" in lines
    assert "  shop:        Test Portrait Shop" in lines and "trusted: the signer chains" in trusted.stdout
    # without the shop's anchor the same file is valid but its signer is not vouched for
    untrusted = json.loads(_photogen("credentials", "verify", str(signed), "--json", returncode=0).stdout)
    assert untrusted["valid"] and not untrusted["trusted"] and untrusted["state"] == "Valid"
    for path, says in (
        (plain, "carries no Content Credentials"),
        (tmp_path / "missing.png", "cannot be read"),
        (shop_chain["anchors"], "not a PNG, JPEG or TIFF file"),
    ):
        refused = _photogen("credentials", "verify", str(path), returncode=2)
        assert refused.stderr.count("\n") == 1 and says in refused.stderr, refused.stderr
        assert refused.stdout == ""


def test_without_a_shop_certificate_a_development_chain_is_made_once_and_says_so(tmp_path):
    settings = PhotoGenSettings(home=str(tmp_path / "home"))
    credentials = ContentCredentials.from_settings(settings)
    folder = tmp_path / "home" / content_credentials.DEVELOPMENT_FOLDER
    key = (folder / "signer.key").read_bytes()
    assert (folder / "signer.key").stat().st_mode & 0o077 == 0  # the key is its owner's alone
    content_credentials._from_settings.cache_clear()  # another process, the same home
    again = ContentCredentials.from_settings(settings)
    assert again is not credentials and again.identity.private_key == key == credentials.identity.private_key
    result = verify(credentials.sign(png_bytes(data.astronaut()), MODELS))
    assert result.valid and not result.trusted and result.development_certificate
    assert "development" in result.signer and result.shop == "PhotoGen"


def test_a_home_that_cannot_hold_the_development_chain_says_to_bring_a_certificate():
    with pytest.raises(CredentialsError) as refused:
        ContentCredentials.from_settings(PhotoGenSettings(home="/proc/photogen-nope"))  # /proc takes no new folders
    assert refused.value.code == "content_credentials_failed" and "PHOTOGEN_C2PA_CERT" in str(refused.value)


def test_a_certificate_without_its_key_is_a_bad_setting(tmp_path, shop_chain):
    with pytest.raises(BadInput) as refused:
        ContentCredentials.from_settings(PhotoGenSettings(home=str(tmp_path), c2pa_cert=str(shop_chain["cert"])))
    assert refused.value.code == "bad_setting"


def test_a_print_files_models_add_the_upscaler():
    info = CandidatesInfo(style="s", engine="style v1", candidates=[])
    assert proof_models(info, "faces v1", "esrgan v2") == [
        Model("style", "style v1"),
        Model("identity check", "faces v1"),
        Model("upscale", "esrgan v2"),
    ]


@pytest.mark.slow
def test_every_proof_and_the_print_file_of_a_demo_order_verify(tmp_path):
    """`photogen demo` end to end: its proofs and its print file carry valid Content
    Credentials, the print manifest records them, and the order passed print_spec_met."""
    home = tmp_path / "home"
    env_home = {"PHOTOGEN_HOME": str(tmp_path / "unused"), "DAGSTER_HOME": str(home / "dagster")}
    result = subprocess.run(
        [str(PHOTOGEN), "demo", "--json", "--variants", "2", "--home", str(home)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **env_home},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads(result.stdout)
    assert summary["outcome"] == "ready", summary.get("reason")  # delivery ran: print_spec_met passed
    files = [p["path"] for p in summary["proofs"]] + [summary["print_file"]]
    assert len(files) == 3
    for path in files:
        checked = json.loads(_photogen("credentials", "verify", path, "--json", returncode=0).stdout)
        assert checked["valid"] and checked["hash_matched"] and checked["ai_generated"], path
        assert checked["development_certificate"] and checked["shop"] == "PhotoGen"
        roles = [m["role"] for m in checked["models"]]
        assert roles[:2] == ["style", "identity check"] and all(m["version"] for m in checked["models"])
    assert roles == ["style", "identity check", "upscale"]  # the print file's, last
    recorded = json.loads(Path(summary["manifest"]).read_text())["content_credentials"]
    assert recorded["valid"] and recorded["development_certificate"] and recorded["label"].startswith("urn:c2pa:")
    assert (home / content_credentials.DEVELOPMENT_FOLDER / "signer.key").exists()
