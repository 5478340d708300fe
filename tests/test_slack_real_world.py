"""Slack as it really answers (issue 10): partial file objects, error codes, channels the bot is not
in or that are archived, bots talking to bots, escaped text. Every case replays a shape from
tests/support/slack_shapes.py through the real bolt app over HTTP, against the fake Slack Web API."""

from __future__ import annotations

import logging
import shlex
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select

from studybot.db.models import Cohort, Delivery, Submission
from studybot.services.posting import retry_delay
from studybot.slack import events as slack_events
from tests.conftest import SIGNING_SECRET
from tests.support import signed_requests as slack
from tests.support import slack_shapes as shapes
from tests.support.waiting import eventually
from tests.test_submissions import CREATE, notebook


def submissions(app) -> int:
    with app.services.db.session() as s:
        return s.scalar(select(func.count()).select_from(Submission))


@pytest.fixture
def app(slack_app, monkeypatch):
    monkeypatch.setattr(slack_events, "FILE_SHARED_GRACE_SECONDS", 0.2)
    slack.slash_command(slack_app.url, SIGNING_SECRET, text=CREATE, user_id="UADMIN",
                        response_url=slack_app.fake.response_url("create"))
    slack_app.fake.wait_for("response_url")
    slack.slash_command(slack_app.url, SIGNING_SECRET, text="join fastai", user_id="U1")
    slack_app.fake.reset()
    return slack_app


def dm_answer(app) -> str:
    [answer] = app.fake.wait_for("chat.postMessage")
    assert answer.args["channel"] == "DU1"
    return answer.args["text"]


# ---------------------------------------------------------------------------- uploads


def test_an_external_file_gets_asked_for_the_notebook_itself(app):
    file = app.fake.add_file_object(shapes.external_file())
    slack.event(app.url, SIGNING_SECRET, shapes.file_share_message({"id": file["id"], "mode": "external"}))
    text = dm_answer(app)
    assert "a link to a file stored elsewhere" in text and "send me the file itself" in text
    assert "Nothing was queued" in text
    assert not app.fake.calls_to("download") and submissions(app) == 0


@pytest.mark.parametrize("error", [shapes.FILE_NOT_FOUND, shapes.FILE_DELETED])
def test_a_file_gone_before_files_info_is_answered(app, error):
    file = app.fake.add_file("solution.ipynb", notebook())
    app.fake.fail_next("files.info", status=200, error=error)
    slack.event(app.url, SIGNING_SECRET, shapes.file_share_message({"id": file["id"]}))
    text = dm_answer(app)
    assert "That file was deleted before I could fetch it. Send the .ipynb again." in text
    assert submissions(app) == 0


@pytest.mark.parametrize("shape, words", [
    (shapes.hidden_by_limit_file(), "this workspace is over its file storage limit"),
    (shapes.tombstone_file(), "That file was deleted before I could fetch it"),
])
def test_hidden_and_deleted_files_say_what_happened(app, shape, words):
    app.fake.add_file_object(shape)
    slack.event(app.url, SIGNING_SECRET, shapes.file_share_message(dict(shape)))
    text = dm_answer(app)
    assert words in text and "not a notebook" not in text


def test_the_file_shared_twin_does_not_download_a_taken_upload_again(app, caplog):
    caplog.set_level(logging.INFO, logger="studybot")
    file = app.fake.add_file("solution.ipynb", notebook())
    slack.event(app.url, SIGNING_SECRET, shapes.file_share_message({"id": file["id"]}))
    app.fake.wait_for("chat.postMessage")
    eventually(lambda: submissions(app) == 1)
    slack.event(app.url, SIGNING_SECRET, {"type": "file_shared", "file_id": file["id"], "user_id": "U1",
                                          "channel_id": "DU1", "file": {"id": file["id"]}})
    eventually(lambda: any("not fetched again" in r.getMessage() for r in caplog.records), timeout=10)
    assert len(app.fake.calls_to("download")) == 1 and len(app.fake.calls_to("files.info")) == 1
    assert submissions(app) == 1


# ---------------------------------------------------------------------------- lesson posts that cannot go out

LESSON_1_DUE = datetime(2027, 1, 5, 17, 0, tzinfo=timezone.utc)  # Tue 18:00 Europe/Berlin


def lesson_row(app, key="1"):
    with app.services.db.session() as s:
        row = s.scalar(select(Delivery).where(Delivery.lesson_key == key, Delivery.kind == "lesson"))
        return row.status, row.attempts, row.note


def lesson_posts(app):
    return [m for m in app.fake.messages("CSTUDY") if "Week 1 of 9" in m.get("text", "")]


def organizer_dms(app):
    return [m["text"] for m in app.fake.messages("DUADMIN")]


