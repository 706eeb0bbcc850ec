"""Where local state lives and how the services find each other.

One folder, `PHOTOGEN_HOME` (default `.photogen` in the working directory), holds the
Dagster instance, the artifacts, the orders database and the signing secret, so a demo
order, `photogen serve` and `dagster dev` started in the same folder see the same
orders and runs. Every setting can come from a `PHOTOGEN_*` environment variable.
"""

from __future__ import annotations

import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from pydantic import field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


@dataclass(frozen=True)
class LocalPaths:
    home: Path

    @classmethod
    def resolve(cls, home: str | os.PathLike | None = None) -> LocalPaths:
        return cls(Path(home or os.environ.get("PHOTOGEN_HOME") or ".photogen").resolve())

    @property
    def dagster_home(self) -> Path:
        return self.home / "dagster"

    @property
    def artifacts(self) -> Path:
        return self.home / "artifacts"

    @property
    def orders_database_url(self) -> str:
        return f"sqlite:///{self.home / 'orders.db'}"

    def make_private(self) -> None:
        """Keep the home folder to its owner: it holds customers' orders, photos and API key
        hashes. New files are made 0600 and folders 0700 (by this process and the servers it
        starts, through the umask); what an older version left open is closed. A 0700 home
        already shuts everyone else out of everything below it; its own files and the
        Dagster instance's databases are closed too, in case the home is ever opened up."""
        os.umask(0o077)
        if not self.home.is_dir():
            return
        os.chmod(self.home, 0o700)
        for folder in (self.home, self.dagster_home):
            for entry in folder.iterdir() if folder.is_dir() else ():
                if not entry.is_symlink():
                    os.chmod(entry, entry.stat().st_mode & 0o700)

    def secret_key(self) -> str:
        """The embedded default's signing secret: made once, kept private in the home folder."""
        path = self.home / "secret_key"
        if not path.exists():
            self.home.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_urlsafe(48))
        return path.read_text().strip()


