"""An artifact key names a file under the store's root and nothing else: the local store
refuses any other key before it builds a path, whoever asks (the API checks first too)."""

from __future__ import annotations

import pytest

from photogen_pipelines.storage.stores import LocalArtifactStore, valid_key

BAD_KEYS = {
    "empty": "",
    "dot-dot": "orders/../../secret_key",
    "dot-dot-alone": "..",
    "leading-slash": "/etc/passwd",
    "backslash": "orders\\..\\..\\secret_key",
    "nul": "orders/o1/proof.png\0.txt",
    "empty-segment": "orders//o1/proof.png",
    "dot-segment": "orders/./o1/proof.png",
    "trailing-slashes": "orders/o1//",
}


@pytest.mark.parametrize("key", BAD_KEYS.values(), ids=BAD_KEYS.keys())
def test_the_local_store_refuses_a_key_that_is_not_a_plain_path(tmp_path, key):
    store = LocalArtifactStore(tmp_path / "artifacts")
    assert not valid_key(key)
    for call in (store.path, store.exists, store.get_bytes, store.list, store.delete, lambda k: store.put_bytes(k, b"x")):
        with pytest.raises(ValueError, match="bad artifact key"):
            call(key)
    assert not (tmp_path / "artifacts").exists()  # nothing was written anywhere


def test_plain_keys_and_a_folder_with_its_slash_are_fine(tmp_path):
    store = LocalArtifactStore(tmp_path)
    store.put_bytes("orders/o1/proofs/proof_0.png", b"png")
    assert valid_key("orders/o1/proofs/proof_0.png") and not valid_key("orders/o1/")
    assert store.list("orders/o1/") == store.list("orders/o1") == ["orders/o1/proofs/proof_0.png"]
    assert store.path("orders/o1/proofs/proof_0.png") == tmp_path.resolve() / "orders/o1/proofs/proof_0.png"