def test_a_permanent_slack_error_fails_the_lesson_at_once_and_says_how_to_fix_it(app):
    app.clock.set(LESSON_1_DUE)
    app.fake.set_channel("CSTUDY", is_archived=True)  # archived after the cohort was made
    report = app.services.deliveries.tick()
    assert report.failed == ["fastai:1"]
    status, attempts, note = lesson_row(app)
    assert (status, attempts) == ("failed", 1) and note.startswith("permanent: ") and shapes.IS_ARCHIVED in note
    [told] = organizer_dms(app)
    assert "cannot be posted" in told and "The channel is archived: unarchive it" in told
    app.clock.advance(timedelta(hours=1))
    assert app.services.deliveries.tick().failed == []  # never retried
    assert len(app.fake.calls_to("chat.postMessage")) == 2  # the refused post and the one DM


def test_a_refused_post_waits_its_backoff_then_posts_without_reading_history(app):
    app.clock.set(LESSON_1_DUE)
    app.fake.fail_next("chat.postMessage", status=200, error="rate_limited_by_workspace_policy")
    assert app.services.deliveries.tick().posted == []
    assert lesson_row(app)[0] == "pending" and lesson_row(app)[2].startswith("refused: ")
    assert app.services.deliveries.tick().posted == []  # at once: still waiting its backoff
    assert app.services.deliveries.next_due() == LESSON_1_DUE + retry_delay(1)
    app.clock.advance(retry_delay(1))
    assert app.services.deliveries.tick().posted == ["fastai:1"]
    assert not app.fake.calls_to("conversations.history")  # Slack refused it: nothing to look for
    assert len(lesson_posts(app)) == 1


def test_an_unknown_fate_in_a_channel_the_bot_cannot_read_is_rejoined_and_checked(app):
    app.clock.set(LESSON_1_DUE)
    app.fake.fail_next("chat.postMessage", status=500, times=4)  # past the client's retries: fate unknown
    app.services.deliveries.tick()
    app.fake.set_channel("CSTUDY", is_member=False)  # public: posts still work (chat:write.public), reads do not
    app.clock.advance(retry_delay(1))
    assert app.services.deliveries.tick().posted == ["fastai:1"]
    assert [c.response["error"] for c in app.fake.calls_to("conversations.history") if not c.ok] == ["not_in_channel"]
    assert app.fake.calls_to("conversations.join")[0].ok
    assert len(lesson_posts(app)) == 1 and lesson_row(app)[:2] == ("sent", 2)


def test_an_unknown_fate_that_cannot_be_checked_waits_without_burning_the_row(app):
    app.clock.set(LESSON_1_DUE)
    app.fake.fail_next("chat.postMessage", status=500, times=4)
    app.services.deliveries.tick()
    app.fake.set_channel("CSTUDY", is_member=False)
    app.fake.fail_next("conversations.join", status=200, error=shapes.MISSING_SCOPE, times=10)
    for attempt in range(2, 9):  # more than MAX_ATTEMPTS: none of them counts as a failure
        app.clock.advance(retry_delay(attempt - 1))
        report = app.services.deliveries.tick()
        assert report.posted == [] and report.failed == []
        assert lesson_row(app)[0] == "pending" and lesson_row(app)[2].startswith("unknown: ")
    [told] = organizer_dms(app)  # once, with the fix
    assert "is waiting" in told and "/invite @studybot" in told
    assert lesson_posts(app) == []  # never posted blind: the first attempt may have landed
    app.fake.set_channel("CSTUDY", is_member=True)  # an organizer invited the bot
    app.clock.advance(retry_delay(8))
    assert app.services.deliveries.tick().posted == ["fastai:1"]
    assert len(lesson_posts(app)) == 1


def test_a_failing_row_does_not_hold_up_the_others(app):
    for name, channel in (("second", "CTWO"), ("third", "CTHREE")):
        app.fake.add_channel(channel, name)
        slack.slash_command(app.url, SIGNING_SECRET, user_id="UADMIN", response_url=app.fake.response_url(name),
                            text=CREATE.replace("fastai --channel <#CSTUDY|fastai-study>", f"{name} --channel <#{channel}|{name}>"))
        app.fake.wait_for("response_url", where=lambda c, n=name: c.args["_name"] == n)
    app.clock.set(LESSON_1_DUE)
    app.fake.fail_next("chat.postMessage", status=200, error="ratelimited", times=1)
    first = app.services.deliveries.tick()
    assert len(first.posted) == 2  # one refused; the others went out in the same tick
    app.clock.advance(timedelta(seconds=1))
    assert app.services.deliveries.tick().posted == []  # the refused one waits; nobody else is held
    app.clock.advance(retry_delay(1))
    assert len(app.services.deliveries.tick().posted) == 1


