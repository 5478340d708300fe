"""The fake Slack Web API and the signed-request helpers, proven with the real slack_sdk and bolt."""

from __future__ import annotations

import json
import time

import pytest
import requests
from slack_bolt import App
from slack_bolt.adapter.wsgi import SlackRequestHandler
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler, ServerErrorRetryHandler
from slack_sdk.http_retry.builtin_interval_calculators import BackoffRetryIntervalCalculator
from slack_sdk.webhook import WebhookClient

from tests.support import signed_requests as slack
from tests.support.fake_slack import FakeSlack

SECRET = "test-signing-secret"
TOKEN = "xoxb-test"


@pytest.fixture
def fake():
    with FakeSlack() as server:
        yield server


@pytest.fixture
def client(fake):
    return WebClient(base_url=fake.api_url, token=TOKEN, timeout=5)


# ---------------------------------------------------------------------------- the fake itself
def test_api_url_shape(fake):
    assert fake.api_url == f"http://127.0.0.1:{fake.port}/api/"
    assert fake.response_url("abc") == f"http://127.0.0.1:{fake.port}/response/abc"


def test_auth_test_shape(fake, client):
    resp = client.auth_test()
    assert (resp["user_id"], resp["bot_id"], resp["team_id"]) == ("UBOT", "BBOT", "T1")
    [call] = fake.calls_to("auth.test")
    assert call.token == TOKEN
    assert call.headers["authorization"] == f"Bearer {TOKEN}"


def test_post_message_recorded_with_blocks_decoded(fake, client):
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "*Lesson 1*"}}]
    first = client.chat_postMessage(channel="C1", text="Lesson 1", blocks=blocks)
    second = client.chat_postMessage(channel="C1", text="Lesson 2")
    assert first["ok"] and first["channel"] == "C1"
    assert first["message"]["text"] == "Lesson 1" and first["message"]["blocks"] == blocks
    # unique, increasing "1700000000.000100"-style timestamps
    assert first["ts"] == "1700000000.000100"
    assert float(second["ts"]) > float(first["ts"])

    calls = fake.wait_for("chat.postMessage", count=2)
    assert calls[0].args["blocks"] == blocks  # JSON body, blocks as a list
    assert calls[0].args["channel"] == "C1" and calls[0].ok
    assert calls[0].at <= calls[1].at
    assert [m["text"] for m in fake.messages("C1")] == ["Lesson 1", "Lesson 2"]
    assert fake.messages("C2") == []


def test_form_encoded_json_fields_are_decoded(fake):
    blocks = [{"type": "divider"}]
    resp = requests.post(
        fake.api_url + "chat.postMessage",
        data={"token": TOKEN, "channel": "C9", "text": "[not json]", "blocks": json.dumps(blocks)},
        timeout=5,
    )
    assert resp.json()["ok"] is True
    [call] = fake.calls_to("chat.postMessage")
    assert call.args["blocks"] == blocks
    assert call.args["text"] == "[not json]"
    assert call.token == TOKEN


def test_missing_token_is_not_authed(fake):
    body = requests.post(fake.api_url + "chat.postMessage", data={"channel": "C1", "text": "x"}, timeout=5).json()
    assert body == {"ok": False, "error": "not_authed"}
    [call] = fake.calls_to("chat.postMessage")
    assert not call.ok and call.token is None
    assert fake.messages() == []


def test_dm_by_user_id_and_conversations_open(fake, client):
    opened = client.conversations_open(users="U7")
    assert opened["channel"]["id"] == "DU7"
    posted = client.chat_postMessage(channel="U7", text="hi")
    assert posted["channel"] == "DU7"
    assert [m["text"] for m in fake.messages("DU7")] == ["hi"]
    assert [m["text"] for m in fake.messages("U7")] == ["hi"]


