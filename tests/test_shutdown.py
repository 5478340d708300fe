"""SIGTERM, as a process manager sends it, to the real `studybot serve`, `socket` and `clock`
processes while they are in the middle of something: each finishes the work in hand and exits 0.

The work is held mid-way by the fake Web API (``FakeSlack.hold``): a view submission waits for
``users.info`` (the organizer check, before its ack), a lesson post waits for
``chat.postMessage``. The signal arrives while the call is held; the test then releases it and
checks that the answer still went out and the process exited cleanly, and for the clock, that
its lock went to the standby only after the tick in hand was done. Every wait is on something
observable (a log line, a recorded call, an ack), never on time alone. (The worker's SIGTERM is
in tests/test_worker.py.)"""

from __future__ import annotations

import signal
import threading
from datetime import timedelta

import pytest
import requests
from sqlalchemy import select, update

from studybot.bootstrap import build_services
from studybot.db.models import Delivery
from studybot.slack.chat import SlackChat, make_web_client
from studybot.time_source import SystemClock
from tests.conftest import BOT_TOKEN, SIGNING_SECRET
from tests.support import signed_requests as slack
from tests.support.processes import StudybotProcess, studybot_env
from tests.support.socket_mode import SocketModeServer, hello, interactive_envelope
from tests.test_socket_mode import APP_TOKEN, FORM

STOPPING = r"SIGTERM received: finishing the work in hand"


def created_dm(fake_slack) -> list:
    return [c for c in fake_slack.calls_to("chat.postMessage") if "Created *fastai*" in str(c.args.get("text"))]


def test_serve_answers_the_request_in_hand_then_exits_0(tmp_path, fake_slack):
    app = StudybotProcess(["serve", "--port", "0", "--host", "127.0.0.1"], studybot_env(
        tmp_path, SLACK_BOT_TOKEN=BOT_TOKEN, SLACK_SIGNING_SECRET=SIGNING_SECRET, SLACK_API_URL=fake_slack.api_url,
        DATABASE_URL=f"sqlite:///{tmp_path / 'studybot.sqlite3'}"))
    try:
        url = app.wait_for_line(r"serving Slack requests on (http://\S+)").group(1)
        organizer_check = fake_slack.hold("users.info")
        answered = {}
        payload = slack.view_submission_payload("cohort_create", FORM, user_id="UADMIN")
        submit = threading.Thread(target=lambda: answered.update(
            response=slack.interactive(url, SIGNING_SECRET, payload, timeout=30)))
        submit.start()
        organizer_check.wait_arrived()  # the request is in hand, before its ack
        app.send_signal(signal.SIGTERM)
        app.wait_for_line(r"no longer accepting connections; 1 request\(s\) in hand")
        with pytest.raises(requests.ConnectionError):  # new connections are refused from now on
            requests.post(url, data="x", timeout=5)
        organizer_check.release()
        submit.join(timeout=30)
        assert answered["response"].status_code == 200 and answered["response"].text == ""  # the form closes
        assert app.wait() == 0, app.log()
        assert len(created_dm(fake_slack)) == 1  # the work after the ack was done before the exit
        assert "stopped cleanly" in app.log()
    finally:
        app.kill()


def test_socket_acks_the_envelope_in_hand_closes_with_1000_then_exits_0(tmp_path, fake_slack):
    with SocketModeServer() as slack_ws:
        fake_slack.serve_socket_mode(slack_ws.url)
        app = StudybotProcess(["socket"], studybot_env(
            tmp_path, SLACK_BOT_TOKEN=BOT_TOKEN, SLACK_APP_TOKEN=APP_TOKEN, SLACK_API_URL=fake_slack.api_url,
            DATABASE_URL=f"sqlite:///{tmp_path / 'studybot.sqlite3'}"))
        try:
            link = slack_ws.next_connection()
            link.send(hello())
            organizer_check = fake_slack.hold("users.info")
            submission = link.send(interactive_envelope(
                slack.view_submission_payload("cohort_create", FORM, user_id="UADMIN")))
            organizer_check.wait_arrived()
            app.send_signal(signal.SIGTERM)
            app.wait_for_line(STOPPING)
            assert not link.has_ack(submission)  # still in hand: its ack waits on the held call
            organizer_check.release()
            assert link.ack(submission) == {"envelope_id": submission}
            assert link.wait_closed() == 1000  # a close frame, after the ack
            assert app.wait() == 0, app.log()
            assert len(created_dm(fake_slack)) == 1
            assert len(fake_slack.calls_to("apps.connections.open")) == 1  # no reconnect while stopping
        finally:
            app.kill()


