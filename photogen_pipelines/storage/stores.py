"""Artifact storage: where uploads, proofs, print files and manifests live.

Keys are POSIX-style relative paths (`orders/<id>/proofs/proof_0.png`). Images are
stored as image files and metadata as JSON, never pickles, so a person or another
service can open them. The S3 store (production) implements the same methods.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

from photogen_pipelines.errors import NotFound


class ArtifactStore(Protocol):
    def put_bytes(self, key: str, data: bytes) -> str: ...
    def get_bytes(self, key: str) -> bytes: ...
    def exists(self, key: str) -> bool: ...
    def list(self, prefix: str) -> list[str]: ...
    def delete(self, key: str) -> None: ...
    def uri(self, key: str) -> str: ...


def valid_key(key: str) -> bool:
    """A key names a file under the store's root and nothing else: relative, `/`-separated,
    no empty, `.` or `..` segment, no backslash (a separator elsewhere) and no NUL."""
    if not key or "\\" in key or "\0" in key:
        return False
    return all(part not in ("", ".", "..") for part in key.split("/"))


def _checked_key(key: str) -> PurePosixPath:
    # a folder given to list() may end with its slash
    if not valid_key(key.removesuffix("/")):
        raise ValueError(f"bad artifact key {key!r}")
    return PurePosixPath(key)


class LocalArtifactStore:
    """A directory on local disk; writes are atomic (temp file + rename)."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).resolve()

    def path(self, key: str) -> Path:
        return self.root.joinpath(*_checked_key(key).parts)

    def put_bytes(self, key: str, data: bytes) -> str:
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, target)
        return self.uri(key)

    def get_bytes(self, key: str) -> bytes:
        try:
            return self.path(key).read_bytes()
        except FileNotFoundError:
            raise NotFound(f"artifact {key!r} not found in {self.root}") from None

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def list(self, prefix: str) -> list[str]:
        base = self.path(prefix)
        if not base.exists():
            return []
        return sorted(
            p.relative_to(self.root).as_posix() for p in base.rglob("*") if p.is_file() and not p.name.startswith(".tmp-")
        )

    def delete(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)

    def uri(self, key: str) -> str:
        return self.path(key).as_uri()

    def presigned_url(self, key: str, ttl_seconds: int) -> None:
        """None: local files are served by the API's signed links (the S3 store presigns its own)."""
        return None


def put_json(store: ArtifactStore, key: str, value: Any) -> str:
    return store.put_bytes(key, json.dumps(value, indent=2, default=str).encode())


def get_json(store: ArtifactStore, key: str) -> Any:
    return json.loads(store.get_bytes(key))