def test_history_returns_posted_messages_with_metadata(fake, client):
    metadata = {"event_type": "lesson_posted", "event_payload": {"cohort": 3, "lesson": 1}}
    one = client.chat_postMessage(channel="C1", text="one", metadata=metadata)
    two = client.chat_postMessage(channel="C1", text="two")
    client.chat_postMessage(channel="C2", text="elsewhere")
    client.chat_postMessage(channel="C1", text="reply", thread_ts=one["ts"])

    plain = client.conversations_history(channel="C1")
    assert [m["text"] for m in plain["messages"]] == ["two", "one"]  # newest first, no thread replies
    assert all("metadata" not in m for m in plain["messages"])

    full = client.conversations_history(channel="C1", include_all_metadata=True)
    assert full["messages"][1]["metadata"] == metadata

    newer = client.conversations_history(channel="C1", oldest=one["ts"])
    assert [m["ts"] for m in newer["messages"]] == [two["ts"]]

    replies = client.conversations_replies(channel="C1", ts=one["ts"])
    assert [m["text"] for m in replies["messages"]] == ["one", "reply"]


def test_update_and_delete_edit_history(fake, client):
    posted = client.chat_postMessage(channel="C1", text="queued")
    updated = client.chat_update(channel="C1", ts=posted["ts"], text="running 1/3")
    assert updated["ts"] == posted["ts"] and updated["message"]["text"] == "running 1/3"
    assert [m["text"] for m in client.conversations_history(channel="C1")["messages"]] == ["running 1/3"]
    with pytest.raises(SlackApiError) as err:
        client.chat_update(channel="C1", ts="1.000000", text="x")
    assert err.value.response["error"] == "message_not_found"
    client.chat_delete(channel="C1", ts=posted["ts"])
    assert client.conversations_history(channel="C1")["messages"] == []


def test_ephemeral_users_channels_views(fake, client):
    fake.add_user("U1", "ada", is_admin=True, tz="Europe/London")
    fake.add_channel("C1", "general")

    assert client.chat_postEphemeral(channel="C1", user="U1", text="psst")["message_ts"]
    user = client.users_info(user="U1")["user"]
    assert (user["id"], user["name"], user["real_name"], user["tz"]) == ("U1", "ada", "ada", "Europe/London")
    assert user["is_admin"] is True and user["is_owner"] is False
    with pytest.raises(SlackApiError) as err:
        client.users_info(user="U404")
    assert err.value.response["error"] == "user_not_found"

    assert client.conversations_info(channel="C1")["channel"]["name"] == "general"
    assert [c["id"] for c in client.conversations_list()["channels"]] == ["C1"]

    view = {"type": "modal", "callback_id": "cohort_create", "title": {"type": "plain_text", "text": "New"}, "blocks": []}
    opened = client.views_open(trigger_id="t1", view=view)["view"]
    assert opened["id"].startswith("V") and opened["callback_id"] == "cohort_create"
    updated = client.views_update(view_id=opened["id"], view={**view, "private_metadata": "42"})["view"]
    assert updated["id"] == opened["id"] and updated["private_metadata"] == "42"
    home = client.views_publish(user_id="U1", view={"type": "home", "blocks": []})["view"]
    assert home["id"].startswith("V") and fake.home_view("U1")["type"] == "home"
    assert fake.wait_for("views.open")[0].args["view"]["callback_id"] == "cohort_create"


def test_file_upload_v2_and_download(fake, client):
    resp = client.files_upload_v2(channel="C1", filename="board.csv", content="rank,user\n1,ada\n", title="Board")
    file_id = resp["file"]["id"]
    [upload] = fake.calls_to("upload")
    assert upload.args["file_id"] == file_id and upload.args["content"] == b"rank,user\n1,ada\n"
    info = client.files_info(file=file_id)["file"]
    assert info["title"] == "Board" and info["channels"] == ["C1"] and info["size"] == 16

    shared = fake.add_file("nb.ipynb", b'{"nbformat": 4}', mimetype="application/json")
    got = requests.get(shared["url_private_download"], headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5)
    assert got.content == b'{"nbformat": 4}'
    anonymous = requests.get(shared["url_private_download"], timeout=5)
    assert anonymous.headers["Content-Type"].startswith("text/html")  # Slack's sign-in page
    assert len(fake.calls_to("download")) == 2


