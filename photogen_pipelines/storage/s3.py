"""The production artifact store: one S3 bucket (AWS, MinIO or any S3 endpoint), boto3.

`S3ArtifactStore` has exactly the methods of `LocalArtifactStore` and the same errors
(`NotFound` for a missing key, `ValueError` for a bad key), so the stages, the assets and
the API use either one. Keys live under an optional `prefix` inside the bucket:
`orders/<id>/proofs/proof_0.png` is stored as `<prefix>/orders/<id>/proofs/proof_0.png`.

Credentials come from boto3's own chain (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, a
profile, an instance or task role), never from PhotoGen's settings. The endpoint is
`endpoint_url` when given, else boto3's AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL, else AWS.
Build one through `photogen_pipelines.factories.artifact_store`.
"""

from __future__ import annotations

import mimetypes
from pathlib import PurePosixPath

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from photogen_pipelines.errors import NotFound
from photogen_pipelines.storage.stores import _checked_key

_MISSING = {"404", "NoSuchKey", "NotFound"}
_CONTENT_TYPES = {".json": "application/json", ".png": "image/png", ".jpg": "image/jpeg", ".tif": "image/tiff"}


def _missing(error: ClientError) -> bool:
    return str(error.response.get("Error", {}).get("Code")) in _MISSING


class S3ArtifactStore:
    """A bucket (and an optional key prefix in it) on S3 or any S3-compatible endpoint.

    `client` is a ready boto3 S3 client (then `endpoint_url` and `region_name` are unused).
    """

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        endpoint_url: str | None = None,
        region_name: str | None = None,
        client=None,
    ):
        if not bucket:
            raise ValueError("an S3 artifact store needs a bucket")
        self.bucket = bucket
        self.prefix = _checked_key(prefix.strip("/")).as_posix() if prefix.strip("/") else ""
        if client is None:
            # a session per store: boto3's default session is not safe to share between threads
            client = boto3.session.Session().client(
                "s3",
                endpoint_url=endpoint_url,
                region_name=region_name,
                config=Config(signature_version="s3v4", retries={"max_attempts": 5, "mode": "standard"}),
            )
        self.client = client

    def __repr__(self) -> str:
        return f"S3ArtifactStore({self.uri_prefix!r}, endpoint={self.client.meta.endpoint_url!r})"

    @property
    def uri_prefix(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}".rstrip("/")

    def object_key(self, key: str) -> str:
        """The S3 object key of an artifact key (the prefix joined on)."""
        relative = _checked_key(key).as_posix()
        return f"{self.prefix}/{relative}" if self.prefix else relative

    def put_bytes(self, key: str, data: bytes) -> str:
        object_key = self.object_key(key)
        suffix = PurePosixPath(object_key).suffix.lower()
        content_type = _CONTENT_TYPES.get(suffix) or mimetypes.guess_type(object_key)[0] or "application/octet-stream"
        # one PUT is atomic: a reader sees the old object or the new one, never half of it
        self.client.put_object(Bucket=self.bucket, Key=object_key, Body=data, ContentType=content_type)
        return self.uri(key)

    def get_bytes(self, key: str) -> bytes:
        object_key = self.object_key(key)
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=object_key)
        except ClientError as exc:
            if _missing(exc):
                raise NotFound(f"artifact {key!r} not found in s3://{self.bucket}/{object_key}") from None
            raise
        with response["Body"] as body:
            return body.read()

    def exists(self, key: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=self.object_key(key))
        except ClientError as exc:
            if _missing(exc):
                return False
            raise
        return True

    def list(self, prefix: str) -> list[str]:
        """Every key under the folder `prefix` (as the local store: `orders/a` does not match `orders/ab/…`)."""
        folder = self.object_key(prefix) + "/"
        strip = len(self.prefix) + 1 if self.prefix else 0
        keys = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=folder):
            # `…/` objects are folder markers some S3 consoles make: not artifacts
            keys.extend(item["Key"][strip:] for item in page.get("Contents", []) if not item["Key"].endswith("/"))
        return sorted(keys)

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self.object_key(key))  # a missing key is fine, as locally

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{self.object_key(key)}"

    def presigned_url(self, key: str, ttl_seconds: int) -> str:
        """A URL that GETs the object for `ttl_seconds`, without credentials (signed with SigV4)."""
        if not 1 <= int(ttl_seconds) <= 7 * 24 * 3600:
            raise ValueError(f"a presigned URL lives 1 s to 7 days, not {ttl_seconds} s")
        return self.client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": self.object_key(key)}, ExpiresIn=int(ttl_seconds)
        )
