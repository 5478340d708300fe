"""The real bolt app over real HTTP, with signed requests, against the recording fake Slack Web API."""

from __future__ import annotations

import logging
import os
import threading
import time
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select

from studybot.db.models import Cohort, Delivery
from studybot.slack.server import make_server
from tests.conftest import FAST_RETRIES, SIGNING_SECRET
from tests.support import signed_requests as slack
from tests.support.waiting import eventually

CREATE = "cohort create fastai --channel <#CSTUDY|fastai-study> --start 2027-01-05 --time 18:00 --tz Europe/Berlin"


def cohorts(app) -> int:
    with app.services.db.session() as s:
        return s.scalar(select(func.count()).select_from(Cohort))


def study(app, text, user="UADMIN", name="r1"):
    """Run /study; the answer comes in the ack (read-only commands) or through the response_url."""
    response = slack.slash_command(app.url, SIGNING_SECRET, text=text, user_id=user,
                                   response_url=app.fake.response_url(name))
    assert response.status_code == 200
    if response.content:
        return response.json()
    [answer] = app.fake.wait_for("response_url", where=lambda c: c.args["_name"] == name)
    return answer.args


def test_lesson_is_answered_inside_the_ack_and_follows_new_posts(slack_app):
    study(slack_app, CREATE)
    assert "You are not in any cohort" in study(slack_app, "lesson", user="U1")["text"]
    study(slack_app, "join fastai", user="U1")
    before = study(slack_app, "lesson", user="U1")
    assert before["response_type"] == "ephemeral" and "coming" in before["text"] and "Lesson 1" in before["text"]
    assert study(slack_app, "lesson", user="U1") == before  # cached: nothing changed
    slack_app.clock.set(datetime(2027, 1, 12, 17, 0, 5, tzinfo=timezone.utc))
    slack_app.services.deliveries.tick()  # lessons 1 and 2 post: the cached answer must not survive
    after = study(slack_app, "lesson", user="U1")
    assert "this week: Lesson 2: Deployment" in after["text"]
    assert len(slack_app.fake.calls_to("response_url")) == 1  # only `cohort create` answered that way


def test_help_is_acked_then_answered_ephemerally(slack_app):
    answer = study(slack_app, "help", user="U1")
    assert answer["response_type"] == "ephemeral"
    assert "/study join NAME" in answer["text"]
    assert answer["blocks"][0]["type"] == "section"


def test_an_admin_creates_a_cohort_from_the_command_line(slack_app):
    answer = study(slack_app, CREATE)
    assert "Created *fastai* in <#CSTUDY|fastai-study>" in answer["blocks"][0]["text"]["text"]
    assert "<!date^1799168400^" in answer["blocks"][0]["text"]["text"]  # Tue 5 Jan 2027 17:00 UTC, per reader tz
    with slack_app.services.db.session() as s:
        cohort = s.scalar(select(Cohort))
        assert (cohort.channel_id, cohort.timezone, cohort.created_by) == ("CSTUDY", "Europe/Berlin", "UADMIN")


def test_a_channel_typed_by_name_is_looked_up(slack_app):
    study(slack_app, CREATE.replace("<#CSTUDY|fastai-study>", "#fastai-study"))
    with slack_app.services.db.session() as s:
        assert s.scalar(select(Cohort.channel_id)) == "CSTUDY"
    assert slack_app.fake.calls_to("conversations.list")


def test_bad_fields_get_an_ephemeral_error_naming_them(slack_app):
    for bad, field in [("--tz Europe/Berlin", "--tz Nowhere/City"), ("--start 2027-01-05", "--start tomorrow")]:
        answer = study(slack_app, CREATE.replace(*((bad, field))), name=field.split()[0][2:])
        assert answer["response_type"] == "ephemeral"
        assert f"Field: `{field.split()[0][2:]}`. Nothing was changed." in str(answer["blocks"])
    answer = study(slack_app, CREATE.replace("<#CSTUDY|fastai-study>", "#no-such-channel"), name="channel")
    assert "I cannot find #no-such-channel" in answer["text"]
    assert cohorts(slack_app) == 0


def test_non_organizers_are_refused(slack_app):
    answer = study(slack_app, CREATE, user="U1")
    assert "Only organizers" in answer["text"]
    assert cohorts(slack_app) == 0
    owner = study(slack_app, CREATE, user="UOWNER", name="owner")  # owners count as admins
    assert "Created" in owner["text"]


def test_unsigned_and_stale_requests_get_401(slack_app):
    body = "command=%2Fstudy&text=help&user_id=U1"
    assert slack.unsigned(slack_app.url, body).status_code == 401
    stale = slack.slash_command(slack_app.url, SIGNING_SECRET, text="help", timestamp=time.time() - 600)
    assert stale.status_code == 401
    forged = slack.slash_command(slack_app.url, "not-the-secret", text="help")
    assert forged.status_code == 401
    time.sleep(0.2)
    assert not slack_app.fake.calls_to("response_url")


