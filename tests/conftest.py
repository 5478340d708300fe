"""Shared fixtures: both real databases, a movable clock, the fake Slack and the running HTTP app."""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import datetime, timezone

import pytest

from studybot.bootstrap import Services, build_services
from studybot.time_source import ManualClock
from studybot.config import load_settings
from studybot.db.engine import Database
from studybot.shell.chat import ShellChat
from studybot.shell.repl import Shell
from studybot.slack.chat import RetryPolicy
from tests.support.databases import fresh_postgres_schema
from tests.support import signed_requests
from tests.support.fake_slack import FakeSlack

SIGNING_SECRET = "test-signing-secret"
BOT_TOKEN = "xoxb-test-token"
# Slack's retry waits, shrunk: a 429 waits a tenth of its Retry-After, a 500 starts at 10 ms.
FAST_RETRIES = RetryPolicy(retry_after_scale=0.1, server_error_backoff_seconds=0.01)
T0 = datetime(2027, 1, 4, 12, 0, tzinfo=timezone.utc)  # a Monday, noon UTC


@pytest.fixture(autouse=True)
def one_workspace():
    """Each test starts as a single-workspace deployment (what build_services sets in token mode), and
    the process-wide setting is put back after it: tests that build no services (the queue's, the
    worker's) must not depend on which test ran before them."""
    from studybot import teams

    before = teams.single_team()
    teams.serve_single_team(teams.LOCAL_TEAM)
    yield
    teams.serve_single_team(before)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'studybot.sqlite3'}"
        return
    url, drop = fresh_postgres_schema()
    yield url
    drop()


@pytest.fixture
def db(database_url):
    database = Database(database_url)
    database.migrate()
    yield database
    database.dispose()


@pytest.fixture
def clock():
    return ManualClock(T0)


@pytest.fixture
def settings(tmp_path, database_url):
    return load_settings({"STUDYBOT_DATA_DIR": str(tmp_path), "DATABASE_URL": database_url})


@dataclass
class TestBot:
    """The bot as a conversation, through the shell transport: say a line, read what came back."""

    shell: Shell
    out: io.StringIO
    services: Services
    clock: ManualClock

    def say(self, line: str, as_user: str | None = None) -> str:
        if as_user:
            self.shell.user = as_user
        start = self.out.tell()
        self.shell.handle(line)
        self.out.seek(start)
        said = self.out.read()
        self.out.seek(0, io.SEEK_END)
        return said

    @property
    def chat(self) -> ShellChat:
        return self.services.chat


@pytest.fixture
def bot(settings, db, clock):
    out = io.StringIO()
    admins = {"admin"}
    chat = ShellChat(out, clock, admins.__contains__)
    services = build_services(settings, db, chat, clock)
    return TestBot(Shell(services, clock, out, admins, user="admin"), out, services, clock)


@pytest.fixture
def fake_slack():
    with FakeSlack() as fake:
        fake.add_user("UADMIN", "grace", is_admin=True, tz="Europe/Berlin")
        fake.add_user("UOWNER", "owen", is_owner=True)
        fake.add_user("U1", "ada")
        fake.add_user("U2", "bob")
        fake.add_channel("CSTUDY", "fastai-study")
        yield fake


@dataclass
class RunningApp:
    url: str
    fake: FakeSlack
    services: Services
    clock: ManualClock


@pytest.fixture
def slack_app(settings, db, clock, fake_slack):
    """The real bolt app over real HTTP (waitress on a free port), talking to the fake Slack."""
    from studybot.slack.app import build_app
    from studybot.slack.chat import SlackChat, make_web_client
    from studybot.slack.server import BackgroundServer

    chat = SlackChat(make_web_client(BOT_TOKEN, fake_slack.api_url, retry=FAST_RETRIES), post_interval=0.05)
    services = build_services(settings, db, chat, clock)
    server = BackgroundServer(build_app(services, chat, SIGNING_SECRET)).start()
    yield RunningApp(server.url, fake_slack, services, clock)
    signed_requests.SESSION.close()  # drop keep-alive connections before the server goes
    server.stop()
