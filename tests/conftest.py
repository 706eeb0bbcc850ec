"""Shared fixtures: real images, the real embedded engines (loaded once per session)."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from skimage import data

from photogen_pipelines.imaging.images import decode_upload, png_bytes

FACES_DIR = Path(__file__).parent / "data" / "faces"
FACE_FILES = ["ardern_2022.jpg", "macron_2025.jpg", "obama_senate.jpg"]


@pytest.fixture(scope="session")
def face_images() -> dict[str, np.ndarray]:
    """Four public-domain portraits of four different people, as RGB arrays."""
    images = {"astronaut": data.astronaut()}
    for name in FACE_FILES:
        images[name.split("_")[0]] = np.asarray(decode_upload((FACES_DIR / name).read_bytes()))
    return images


@pytest.fixture(scope="session")
def astronaut_png() -> bytes:
    return png_bytes(data.astronaut())


@pytest.fixture(scope="session")
def analyzer():
    from resources import FaceEngine

    return FaceEngine().analyzer()  # the embedded YuNet + SFace, as the assets get it


@pytest.fixture(scope="session")
def stylizer():
    from resources import StyleEngine

    return StyleEngine().stylizer()  # the embedded Magenta engine, as the assets get it


@pytest.fixture(scope="session")
def upscaler():
    from resources import UpscaleEngine

    return UpscaleEngine().upscaler()  # the embedded ncnn engine, as the assets get it


# -- the orders database: SQLite and the machine's PostgreSQL ---------------------------

POSTGRES_URL = os.environ.get("PHOTOGEN_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture(scope="session")
def postgres_server() -> str:
    """The PostgreSQL server's URL; skipped (with the reason) only where none answers."""
    import psycopg

    try:
        with psycopg.connect(POSTGRES_URL, connect_timeout=3):
            pass
    except psycopg.OperationalError as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"no PostgreSQL at {POSTGRES_URL}: {str(exc).strip()[:200]}")
    return POSTGRES_URL


@contextlib.contextmanager
def throwaway_postgres(server_url: str):
    """A new, empty database on the server, dropped afterwards."""
    import psycopg

    name = f"photogen_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield server_url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with psycopg.connect(server_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def stripe_base(tmp_path_factory) -> Iterator[str]:
    """localstripe on loopback, one per test session: every test that uses it asks for
    `stripe_client` too (directly or through its shop), which empties it for that test."""
    from tests.servers import localstripe_server

    with localstripe_server(tmp_path_factory.mktemp("localstripe")) as base:
        yield base


@pytest.fixture
def stripe_client(stripe_base):
    """A client of localstripe, emptied for this test: no object and no webhook of an earlier
    test (localstripe keeps webhooks through a flush: the tests' one id is pointed at a port
    nothing listens on, as on a fresh server, where no webhook is registered)."""
    import requests
    import stripe

    requests.delete(stripe_base + "/_config/data", timeout=10).raise_for_status()
    nowhere = {"url": "http://127.0.0.1:9/", "secret": "whsec_unset"}  # the discard port: refused
    requests.post(stripe_base + "/_config/webhooks/photogen", data=nowhere, timeout=10).raise_for_status()
    return stripe.StripeClient("sk_test_photogen", base_addresses={"api": stripe_base})


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.slow)])
def database_url(request, tmp_path) -> Iterator[str]:
    """A fresh, unmigrated orders database URL, on SQLite and on PostgreSQL (the PostgreSQL
    half is marked slow: the quick loop, -m "not slow", runs each of these tests on SQLite)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'orders.db'}"
        return
    with throwaway_postgres(request.getfixturevalue("postgres_server")) as url:
        yield url


@pytest.fixture
def orders_db(database_url):
    from photogen_pipelines.db.database import Database

    database = Database(database_url)
    database.migrate()
    yield database
    database.dispose()


@pytest.fixture
def api_settings(tmp_path, database_url):
    """The storefront API's settings on a fresh orders database (SQLite, or PostgreSQL), payments off."""
    from tests.api_helpers import make_settings

    return make_settings(tmp_path, database_url)


@pytest.fixture
def api_client(api_settings):
    """The storefront API over HTTP in-process (FastAPI's TestClient): a 500 is answered, not raised."""
    from fastapi.testclient import TestClient

    from tests.api_helpers import make_app

    with TestClient(make_app(api_settings), raise_server_exceptions=False) as client:
        yield client


# -- Ray: one small local cluster per test session, started on first use -----------------


@pytest.fixture(scope="session")
def ray_env(tmp_path_factory) -> Iterator[dict[str, str]]:
    """The environment that joins the session's Ray cluster (RAY_ADDRESS and its token)."""
    from tests.servers import ray_cluster

    with ray_cluster(tmp_path_factory.mktemp("ray")) as env:
        yield env


# -- the end of the session ----------------------------------------------------------------


def pytest_sessionfinish(session, exitstatus):
    session.config.photogen_exit_status = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    """Leave with pytest's own status once everything is reported: a native library's
    finalizer (Ray, onnxruntime, c2pa, PyAV) once crashed the interpreter at exit after every
    test had passed (exit 139 on a fresh clone), which would turn a green run red."""
    import sys

    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(getattr(config, "photogen_exit_status", 0))