def test_the_cohort_form_opens_and_validates_field_by_field(slack_app):
    response = slack.slash_command(slack_app.url, SIGNING_SECRET, text="cohort create", user_id="UADMIN",
                                   trigger_id="trig-1")
    assert response.status_code == 200
    [opened] = slack_app.fake.wait_for("views.open")
    assert opened.args["trigger_id"] == "trig-1"
    assert opened.args["view"]["callback_id"] == "cohort_create"
    tz_block = next(b for b in opened.args["view"]["blocks"] if b["block_id"] == "tz")
    assert tz_block["element"]["initial_value"] == "Europe/Berlin"  # the organizer's own Slack timezone

    values = {
        "name": {"value": "fastai"},
        "channel": {"value": {"type": "conversations_select", "selected_conversation": "CSTUDY"}},
        "curriculum": {"value": {"type": "static_select", "selected_option": {"value": "fastai-part1-2022"}}},
        "start": {"value": {"type": "datepicker", "selected_date": "2027-01-05"}},
        "weekday": {"value": {"type": "static_select", "selected_option": None}},
        "time": {"value": {"type": "timepicker", "selected_time": "18:00"}},
        "tz": {"value": "Atlantis/Lost"},
    }
    bad = slack.interactive(slack_app.url, SIGNING_SECRET,
                            slack.view_submission_payload("cohort_create", values, user_id="UADMIN"))
    assert bad.status_code == 200
    assert bad.json() == {"response_action": "errors", "errors": {"tz": bad.json()["errors"]["tz"]}}
    assert "not an IANA timezone" in bad.json()["errors"]["tz"]
    assert cohorts(slack_app) == 0

    values["tz"] = {"value": "Europe/Berlin"}
    good = slack.interactive(slack_app.url, SIGNING_SECRET,
                             slack.view_submission_payload("cohort_create", values, user_id="UADMIN"))
    assert good.status_code == 200 and good.text == ""
    [dm] = slack_app.fake.wait_for("chat.postMessage")
    assert dm.args["channel"] == "DUADMIN" and "Created *fastai*" in dm.args["text"]
    slack_app.fake.wait_for("views.publish")
    assert cohorts(slack_app) == 1


def test_learners_do_not_get_the_form(slack_app):
    answer = study(slack_app, "cohort create", user="U1")
    assert "Only organizers" in answer["text"]
    assert not slack_app.fake.calls_to("views.open")


def test_app_home_shows_cohorts_and_organizer_controls(slack_app):
    study(slack_app, CREATE)
    study(slack_app, "join fastai", user="U1", name="join")
    slack.event(slack_app.url, SIGNING_SECRET, {"type": "app_home_opened", "user": "U1", "tab": "home"})
    [learner] = slack_app.fake.wait_for("views.publish")
    text = str(learner.args["view"])
    assert learner.args["user_id"] == "U1" and "*fastai*" in text and "Organizer controls" not in text
    slack.event(slack_app.url, SIGNING_SECRET, {"type": "app_home_opened", "user": "UADMIN", "tab": "home"})
    _, organizer = slack_app.fake.wait_for("views.publish", count=2)
    actions = [e["action_id"] for b in organizer.args["view"]["blocks"] if b["type"] == "actions" for e in b["elements"]]
    assert actions == ["cohort_pause", "cohort_skip", "cohort_create_open"]


def test_a_retried_event_is_handled_once(slack_app):
    event = {"type": "app_home_opened", "user": "U1", "tab": "home"}
    first = slack.event(slack_app.url, SIGNING_SECRET, event, event_id="Ev1")
    retry = slack.event(slack_app.url, SIGNING_SECRET, event, event_id="Ev1", retry_num=1, retry_reason="http_timeout")
    assert first.status_code == retry.status_code == 200
    slack_app.fake.wait_for("views.publish")
    time.sleep(0.5)
    assert len(slack_app.fake.calls_to("views.publish")) == 1


def test_an_event_id_is_first_seen_once(slack_app):
    events = slack_app.services.processed_events
    assert [events.first_time("Ev9"), events.first_time("Ev9"), events.first_time("Ev10")] == [True, False, True]


def test_home_buttons_pause_a_cohort(slack_app):
    study(slack_app, CREATE)
    payload = slack.block_action_payload("cohort_pause", "fastai", user_id="UADMIN")
    assert slack.interactive(slack_app.url, SIGNING_SECRET, payload).status_code == 200
    [dm] = slack_app.fake.wait_for("chat.postMessage")
    assert "Paused *fastai*" in str(dm.args["blocks"])
    with slack_app.services.db.session() as s:
        assert s.scalar(select(Cohort.status)) == "paused"