# ---------------------------------------------------------------------------- cohort channels


def create_in(app, channel_markup: str, name: str = "c1"):
    response = slack.slash_command(app.url, SIGNING_SECRET, user_id="UADMIN", response_url=app.fake.response_url(name),
                                   text=CREATE.replace("fastai --channel <#CSTUDY|fastai-study>",
                                                       f"{name} --channel {channel_markup}"))
    assert response.status_code == 200
    [answer] = app.fake.wait_for("response_url", where=lambda c: c.args["_name"] == name)
    return answer.args["text"]


def cohort_names(app) -> list[str]:
    with app.services.db.session() as s:
        return list(s.scalars(select(Cohort.name).order_by(Cohort.name)))


def test_a_public_channel_the_bot_is_not_in_is_joined_when_the_cohort_is_made(app):
    app.fake.add_channel("CPUB1", "fastai-open", is_member=False)
    assert "Created *c1*" in create_in(app, "<#CPUB1|fastai-open>")
    [join] = app.fake.calls_to("conversations.join")
    assert join.ok and join.args["channel"] == "CPUB1"


def test_a_channel_the_bot_may_not_join_is_refused_naming_the_fix(app):
    app.fake.add_channel("CPUB1", "fastai-open", is_member=False)
    app.fake.fail_next("conversations.join", status=200, error=shapes.MISSING_SCOPE)
    assert "I am not in #fastai-open: `/invite @studybot` there, then try again." in create_in(app, "#fastai-open")
    app.fake.add_channel("GPRIV1", "fastai-private", is_private=True, is_member=False)
    assert "I am not in #fastai-private: `/invite @studybot`" in create_in(app, "<#GPRIV1|fastai-private>", "c2")
    assert cohort_names(app) == ["fastai"]


def test_an_archived_channel_is_refused(app):
    shape = shapes.archived_channel()
    app.fake.add_channel(shape["id"], shape["name"], is_archived=True)
    for markup, name in ((f"<#{shape['id']}|{shape['name']}>", "c1"), (f"#{shape['name']}", "c2")):
        assert f"#{shape['name']} is archived: no lesson could be posted there." in create_in(app, markup, name)
    assert cohort_names(app) == ["fastai"] and not app.fake.calls_to("conversations.join")


def test_rescheduling_checks_the_channel_again(app):
    app.fake.set_channel("CSTUDY", is_member=False, is_private=True)  # the bot was removed from it
    response = slack.slash_command(app.url, SIGNING_SECRET, user_id="UADMIN", text="cohort reschedule fastai --time 19:00",
                                   response_url=app.fake.response_url("re"))
    assert response.status_code == 200
    [answer] = app.fake.wait_for("response_url")
    assert "I am not in #fastai-study: `/invite @studybot` there" in answer.args["text"]
    with app.services.db.session() as s:
        assert s.scalar(select(Cohort.post_time)) == "18:00"


# ---------------------------------------------------------------------------- escaped text, bots, quotes


def study(app, text, user="UADMIN", name="r1"):
    response = slack.slash_command(app.url, SIGNING_SECRET, text=text, user_id=user,
                                   response_url=app.fake.response_url(name))
    assert response.status_code == 200
    if response.content:
        return response.json()
    [answer] = app.fake.wait_for("response_url", where=lambda c: c.args["_name"] == name)
    return answer.args


def test_command_text_is_unescaped_once(app):
    answer = study(app, shapes.escaped("fr&ob"))  # Slack sends fr&amp;ob
    assert "I don't know `fr&amp;ob`" in answer["text"]  # escaped once, for display: it reads fr&ob
    assert "&amp;amp;" not in str(answer)
    answer = study(app, shapes.escaped("join <fastai>"), user="U2", name="join")
    assert "There is no cohort named '<fastai>'" in answer["text"]


def test_a_mention_in_a_reason_stays_a_mention_and_other_markup_stays_inert():
    from studybot.commands import parse
    from studybot.messages import escape_keeping_mentions
    from studybot.slack.text import unescape

    typed = unescape('--reason "copied from <@U2|bob> &amp; <@U3>, not &lt;!channel&gt;"')
    reason = parse(shlex.split(typed), {"reason"}).one("reason")
    assert reason == "copied from <@U2|bob> & <@U3>, not <!channel>"
    assert escape_keeping_mentions(reason) == "copied from <@U2|bob> &amp; <@U3>, not &lt;!channel&gt;"
    from studybot.messages import render
    from studybot.services.moderation import SubmissionInfo

    info = SubmissionInfo(id=7, user_id="U1", exercise="digits", cohort_name="fastai", status="passed",
                          seconds=3.0, reason=reason)
    for to_learner in (True, False):  # both the learner's DM and the organizer's answer keep the mention
        message = render("disqualified", info=info, action="disqualified", to_learner=to_learner)
        assert "<@U2|bob>" in message.text and "&lt;!channel&gt;" in message.text
        assert "<!channel>" not in str(message.blocks)