def test_unknown_method_is_ok_and_recorded(fake, client):
    assert client.api_call("reactions.add", json={"channel": "C1", "name": "tada", "timestamp": "1.0"})["ok"]
    assert fake.calls_to("reactions.add")[0].args["name"] == "tada"


def test_ratelimit_retried_by_sdk_and_recorded_once_as_success(fake):
    client = WebClient(base_url=fake.api_url, token=TOKEN, timeout=5, retry_handlers=[RateLimitErrorRetryHandler()])
    fake.fail_next("chat.postMessage", status=429, retry_after=0)
    resp = client.chat_postMessage(channel="C1", text="results")
    assert resp["ok"]
    calls = fake.calls_to("chat.postMessage")
    assert [c.status for c in calls] == [429, 200]
    assert calls[0].response == {"ok": False, "error": "ratelimited"}
    assert [m["text"] for m in fake.messages()] == ["results"]
    assert len(client.conversations_history(channel="C1")["messages"]) == 1


def test_ratelimit_without_retry_handler_raises_with_retry_after(fake, client):
    fake.fail_next("chat.postMessage", status=429, retry_after=7)
    with pytest.raises(SlackApiError) as err:
        client.chat_postMessage(channel="C1", text="x")
    assert err.value.response.status_code == 429
    assert err.value.response.headers["Retry-After"] == ["7"] or err.value.response.headers["Retry-After"] == "7"
    assert client.chat_postMessage(channel="C1", text="y")["ok"]  # only the next call failed


def test_server_error_retried_by_sdk(fake):
    handler = ServerErrorRetryHandler(max_retry_count=2, interval_calculator=BackoffRetryIntervalCalculator(0.01))
    client = WebClient(base_url=fake.api_url, token=TOKEN, timeout=5, retry_handlers=[handler])
    fake.fail_next("chat.update", status=500, times=2)
    posted = client.chat_postMessage(channel="C1", text="queued")
    assert client.chat_update(channel="C1", ts=posted["ts"], text="done")["ok"]
    assert [c.status for c in fake.calls_to("chat.update")] == [500, 500, 200]
    assert fake.history("C1")[0]["text"] == "done"


def test_fault_with_slack_error_body(fake, client):
    fake.fail_next("views.open", status=200, error="expired_trigger_id")
    with pytest.raises(SlackApiError) as err:
        client.views_open(trigger_id="t1", view={"type": "modal", "blocks": []})
    assert err.value.response["error"] == "expired_trigger_id"


def test_response_url_recording(fake):
    WebhookClient(fake.response_url("cmd1")).send(text="Week 1: Getting started", response_type="ephemeral")
    WebhookClient(fake.response_url("cmd2")).send(text="other")
    [call] = fake.wait_for("response_url", where=lambda c: c.args["_name"] == "cmd1")
    assert call.args["text"] == "Week 1: Getting started" and call.args["response_type"] == "ephemeral"
    assert [r["text"] for r in fake.responses("cmd2")] == ["other"]


def test_wait_for_polls_until_calls_arrive(fake, client):
    import threading

    timer = threading.Timer(0.2, lambda: client.chat_postMessage(channel="C1", text="late"))
    timer.start()
    try:
        [call] = fake.wait_for("chat.postMessage", timeout=3)
    finally:
        timer.join()
    assert call.args["text"] == "late"


def test_wait_for_timeout_lists_recorded_methods(fake, client):
    client.auth_test()
    client.chat_postMessage(channel="C1", text="hello")
    started = time.monotonic()
    with pytest.raises(AssertionError) as err:
        fake.wait_for("views.open", timeout=0.2)
    assert time.monotonic() - started < 2
    message = str(err.value)
    assert "'views.open'" in message
    assert "auth.test" in message and "chat.postMessage" in message and "text='hello'" in message


