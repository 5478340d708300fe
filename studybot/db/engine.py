"""Engine, sessions and migrations for SQLite (embedded default) and PostgreSQL (production)."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
MIGRATION_LOCK_ID = 0x5709B07  # PostgreSQL advisory lock (with the schema's hash): one process migrates a schema at a time


def make_engine(database_url: str) -> Engine:
    if database_url.startswith("sqlite"):
        path = database_url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(database_url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record):
            cursor = dbapi_connection.cursor()
            # WAL lets the web, clock and shell processes read while one writes.
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    return create_engine(database_url, pool_pre_ping=True, pool_size=10, max_overflow=20)


BUMP_STATE_VERSION = text("UPDATE state_version SET counter = counter + 1 WHERE id = 1")
READ_STATE_VERSION = text("SELECT counter FROM state_version WHERE id = 1")
# session.info key: this transaction only writes what no cached answer shows (which state a DM shows,
# bookkeeping), so it leaves state_version alone and the reply cache stays warm. Set it only there.
UNSEEN_BY_CACHED_ANSWERS = "unseen_by_cached_answers"


def _track_writes(sessions: sessionmaker) -> None:
    """Every session that writes bumps state_version in the same transaction, so a cached answer
    can never outlive the data it was built from. Covers ORM flushes and bulk UPDATE/DELETE/INSERT."""

    @event.listens_for(sessions, "after_flush")
    def _flushed(session, _context):
        if session.new or session.dirty or session.deleted:
            session.info["wrote"] = True

    @event.listens_for(sessions, "do_orm_execute")
    def _executed(state):
        if state.is_insert:
            state.session.info["wrote"] = True
        elif state.is_update or state.is_delete:
            # Conditional UPDATEs that match nothing (a lost claim, an idle tick) are not writes.
            result = state.invoke_statement()
            if result.rowcount:
                state.session.info["wrote"] = True
            return result

    @event.listens_for(sessions, "before_commit")
    def _bump(session):
        session.flush()  # commit flushes after this hook; flush first so pending changes count
        unseen = session.info.pop(UNSEEN_BY_CACHED_ANSWERS, False)
        if session.info.pop("wrote", False) and not unseen:
            session.connection().execute(BUMP_STATE_VERSION)


class Database:
    """The one handle services get: ``with db.session() as s:`` commits on success, rolls back on error."""

    def __init__(self, database_url: str) -> None:
        self.url = database_url
        self.engine = make_engine(database_url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        _track_writes(self._sessions)
        from studybot.db.scoping import scope_sessions  # imports the models, which need no engine

        scope_sessions(self._sessions)

    def state_version(self) -> int:
        """The write counter: equal values mean nothing was written in between."""
        with self.engine.connect() as connection:
            return connection.execute(READ_STATE_VERSION).scalar_one()

    @property
    def is_postgres(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    @contextlib.contextmanager
    def session(self) -> Iterator[Session]:
        session = self._sessions()
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            session.info.pop("wrote", None)
            raise
        finally:
            session.close()

    def migrate(self, default_team_id: str | None = None) -> None:
        """Bring the schema to the newest Alembic revision.

        ``default_team_id``: the workspace that rows from before workspaces were scoped belong to (0008)."""
        with self.migration_connection(default_team_id) as (connection, config):
            command.upgrade(config, "head")

    @contextlib.contextmanager
    def migration_connection(self, default_team_id: str | None = None) -> Iterator[tuple[Connection, Config]]:
        """A connection and Alembic config to migrate with, one process at a time; committed at the end.

        SQLite changes a table by copying it and dropping the old one (Alembic's batch mode), and with
        foreign keys on, DROP TABLE first deletes the old rows, cascading to every row that points at them
        (a cohort's deliveries). So, as SQLite's own procedure for schema changes says, foreign keys are off
        while migrating, and checked before the commit."""
        with self.engine.connect() as connection:
            if self.is_postgres:
                # per schema: migrations of deployments in other schemas of this database never wait for this one
                connection.execute(text("SELECT pg_advisory_lock(:id, hashtext(current_schema()))"),
                                   {"id": MIGRATION_LOCK_ID})
            else:
                connection.exec_driver_sql("PRAGMA foreign_keys=OFF")  # before any transaction: else a no-op
            try:
                config = alembic_config(self.url)
                config.attributes["connection"] = connection
                config.attributes["default_team_id"] = default_team_id
                yield connection, config
                if not self.is_postgres:
                    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").all()
                    if broken:
                        raise RuntimeError(f"the migration left rows pointing nowhere: {broken[:5]}")
                connection.commit()
            finally:
                if self.is_postgres:
                    connection.execute(text("SELECT pg_advisory_unlock(:id, hashtext(current_schema()))"),
                                       {"id": MIGRATION_LOCK_ID})
                    connection.commit()
                else:
                    connection.rollback()
                    connection.exec_driver_sql("PRAGMA foreign_keys=ON")  # the pooled connection as it was

    def dispose(self) -> None:
        self.engine.dispose()


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config
