"""Real databases for tests: SQLite files, and PostgreSQL with one throwaway schema per test.

PostgreSQL comes from STUDYBOT_TEST_POSTGRES_URL, else the local server CI provides at
127.0.0.1:5432 (database `test`, trust auth), else a private server from the `pgserver` wheel.
The PostgreSQL tests are never skipped: with no server anywhere, they fail and say why."""

from __future__ import annotations

import os
import tempfile
import uuid

import psycopg
from sqlalchemy.engine import make_url

LOCAL_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
_pgserver = None


def _reachable(url: str) -> bool:
    u = make_url(url)
    try:
        with psycopg.connect(host=u.host, port=u.port or 5432, user=u.username, password=u.password or None,
                             dbname=u.database, connect_timeout=3, **({"host": u.query["host"]} if "host" in u.query else {})):
            return True
    except psycopg.OperationalError:
        return False


def postgres_base_url() -> str:
    global _pgserver
    explicit = os.environ.get("STUDYBOT_TEST_POSTGRES_URL")
    if explicit:
        return explicit.replace("postgresql://", "postgresql+psycopg://", 1)
    if _reachable(LOCAL_POSTGRES):
        return LOCAL_POSTGRES
    if _pgserver is None:
        import pgserver  # a PostgreSQL server in a wheel, for machines without one

        _pgserver = pgserver.get_server(tempfile.mkdtemp(prefix="studybot-pg-"), cleanup_mode="stop")
    return _pgserver.get_uri().replace("postgresql://", "postgresql+psycopg://", 1)


def fresh_postgres_schema() -> tuple[str, callable]:
    """A URL whose connections live in a brand-new schema, and a function that drops it."""
    base = postgres_base_url()
    schema = f"t_{uuid.uuid4().hex[:12]}"
    u = make_url(base)
    conninfo = dict(host=u.query.get("host", u.host), port=u.port or 5432, user=u.username, dbname=u.database)
    with psycopg.connect(**conninfo, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    url = u.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(hide_password=False)

    def drop() -> None:
        with psycopg.connect(**conninfo, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')

    return url, drop