def test_smart_quotes_from_a_phone_are_read_as_quotes(app):
    answer = study(app, "cohort reschedule “fastai” --time ‘19:00’")
    assert "Check your quotes" not in answer["text"] and "19:00" in answer["text"]
    with app.services.db.session() as s:
        assert s.scalar(select(Cohort.post_time)) == "19:00"


def test_the_bot_does_not_welcome_itself(app, caplog):
    caplog.set_level(logging.INFO, logger="studybot")
    assert slack.event(app.url, SIGNING_SECRET, shapes.member_joined_channel("UBOT")).status_code == 200
    eventually(lambda: any("the bot itself joined CSTUDY" in r.getMessage() for r in caplog.records))
    slack.event(app.url, SIGNING_SECRET, shapes.member_joined_channel("U2"))
    [welcome] = app.fake.wait_for("chat.postEphemeral")
    assert welcome.args["user"] == "U2" and len(app.fake.calls_to("chat.postEphemeral")) == 1


@pytest.mark.parametrize("event", [shapes.bot_mention(), shapes.bot_app_mention_with_user()])
def test_mentions_by_other_bots_are_not_answered(app, caplog, event):
    caplog.set_level(logging.INFO, logger="studybot")
    assert slack.event(app.url, SIGNING_SECRET, event).status_code == 200
    eventually(lambda: any("ignoring a mention by the bot" in r.getMessage() for r in caplog.records))
    slack.event(app.url, SIGNING_SECRET, {"type": "app_mention", "channel": "CSTUDY", "user": "U1",
                                          "text": "<@UBOT> help", "ts": "1700000102.000100"})
    [reply] = app.fake.wait_for("chat.postMessage")
    assert reply.args["thread_ts"] == "1700000102.000100" and len(app.fake.calls_to("chat.postMessage")) == 1


def test_a_bots_message_in_a_dm_is_not_answered(app, caplog):
    caplog.set_level(logging.DEBUG, logger="studybot")
    event = shapes.bot_message_in_dm()
    assert slack.event(app.url, SIGNING_SECRET, event).status_code == 200
    eventually(lambda: any(f"not a request: message {event['ts']}" in r.getMessage() for r in caplog.records))
    assert not app.fake.calls_to("chat.postMessage") and submissions(app) == 0


def test_a_learner_rescheduling_is_refused_before_any_channel_check(app):
    answer = study(app, "cohort reschedule fastai --time 19:00", user="U1")
    assert "Only organizers of fastai can reschedule a cohort" in answer["text"]
    assert not app.fake.calls_to("conversations.info") and not app.fake.calls_to("conversations.join")


@pytest.mark.parametrize("code, fix", [
    (shapes.INVALID_BLOCKS, "a bug in studybot"),
    (shapes.CHANNEL_NOT_FOUND, "The channel was deleted"),
    (shapes.NOT_IN_CHANNEL, "`/invite @studybot` there"),
    (shapes.ACCOUNT_INACTIVE, "My Slack account is deactivated"),
])
def test_every_permanent_refusal_ends_the_delivery_with_its_reason(app, code, fix):
    app.clock.set(LESSON_1_DUE)
    app.fake.fail_next("chat.postMessage", status=200, error=code)
    assert app.services.deliveries.tick().failed == ["fastai:1"]
    status, attempts, note = lesson_row(app)
    assert (status, attempts) == ("failed", 1) and note == f"permanent: Slack refused chat_postMessage: {code}"
    [told] = organizer_dms(app)
    assert code in told and fix in told


def test_a_refused_lookup_does_not_pass_for_a_refused_post(app):
    app.clock.set(LESSON_1_DUE)
    app.fake.fail_next("chat.postMessage", status=500, times=4)  # attempt 1: its fate is unknown
    app.services.deliveries.tick()
    app.fake.fail_next("conversations.history", status=200, error="ratelimited")  # attempt 2: the lookup is refused
    app.clock.advance(retry_delay(1))
    app.services.deliveries.tick()
    assert lesson_row(app)[0] == "pending" and not lesson_row(app)[2].startswith("refused: ")
    app.clock.advance(retry_delay(2))
    assert app.services.deliveries.tick().posted == ["fastai:1"]
    assert len([c for c in app.fake.calls_to("conversations.history") if c.ok]) == 1  # attempt 3 looked again
