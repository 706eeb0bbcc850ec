"""Throwaway PostgreSQL databases for the benchmarks, on the server the tests use
(PHOTOGEN_TEST_POSTGRES_URL, else the local one): made for one run, dropped after it."""

from __future__ import annotations

import os
import uuid

POSTGRES_URL = os.environ.get("PHOTOGEN_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


def create_database(server_url: str, prefix: str) -> str:
    """A new, empty database named `<prefix>_<random>`; its URL."""
    import psycopg

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    return server_url.rsplit("/", 1)[0] + f"/{name}"


def drop_database(server_url: str, url: str) -> None:
    import psycopg

    name = url.rsplit("/", 1)[1]
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