def test_every_subscribed_event_gets_200(slack_app):
    for event in ({"type": "message", "channel": "C9", "channel_type": "channel", "user": "U1", "text": "hi"},
                  {"type": "tokens_revoked", "tokens": {"bot": ["B1"]}},
                  {"type": "app_uninstalled"},
                  {"type": "app_mention", "channel": "CSTUDY", "user": "U1", "text": "<@UBOT> help", "ts": "1.1"},
                  {"type": "member_joined_channel", "channel": "C9", "user": "U1"}):
        assert slack.event(slack_app.url, SIGNING_SECRET, event).status_code == 200, event["type"]


def test_a_dm_gets_pointed_at_the_commands(slack_app):
    slack.event(slack_app.url, SIGNING_SECRET, {"type": "message", "channel": "DU1", "channel_type": "im",
                                                "user": "U1", "text": "hello?"})
    [reply] = slack_app.fake.wait_for("chat.postMessage")
    assert reply.args["channel"] == "DU1" and "/study lesson" in reply.args["text"]


def test_joining_the_cohort_channel_suggests_joining_the_cohort(slack_app):
    study(slack_app, CREATE)
    slack.event(slack_app.url, SIGNING_SECRET, {"type": "member_joined_channel", "channel": "CSTUDY", "user": "U2"})
    [hint] = slack_app.fake.wait_for("chat.postEphemeral")
    assert hint.args["user"] == "U2" and "/study join fastai" in hint.args["text"]


def test_the_lesson_post_lands_in_the_channel_on_time_despite_a_429(slack_app):
    study(slack_app, CREATE)
    slack_app.fake.fail_next("chat.postMessage", status=429, retry_after=3)
    slack_app.clock.set(datetime(2027, 1, 5, 17, 0, 30, tzinfo=timezone.utc))
    assert slack_app.services.deliveries.tick().posted == ["fastai:1"]
    calls = slack_app.fake.calls_to("chat.postMessage")
    assert [c.status for c in calls] == [429, 200]
    # waited for Retry-After (3 s, shrunk by the tests' retry policy), not just the minimum
    assert calls[1].at - calls[0].at >= 3 * FAST_RETRIES.retry_after_scale
    post = calls[1].args
    assert post["channel"] == "CSTUDY"
    assert post["blocks"][0] == {"type": "header", "text": {"type": "plain_text", "text": "Week 1: Getting started"}}
    assert post["metadata"]["event_type"] == "studybot_delivery"
    with slack_app.services.db.session() as s:
        row_id = s.scalar(select(Delivery.id).where(Delivery.kind == "lesson", Delivery.lesson_key == "1"))
    assert post["metadata"]["event_payload"] == {"tag": f"delivery:{row_id}"}
    assert slack_app.services.deliveries.tick().posted == []


def test_a_500_is_retried_and_the_post_is_not_lost(slack_app):
    study(slack_app, CREATE)
    slack_app.fake.fail_next("chat.postMessage", status=500, times=2)
    slack_app.clock.set(datetime(2027, 1, 5, 17, 0, 30, tzinfo=timezone.utc))
    assert slack_app.services.deliveries.tick().posted == ["fastai:1"]
    assert [c.status for c in slack_app.fake.calls_to("chat.postMessage")] == [500, 500, 200]


def test_posts_to_one_channel_are_paced(slack_app):
    study(slack_app, CREATE)
    study(slack_app, CREATE.replace("create fastai", "create second"), name="second")
    slack_app.clock.set(datetime(2027, 1, 5, 17, 1, tzinfo=timezone.utc))
    assert sorted(slack_app.services.deliveries.tick().posted) == ["fastai:1", "second:1"]
    first, second = slack_app.fake.calls_to("chat.postMessage")
    assert second.at - first.at >= 0.05  # the fixture's interval; production uses 1.1 s


def test_reminders_are_dms_to_members_without_a_submission(slack_app):
    study(slack_app, CREATE)
    study(slack_app, "join fastai", user="U1", name="j1")
    slack_app.clock.set(datetime(2027, 1, 19, 17, tzinfo=timezone.utc))  # lesson 3 (digits) posts
    with slack_app.services.db.session() as s:  # lessons 1 and 2 went out earlier
        from studybot.db.models import Delivery
        for d in s.scalars(select(Delivery).where(Delivery.lesson_key.in_(["1", "2"]))):
            d.status = "sent"
    slack_app.services.deliveries.tick()
    slack_app.clock.set(datetime(2027, 1, 25, 17, tzinfo=timezone.utc) + timedelta(seconds=5))
    assert slack_app.services.deliveries.tick().reminded == ["fastai:3:U1"]
    [opened] = slack_app.fake.calls_to("conversations.open")
    assert opened.args["users"] == "U1"
    dm = slack_app.fake.calls_to("chat.postMessage")[-1]
    assert dm.args["channel"] == "DU1" and "digits" in dm.args["text"]


