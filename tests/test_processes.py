"""The real processes, as the Procfile and the README start them."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from studybot.bootstrap import build_services
from studybot.time_source import SystemClock
from studybot.db.models import Delivery
from studybot.slack.chat import SlackChat, make_web_client
from tests.conftest import BOT_TOKEN, SIGNING_SECRET
from tests.support import signed_requests as slack

STUDYBOT = [sys.executable, "-m", "studybot"]


def env(tmp_path, **extra) -> dict:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "DATABASE_URL", "STUDYBOT_"))}
    return {**base, "STUDYBOT_DATA_DIR": str(tmp_path), **extra}


def test_no_credentials_means_the_shell_and_three_weeks_fast_forward(tmp_path):
    script = ("/study cohort create fastai --channel #fastai --start 2030-01-07 --time 18:00 --tz Europe/London\n"
              "/study join fastai\n:advance 600w\n:quit\n")
    started = time.monotonic()
    done = subprocess.run(STUDYBOT, input=script, capture_output=True, text=True, env=env(tmp_path), timeout=60)
    assert done.returncode == 0, done.stderr
    assert time.monotonic() - started < 30
    weeks = re.findall(r"^Week (\d) of 9 in fastai", done.stdout, re.M)
    assert weeks[:3] == ["1", "2", "3"]
    assert (tmp_path / "studybot.sqlite3").exists()  # the embedded database, in the data directory


def test_a_malformed_variable_stops_start_up_naming_it(tmp_path):
    done = subprocess.run(STUDYBOT, capture_output=True, text=True, timeout=30,
                          env=env(tmp_path, SLACK_BOT_TOKEN="xoxb-1", SLACK_SIGNING_SECRET="s",
                                  STUDYBOT_LATE_GRACE="a while"))
    assert done.returncode == 2
    assert "STUDYBOT_LATE_GRACE" in done.stderr and "xoxb-1" not in done.stderr


def test_serve_answers_signed_slash_commands(tmp_path, fake_slack, database_url):
    process = subprocess.Popen(STUDYBOT + ["serve", "--port", "0", "--host", "127.0.0.1"], text=True,
                               stderr=subprocess.PIPE, env=env(tmp_path, SLACK_BOT_TOKEN=BOT_TOKEN,
                               SLACK_SIGNING_SECRET=SIGNING_SECRET, SLACK_API_URL=fake_slack.api_url,
                               DATABASE_URL=database_url))
    try:
        url = None
        deadline = time.monotonic() + 30
        while url is None and time.monotonic() < deadline:
            line = process.stderr.readline()
            match = re.search(r"serving Slack requests on (http://\S+)", line)
            url = match.group(1) if match else None
        assert url, "studybot serve did not say where it listens"
        response = slack.slash_command(url, SIGNING_SECRET, text="help", response_url=fake_slack.response_url("r"))
        assert response.status_code == 200
        assert "/study join NAME" in fake_slack.wait_for("response_url")[0].args["text"]
        assert slack.unsigned(url, "command=%2Fstudy").status_code == 401
    finally:
        process.terminate()
        process.wait(timeout=10)
        slack.SESSION.close()


def test_two_clock_processes_post_once_and_the_standby_takes_over(tmp_path, fake_slack, database_url, db, settings):
    chat = SlackChat(make_web_client(BOT_TOKEN, fake_slack.api_url), post_interval=0)
    services = build_services(settings, db, chat, SystemClock())
    services.cohorts.create("UADMIN", name="fastai", channel="<#CSTUDY|fastai-study>", start="2030-01-07",
                            at="18:00", tz="UTC")

    def due_in_a_second(lesson_key: str) -> None:
        with db.session() as s:
            s.execute(update(Delivery).where(Delivery.lesson_key == lesson_key, Delivery.kind == "lesson")
                      .values(due_at=SystemClock().now() + timedelta(seconds=1)))

    clock_env = env(tmp_path, SLACK_BOT_TOKEN=BOT_TOKEN, SLACK_SIGNING_SECRET=SIGNING_SECRET,
                    SLACK_API_URL=fake_slack.api_url, DATABASE_URL=database_url, STUDYBOT_TICK_SECONDS="1")
    clocks = [subprocess.Popen(STUDYBOT + ["clock"], env=clock_env, stderr=subprocess.DEVNULL) for _ in range(2)]
    def lessons(call) -> bool:  # a lesson post, not the question-thread prompt that follows it in its thread
        return not call.args.get("thread_ts")

    try:
        due_in_a_second("1")
        fake_slack.wait_for("chat.postMessage", where=lessons, timeout=20)
        fake_slack.wait_for("chat.postMessage", where=lambda c: not lessons(c), timeout=20)  # the thread prompt
        time.sleep(3)  # both tick a few more times
        assert len([c for c in fake_slack.calls_to("chat.postMessage") if lessons(c)]) == 1
        assert len([c for c in fake_slack.calls_to("chat.postMessage") if not lessons(c)]) == 1  # one prompt too
        # The holder is the clock that posted: its worker id (host:pid) is on the row it claimed.
        # It dies without cleaning up; the standby must take the lock over and post the next one.
        with db.session() as s:
            claimed_by = s.scalar(select(Delivery.claimed_by).where(Delivery.lesson_key == "1",
                                                                    Delivery.kind == "lesson"))
        holder = next(p for p in clocks if claimed_by.endswith(f":{p.pid}"))
        standby = next(p for p in clocks if p is not holder)
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        due_in_a_second("2")
        fake_slack.wait_for("chat.postMessage", count=2, where=lessons, timeout=20)
        assert standby.poll() is None

        def statuses() -> list[str]:
            with db.session() as s:
                return list(s.scalars(select(Delivery.status).where(Delivery.kind == "lesson")
                                      .order_by(Delivery.position).limit(3)))

        deadline = time.monotonic() + 10
        while statuses() != ["sent", "sent", "pending"] and time.monotonic() < deadline:
            time.sleep(0.1)  # the post landed; the mark follows it
        assert statuses() == ["sent", "sent", "pending"]
        assert len([c for c in fake_slack.calls_to("chat.postMessage") if lessons(c)]) == 2
    finally:
        for process in clocks:
            if process.poll() is None:
                process.kill()
                process.wait()


@pytest.mark.parametrize("command, variable", [(["serve"], "SLACK_BOT_TOKEN"), (["socket"], "SLACK_BOT_TOKEN")])
def test_slack_modes_without_credentials_say_what_is_missing(tmp_path, command, variable):
    done = subprocess.run(STUDYBOT + command, capture_output=True, text=True, env=env(tmp_path), timeout=30)
    assert done.returncode == 2 and variable in done.stderr