def test_clock_finishes_the_tick_in_hand_then_hands_the_lock_to_the_standby(tmp_path, fake_slack, database_url,
                                                                           db, settings):
    chat = SlackChat(make_web_client(BOT_TOKEN, fake_slack.api_url), post_interval=0)
    services = build_services(settings, db, chat, SystemClock())
    services.cohorts.create("UADMIN", name="fastai", channel="<#CSTUDY|fastai-study>", start="2030-01-07",
                            at="18:00", tz="UTC")
    clock_env = studybot_env(tmp_path, SLACK_BOT_TOKEN=BOT_TOKEN, SLACK_SIGNING_SECRET=SIGNING_SECRET,
                             SLACK_API_URL=fake_slack.api_url, DATABASE_URL=database_url, STUDYBOT_TICK_SECONDS="1")
    holder = StudybotProcess(["clock"], clock_env, name="holder")
    standby = None
    try:
        holder.wait_for_line(r"clock started")
        standby = StudybotProcess(["clock"], clock_env, name="standby")
        standby.wait_for_line(r"standing by")
        post = fake_slack.hold("chat.postMessage")
        with db.session() as s:
            s.execute(update(Delivery).where(Delivery.lesson_key == "1", Delivery.kind == "lesson")
                      .values(due_at=SystemClock().now() + timedelta(seconds=1)))
        post.wait_arrived(timeout=20)  # the holder's tick is posting lesson 1
        holder.send_signal(signal.SIGTERM)
        holder.wait_for_line(STOPPING)
        refusals = standby.count(r"standing by")
        standby.wait_for_line(r"standing by", count=refusals + 1)  # it retried: the lock is still held
        assert standby.count(r"clock started") == 0
        post.release()
        assert holder.wait() == 0, holder.log()
        assert "the tick in hand finished; releasing the lock" in holder.log()
        with db.session() as s:
            status, claimed_by = s.execute(select(Delivery.status, Delivery.claimed_by).where(
                Delivery.lesson_key == "1", Delivery.kind == "lesson")).one()
        assert status == "sent" and claimed_by.endswith(f":{holder.pid}")  # the holder finished its post
        standby.wait_for_line(r"clock started", timeout=20)  # and the standby took the lock over
        assert len(fake_slack.calls_to("chat.postMessage")) == 1
        standby.send_signal(signal.SIGTERM)  # an idle clock stops at once, cleanly
        assert standby.wait() == 0, standby.log()
    finally:
        holder.kill()
        if standby is not None:
            standby.kill()


def test_the_one_process_development_mode_stops_its_clock_and_its_connection_together(tmp_path, fake_slack):
    with SocketModeServer() as slack_ws:
        fake_slack.serve_socket_mode(slack_ws.url)
        app = StudybotProcess([], studybot_env(
            tmp_path, SLACK_BOT_TOKEN=BOT_TOKEN, SLACK_APP_TOKEN=APP_TOKEN, SLACK_API_URL=fake_slack.api_url,
            DATABASE_URL=f"sqlite:///{tmp_path / 'studybot.sqlite3'}"), name="studybot")
        try:
            link = slack_ws.next_connection()
            app.wait_for_line(r"clock started")
            app.send_signal(signal.SIGTERM)
            assert link.wait_closed() == 1000
            assert app.wait() == 0, app.log()
            assert "the tick in hand finished; releasing the lock" in app.log() and "stopped cleanly" in app.log()
        finally:
            app.kill()