@pytest.mark.parametrize("event, method, logged", [
    ({"type": "member_joined_channel", "channel": "CSTUDY", "user": "U2"}, "chat.postEphemeral",
     "could not welcome U2 to fastai: Slack refused chat_postEphemeral: user_not_in_channel"),
    ({"type": "app_home_opened", "user": "U1", "tab": "home"}, "views.publish",
     "could not publish the App Home of U1: Slack refused views_publish: user_not_in_channel"),
    ({"type": "message", "channel": "DU1", "channel_type": "im", "user": "U1", "text": "hello?"}, "chat.postMessage",
     "could not point U1 at the commands: Slack refused chat_postMessage: user_not_in_channel"),
])
def test_a_post_slack_refuses_is_logged_as_a_chat_error_not_escaped_from_the_listener(slack_app, caplog, event,
                                                                                     method, logged):
    study(slack_app, CREATE)
    slack_app.fake.fail_next(method, status=200, error="user_not_in_channel")
    assert slack.event(slack_app.url, SIGNING_SECRET, event).status_code == 200
    [refused] = slack_app.fake.wait_for(method)
    assert not refused.ok
    eventually(lambda: logged in caplog.messages)  # the listener's last act: nothing can be logged after it
    escaped = [r for r in caplog.records if r.levelno >= logging.ERROR and "user_not_in_channel" in r.getMessage()]
    assert not escaped  # bolt's "Failed to run listener function", with Slack's error in it


def test_a_mention_is_answered_in_its_thread_at_the_channels_pace(slack_app):
    study(slack_app, CREATE)
    slack_app.services.chat.pacer.interval = 0.5  # long enough that an unpaced reply could not wait this long
    slack_app.clock.set(datetime(2027, 1, 5, 17, 0, 30, tzinfo=timezone.utc))
    assert slack_app.services.deliveries.tick().posted == ["fastai:1"]
    slack.event(slack_app.url, SIGNING_SECRET, {"type": "app_mention", "channel": "CSTUDY", "user": "U1",
                                                "text": "<@UBOT> help", "ts": "7.1"})
    lesson, reply = slack_app.fake.wait_for("chat.postMessage", count=2)
    assert reply.args["channel"] == "CSTUDY" and reply.args["thread_ts"] == "7.1"
    assert "/study join NAME" in reply.args["text"]
    assert reply.at - lesson.at >= 0.45


def test_find_post_finds_a_tagged_post_in_the_channel_history(fake_slack):
    """The idempotency tag survives the trip through Slack's message metadata, also for posts made
    before tags existed (their metadata named the deliveries row)."""
    from studybot.ports import Message
    from studybot.slack.chat import SlackChat, make_web_client

    chat = SlackChat(make_web_client("xoxb-test", fake_slack.api_url), post_interval=0)
    since = datetime(2023, 1, 1, tzinfo=timezone.utc)  # the fake's message ts count from 1700000000
    chat.post("CSTUDY", Message("untagged"))
    tagged = chat.post("CSTUDY", Message("tagged"), tag="delivery:7")
    chat.post("CSTUDY", Message("another"), tag="delivery:8")
    assert chat.find_post("CSTUDY", since=since, tag="delivery:7") == tagged
    assert chat.find_post("CSTUDY", since=since, tag="delivery:9") is None
    legacy = chat.client.chat_postMessage(channel="CSTUDY", text="old board", metadata={
        "event_type": "studybot_leaderboard", "event_payload": {"delivery_id": "12"}})["ts"]
    assert chat.find_post("CSTUDY", since=since, tag="delivery:12") == legacy
    assert [c.args.get("metadata") for c in fake_slack.calls_to("chat.postMessage")][:2] == [
        None, {"event_type": "studybot_delivery", "event_payload": {"tag": "delivery:7"}}]


def thread_cpu_seconds(thread) -> float:
    """CPU time (user + system) one thread of this process has used so far, from /proc."""
    with open(f"/proc/self/task/{thread.native_id}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def test_an_idle_http_server_sleeps_in_select(slack_app):
    # Waitress truncates its loop timeout to whole seconds: the 0.05 s the tests once passed became
    # 0, and the server's event loop spun a core in every test, starving the sandbox's training.
    with pytest.raises(ValueError, match="whole number of seconds"):
        make_server(lambda environ, start_response: [], port=0, loop_timeout=0.05)
    study(slack_app, "help", user="U1")
    http = next(t for t in threading.enumerate() if t.name == "http")
    before, started = thread_cpu_seconds(http), time.monotonic()
    time.sleep(1.0)  # what is measured is the CPU the loop burns meanwhile: about 0 s asleep, 1 s spinning
    used = thread_cpu_seconds(http) - before
    assert used < 0.25 * (time.monotonic() - started), used
