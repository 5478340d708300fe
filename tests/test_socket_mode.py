"""`studybot socket` end to end: the real process (the CLI's Socket Mode entry, bolt's
SocketModeHandler on slack_sdk's built-in client) against a local Socket Mode server
(tests/support/socket_mode.py) and the recording fake Web API, which hands out that server's URL
from ``apps.connections.open``. Slack's protocol, step by step: hello; a slash command acked empty
and answered through its response_url; one answered inside the ack's payload; a DM event acked and
replied to through the Web API; a view submission whose ack carries field errors; a button; a
``refresh_requested`` disconnect, after which the app opens a new connection and keeps serving."""

from __future__ import annotations

import pytest

from tests.conftest import BOT_TOKEN
from tests.support.processes import StudybotProcess, studybot_env
from tests.support.signed_requests import block_action_payload, view_submission_payload
from tests.support.socket_mode import (SocketModeServer, disconnect, events_api_envelope, hello,
                                       interactive_envelope, slash_commands_envelope)

APP_TOKEN = "xapp-1-A1-1234-test"
CREATE = "cohort create fastai --channel <#CSTUDY|fastai-study> --start 2027-01-05 --time 18:00 --tz Europe/Berlin"
FORM = {
    "name": {"value": "fastai"},
    "channel": {"value": {"type": "conversations_select", "selected_conversation": "CSTUDY"}},
    "curriculum": {"value": {"type": "static_select", "selected_option": {"value": "fastai-part1-2022"}}},
    "start": {"value": {"type": "datepicker", "selected_date": "2027-01-05"}},
    "weekday": {"value": {"type": "static_select", "selected_option": None}},
    "time": {"value": {"type": "timepicker", "selected_time": "18:00"}},
    "tz": {"value": "Europe/Berlin"},
}


def socket_env(tmp_path, fake_slack, **extra) -> dict:
    return studybot_env(tmp_path, SLACK_BOT_TOKEN=BOT_TOKEN, SLACK_APP_TOKEN=APP_TOKEN,
                        SLACK_API_URL=fake_slack.api_url, DATABASE_URL=f"sqlite:///{tmp_path / 'studybot.sqlite3'}",
                        **extra)


@pytest.fixture
def slack_ws():
    with SocketModeServer() as server:
        yield server


@pytest.fixture
def socket_app(tmp_path, fake_slack, slack_ws):
    fake_slack.serve_socket_mode(slack_ws.url)
    app = StudybotProcess(["socket"], socket_env(tmp_path, fake_slack))
    yield app
    app.kill()


def test_socket_mode_serves_every_kind_of_envelope_and_survives_a_refresh(socket_app, fake_slack, slack_ws):
    link = slack_ws.next_connection()
    [opened] = fake_slack.calls_to("apps.connections.open")
    assert opened.token == APP_TOKEN  # the app-level token opens connections, never the bot token
    assert f"ticket={link.ticket}" in opened.response["url"]
    link.send(hello())

    # A command that writes: an empty ack within 3 s, the answer through the response_url.
    create = link.send(slash_commands_envelope(text=CREATE, user_id="UADMIN",
                                               response_url=fake_slack.response_url("create")))
    assert link.ack(create) == {"envelope_id": create}
    [answer] = fake_slack.wait_for("response_url", where=lambda c: c.args["_name"] == "create", timeout=10)
    assert "Created *fastai*" in answer.args["text"]

    # A read-only command: the answer is the ack's payload, as HTTP mode's is the response body.
    lesson = link.send(slash_commands_envelope(text="lesson", user_id="U1"))
    ack = link.ack(lesson)
    assert ack["envelope_id"] == lesson
    assert ack["payload"]["response_type"] == "ephemeral"
    assert "not in any cohort" in ack["payload"]["text"] and ack["payload"]["blocks"][0]["type"] == "section"

    # An event: acked without a payload; the reply goes through the Web API.
    dm = link.send(events_api_envelope({"type": "message", "channel": "DU1", "channel_type": "im", "user": "U1",
                                        "text": "hello?", "ts": "1700000001.000100"}))
    assert link.ack(dm) == {"envelope_id": dm}
    [reply] = fake_slack.wait_for("chat.postMessage", timeout=10)
    assert reply.args["channel"] == "DU1" and "/study lesson" in reply.args["text"]

    # A view submission with a bad field: the errors ride in the ack, and the form stays open.
    bad_form = {**FORM, "tz": {"value": "Atlantis/Lost"}, "name": {"value": "second"}}
    bad = link.send(interactive_envelope(view_submission_payload("cohort_create", bad_form, user_id="UADMIN")))
    ack = link.ack(bad)
    assert ack["payload"]["response_action"] == "errors"
    assert "not an IANA timezone" in ack["payload"]["errors"]["tz"]

    # A button: acked empty; the organizer is told in a DM.
    pause = link.send(interactive_envelope(block_action_payload("cohort_pause", "fastai", user_id="UADMIN")))
    assert link.ack(pause) == {"envelope_id": pause}
    fake_slack.wait_for("chat.postMessage", where=lambda c: "Paused *fastai*" in str(c.args.get("blocks")),
                        timeout=10)

    # refresh_requested: a new URL (a second apps.connections.open), a new connection, then the old
    # one closed; the new one serves.
    link.send(disconnect("refresh_requested"))
    second = slack_ws.next_connection()
    assert len(fake_slack.calls_to("apps.connections.open")) == 2 and second.ticket != link.ticket
    link.wait_closed()
    second.send(hello())
    again = second.send(slash_commands_envelope(text="lesson fastai", user_id="U1"))
    assert "fastai" in second.ack(again)["payload"]["text"]
    mention = second.send(events_api_envelope({"type": "app_mention", "channel": "CSTUDY", "user": "U1",
                                               "text": "<@UBOT> help", "ts": "1700000002.000200"}))
    assert second.ack(mention) == {"envelope_id": mention}
    [threaded] = fake_slack.wait_for("chat.postMessage", where=lambda c: c.args.get("thread_ts"), timeout=10)
    assert threaded.args["channel"] == "CSTUDY" and threaded.args["thread_ts"] == "1700000002.000200"
    assert socket_app.process.poll() is None


def test_a_revoked_app_token_stops_start_up_naming_the_variable(tmp_path, fake_slack, slack_ws):
    fake_slack.serve_socket_mode(slack_ws.url)
    fake_slack.fail_next("apps.connections.open", status=200, error="invalid_auth")  # Slack's answer to a revoked token
    app = StudybotProcess(["socket"], {**socket_env(tmp_path, fake_slack), "SLACK_APP_TOKEN": "xapp-revoked"})
    try:
        assert app.wait() == 2
        assert "invalid_auth" in app.log() and "SLACK_APP_TOKEN" in app.log()
        assert "xapp-revoked" not in app.log()  # the token itself is never logged
    finally:
        app.kill()