def test_reset_forgets_calls_and_messages(fake, client):
    fake.add_user("U1", "ada")
    client.chat_postMessage(channel="C1", text="x")
    fake.reset()
    assert fake.calls == [] and fake.messages() == []
    assert client.conversations_history(channel="C1")["messages"] == []
    assert client.users_info(user="U1")["ok"]


# ---------------------------------------------------------------------------- signed requests into a real bolt app
@pytest.fixture
def bolt_url(fake):
    app = App(signing_secret=SECRET, client=WebClient(base_url=fake.api_url, token=TOKEN))

    @app.command("/study")
    def study(ack, respond, command):
        ack(f"echo: {command['text']}")
        respond(text=f"later: {command['text']}")

    @app.event("app_mention")
    def mention(event, say):
        say(text=f"hi <@{event['user']}>", channel=event["channel"])

    @app.view("cohort_create")
    def submit(ack, view):
        values = view["state"]["values"]
        ack(response_action="errors", errors={"name": "taken: " + values["name"]["name"]["value"]})

    @app.action("join")
    def join(ack, body, client):
        ack()
        client.chat_postMessage(channel=body["user"]["id"], text=f"joined {body['actions'][0]['value']}")

    with slack.serve_wsgi(SlackRequestHandler(app)) as url:
        yield url


def test_signed_slash_command_gets_200(fake, bolt_url):
    resp = slack.slash_command(bolt_url, SECRET, text="lesson", response_url=fake.response_url("c1"))
    assert resp.status_code == 200
    assert resp.text == "echo: lesson"  # ack(text) answers plain text
    [later] = fake.wait_for("response_url")
    assert later.args["text"] == "later: lesson" and later.args["_name"] == "c1"
    assert fake.calls_to("auth.test")  # bolt verified its token against the fake at start-up


def test_unsigned_and_stale_requests_get_401(fake, bolt_url):
    body = slack.slash_command_body(text="lesson")
    assert slack.unsigned(bolt_url, body, slack.FORM).status_code == 401
    stale = slack.slash_command(bolt_url, SECRET, text="lesson", timestamp=time.time() - 600)
    assert stale.status_code == 401
    wrong_secret = slack.slash_command(bolt_url, "not-the-secret", text="lesson")
    assert wrong_secret.status_code == 401
    assert fake.calls_to("response_url") == []


def test_signed_event_and_retry_headers(fake, bolt_url):
    mention = {"type": "app_mention", "user": "U1", "channel": "C1", "text": "<@UBOT> hi", "ts": "1.0"}
    assert slack.event(bolt_url, SECRET, mention, event_id="Ev1").status_code == 200
    [said] = fake.wait_for("chat.postMessage")
    assert said.args["text"] == "hi <@U1>" and said.args["channel"] == "C1"
    retried = slack.event(bolt_url, SECRET, mention, event_id="Ev1", retry_num=1)
    assert retried.status_code == 200
    assert slack.event(bolt_url, SECRET, mention, timestamp=time.time() - 600).status_code == 401


def test_signed_interactive_payloads(fake, bolt_url):
    payload = slack.view_submission_payload("cohort_create", {"name": {"name": "fastai-2024"}}, private_metadata="7")
    resp = slack.interactive(bolt_url, SECRET, payload)
    assert resp.status_code == 200
    assert resp.json() == {"response_action": "errors", "errors": {"name": "taken: fastai-2024"}}

    resp = slack.interactive(bolt_url, SECRET, slack.block_action_payload("join", "fastai-2024", user_id="U5"))
    assert resp.status_code == 200
    [dm] = fake.wait_for("chat.postMessage")
    assert (dm.args["channel"], dm.args["text"]) == ("U5", "joined fastai-2024")
    assert slack.interactive(bolt_url, SECRET, payload, timestamp=time.time() - 600).status_code == 401