class PhotoGenSettings(BaseSettings):
    """Settings shared by the storefront API, the Dagster code location and the CLI."""

    model_config = SettingsConfigDict(env_prefix="PHOTOGEN_", extra="ignore")

    home: str | None = None
    database_url: str | None = None  # default: SQLite in the home folder
    artifacts_root: str | None = None  # a directory or s3://bucket/prefix; default: artifacts/ in the home folder
    secret_key: str | None = None  # signs order tokens and file URLs; default: made in the home folder
    styles_path: str | None = None  # another styles.yaml (default: the packaged catalog)
    products_path: str | None = None
    quality_path: str | None = None
    stripe_api_key: str | None = None  # set it and payments are on
    stripe_webhook_secret: str | None = None
    stripe_api_base: str | None = None  # another Stripe-compatible server (tests: localstripe)
    # the engines: embedded (CPU, models shipped in wheels) or diffusers (SDXL + InstantID,
    # insightface, Real-ESRGAN in torch; GPU) with the models folder models_dir
    # replicate / runpod: serverless GPUs, paid by the second (engines/stylize_replicate.py,
    # engines/runpod.py); the upscaler stays embedded with replicate, runs on the worker with runpod
    # flux2-klein, qwen-edit: Apache-2.0 reference-image models on diffusers (engines/reference_edit.py)
    # from the models folder; runpod-qwen-edit: RunPod's hosted Qwen-Image-Edit endpoint
    engine: Literal["embedded", "diffusers", "flux2-klein", "qwen-edit", "replicate", "runpod", "runpod-qwen-edit"] = "embedded"
    models_dir: str | None = None
    # the living portrait's image-to-video engine (wan-i2v, engines/video_wan.py): its models
    # folder (`photogen dev make-tiny-models --family wan-i2v` makes a tiny one); unset: no video
    video_models_dir: str | None = None
    kinds_path: str | None = None  # another kinds.yaml (default: the packaged job kinds)
    memory_profile: str = "auto"  # diffusers: engines/memory_profiles.py
    # the warm engine service (`photogen engines serve`): runs call it instead of loading engines
    replicate_api_token: str | None = None
    replicate_api_base: str = "https://api.replicate.com/v1"
    runpod_api_key: str | None = None
    runpod_endpoint_id: str | None = None  # the endpoint running deploy/runpod/handler.py
    runpod_api_base: str = "https://api.runpod.ai/v2"
    runpod_sync: bool = False  # /runsync: short jobs answered in the request
    # runpod-qwen-edit: RunPod's public Qwen-Image-Edit-2511 endpoint (the key is runpod_api_key)
    # and its documented price of a picture, used when a job's answer states no cost
    runpod_qwen_endpoint_id: str = "qwen-image-edit-2511"
    runpod_qwen_price_per_image: float = 0.02
    # replicate: the price of one output picture, for a model the catalog gives no price_per_image
    replicate_price_per_image: float = 0.0
    # what a generation costs, for the ledger: per second of the engine (a GPU's hourly price
    # / 3600 for diffusers, the provider's per-second price for replicate and runpod; 0 for
    # a CPU you own) and per remote prediction (Replicate's per-image priced models)
    engine_price_per_second: float = 0.0
    engine_price_per_prediction: float = 0.0
    engine_url: str | None = None
    engine_wait_seconds: float = 120.0  # how long a call waits for the service to come up
    gpu_run_tags: str | None = None  # a YAML file of run tags GPU runs carry (deploy/gpu-run-tags.*.yaml)
    # where customers' browsers and the print provider reach the storefront API (signed file
    # links); the API defaults to the request's host, the pipelines need it to fulfil orders
    # from local storage (S3 storage hands the provider a presigned URL instead)
    public_base_url: str | None = None
    # fulfilment: the shop's print provider; none = an order ends at ready with a file to download
    print_provider: Literal["none", "prodigi", "printful"] = "none"
    print_provider_api_key: str | None = None  # Prodigi's X-API-Key, or Printful's private token
    print_provider_api_base: str | None = None  # default: Prodigi's sandbox, or Printful's API
    printful_store_id: str | None = None
    printful_confirm: bool = False  # False: Printful orders wait as drafts for the shop to confirm
    # how long the provider's link to the print file lives (S3's presigned URLs: at most 7 days)
    print_file_url_ttl_seconds: int = 7 * 24 * 3600
    # outbound webhooks: plain http:// endpoints only on loopback unless this is on (a test shop)
    webhook_allow_http: bool = False
    # outbound webhooks go to public addresses only (checked at registration and at every
    # connection). PHOTOGEN_WEBHOOK_ALLOW_PRIVATE=1 also allows loopback and private ones: for
    # development and tests only (a receiver on this machine), never in a deploy
    webhook_allow_private: bool = False
    # internal receivers the operator allows by name although they resolve to private
    # addresses: comma-separated host names, ".corp.example" for every name under it
    webhook_allowed_hosts: Annotated[list[str], NoDecode] = []
    # approval deadline: proofs the customer has not chosen from by then are auto-approved
    # (the best identity score) or the order is cancelled and refunded; a reminder goes first
    approval_deadline_hours: float = 48.0
    approval_reminder_hours: float = 12.0  # before the deadline
    approval_deadline_action: Literal["auto_approve", "cancel"] = "auto_approve"
    # a paying shop: serve, demo and the engine service refuse to start on a model whose
    # licence forbids commercial use (catalog/models.yaml, photogen_pipelines/licences.py)
    commercial_only: bool = False
    # C2PA Content Credentials on every proof and print file (imaging/content_credentials.py):
    # the shop named in them (the storefront's PHOTOGEN_SHOP_NAME too), and its signing
    # certificate chain and private key as PEM files; without them a development chain is made
    # in the home folder and every manifest says so. The timestamp authority is optional (none:
    # nothing outside may be reachable); the trust anchors (a PEM file of root certificates)
    # decide whether `photogen credentials verify` calls a signer trusted
    shop_name: str = "PhotoGen"
    c2pa_cert: str | None = None
    c2pa_key: str | None = None
    c2pa_tsa_url: str | None = None
    c2pa_trust_anchors: str | None = None
    # content safety on every upload and generated picture (factories.SafetyEngineSettings):
    # embedded = open_nsfw on the CPU (shipped in its wheel); openai-moderation = OpenAI's
    # hosted moderation endpoint, with its key
    safety_backend: Literal["embedded", "openai-moderation"] = "embedded"
    openai_api_key: str | None = None
    openai_api_base: str = "https://api.openai.com/v1"

    @field_validator("webhook_allowed_hosts", mode="before")
    @classmethod
    def _host_names(cls, value: object) -> object:
        if isinstance(value, str):
            value = value.split(",")
        if isinstance(value, list | tuple):
            names = [str(name).strip().strip("[]").rstrip(".").lower() for name in value]
            for name in names:
                if name and not re.fullmatch(r"\.?[a-z0-9_-]+(\.[a-z0-9_-]+)*|[0-9a-f:.]+", name):
                    raise ValueError(f"{name!r} is not a host name such as hooks.corp.example (or .corp.example)")
            return [name for name in names if name]
        return value

    @property
    def paths(self) -> LocalPaths:
        return LocalPaths.resolve(self.home)

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or self.paths.orders_database_url

    @property
    def resolved_artifacts_root(self) -> str:
        return self.artifacts_root or str(self.paths.artifacts)

    @property
    def resolved_secret_key(self) -> str:
        return self.secret_key or self.paths.secret_key()

    @property
    def payments_on(self) -> bool:
        return bool(self.stripe_api_key)
