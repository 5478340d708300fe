"""The clock's standby lock is per deployment: beside the SQLite database file (not in the data dir), and
per schema on PostgreSQL."""

from __future__ import annotations

import threading

from studybot.clock_process import clock_lock, sqlite_lock_path
from studybot.db.engine import Database
from tests.support.databases import fresh_postgres_schema


def stopped() -> threading.Event:
    """A stop already set: a clock that cannot get the lock yields False after one try, at once."""
    event = threading.Event()
    event.set()
    return event


def test_two_databases_in_one_data_dir_have_two_locks(tmp_path):
    first, second = Database(f"sqlite:///{tmp_path / 'a.sqlite3'}"), Database(f"sqlite:///{tmp_path / 'b.sqlite3'}")
    try:
        assert sqlite_lock_path(first) == tmp_path / "a.sqlite3.clock.lock"
        with clock_lock(first, stopped(), retry_seconds=0) as held_first:
            with clock_lock(second, stopped(), retry_seconds=0) as held_second:
                assert held_first and held_second  # neither clock stands by for the other's database
            with clock_lock(Database(first.url), stopped(), retry_seconds=0) as held_again:
                assert not held_again  # a second clock on the same database still stands by
    finally:
        first.dispose()
        second.dispose()


def test_a_database_elsewhere_keeps_its_lock_beside_it(tmp_path):
    elsewhere = tmp_path / "elsewhere" / "prod.sqlite3"
    assert sqlite_lock_path(Database(f"sqlite:///{elsewhere}")) == elsewhere.with_name("prod.sqlite3.clock.lock")
    assert sqlite_lock_path(Database("sqlite://")) is None  # in memory: nothing to share


def test_two_schemas_of_one_postgresql_database_have_two_clock_locks():
    first_url, drop_first = fresh_postgres_schema()
    second_url, drop_second = fresh_postgres_schema()
    first, second = Database(first_url), Database(second_url)
    try:
        with clock_lock(first, stopped(), retry_seconds=0) as held_first:
            with clock_lock(second, stopped(), retry_seconds=0) as held_second:
                assert held_first and held_second  # a deployment in another schema has its own clock
            with clock_lock(Database(first.url), stopped(), retry_seconds=0) as held_again:
                assert not held_again  # a second clock on the same schema still stands by
    finally:
        first.dispose()
        second.dispose()
        drop_first()
        drop_second()
