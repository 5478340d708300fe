"""The organizers' digest, the lesson threads and streaks in Slack: the real bolt app over HTTP, signed
requests, the fake Web API (chat.postMessage in a thread, the files upload v2 flow), both databases; and
two workspaces, whose digests never show each other's learners."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

from sqlalchemy import select

from studybot.db.models import Submission
from studybot.services import digest_plot
from studybot.teams import Team, acting_for
from tests.conftest import SIGNING_SECRET
from tests.support import signed_requests as slack
from tests.support.waiting import eventually
from tests.test_digests import LEGEND_SWATCH, check_png, pixels_of
from tests.test_slack_http import CREATE, study
from tests.test_workspaces import CHANNEL_OF, TEAM_A, TEAM_B, TOKEN_A, TOKEN_B, deployment  # noqa: F401 - a fixture

LESSON_1 = datetime(2027, 1, 5, 17, 0, 30, tzinfo=timezone.utc)  # Tue 5 Jan 18:00 Berlin, just after
DIGEST_SLOT = datetime(2027, 1, 11, 8, 0, 30, tzinfo=timezone.utc)  # Mon 11 Jan 09:00 Berlin, just after


def graded(db, user: str, exercise: str, status: str, when: datetime) -> None:
    with db.session() as s:
        s.add(Submission(user_id=user, exercise_id=exercise, status=status, created_at=when, lane="ranked",
                         source="slack", finished_at=when))


def uploaded_png(fake, channel: str) -> bytes:
    """The content of the one file completed into ``channel`` through the files upload v2 flow."""
    [done] = [c for c in fake.calls_to("files.completeUploadExternal") if c.args.get("channel_id") == channel]
    [item] = done.response["files"]
    [upload] = [c for c in fake.calls_to("upload") if c.args["file_id"] == item["id"]]
    assert item["name"].endswith(".png") and channel in item["channels"]
    return upload.args["content"]


def thread_reply(app, *, user: str, ts: str, thread_ts: str, channel="CSTUDY", event_id=None, **extra):
    event = {"type": "message", "channel": channel, "channel_type": "channel", "user": user, "text": "a question",
             "ts": ts, "thread_ts": thread_ts, **extra}
    response = slack.event(app.url, SIGNING_SECRET, event, event_id=event_id)
    assert response.status_code == 200


def test_the_manifest_subscribes_to_channel_messages_for_thread_replies():
    manifest = json.loads((Path(__file__).parent.parent / "studybot" / "slack" / "manifest.json").read_text())
    events = manifest["settings"]["event_subscriptions"]["bot_events"]
    scopes = manifest["oauth_config"]["scopes"]["bot"]
    assert {"message.channels", "message.groups"} <= set(events)
    assert {"channels:history", "groups:history", "files:write"} <= set(scopes)


def test_lesson_thread_replies_are_counted_and_the_digest_goes_to_the_private_channel(slack_app):
    app, fake, services = slack_app, slack_app.fake, slack_app.services
    fake.add_channel("GORG", "organizers", is_private=True)
    fake.add_channel("CPUBLIC", "general")
    study(app, CREATE)
    for user in ("U1", "U2"):
        study(app, "join fastai", user=user, name=f"join-{user}")
    refused = study(app, "cohort digest fastai --weekday mon --time 09:00 --channel <#CPUBLIC|general>", name="pub")
    assert "#general is public" in refused["text"] and "Field: `channel`" in json.dumps(refused["blocks"])
    done = study(app, "cohort digest fastai --weekday mon --time 09:00 --channel <#GORG|organizers>", name="set")
    assert "posted to <#GORG|organizers>" in done["blocks"][0]["text"]["text"]

    # Lesson 1 posts; its thread opens with a prompt, a reply in the post's thread carrying a tag.
    app.clock.set(LESSON_1)
    assert services.deliveries.tick().posted == ["fastai:1"]
    assert services.lesson_threads.tick() == ["fastai:1"]
    assert services.lesson_threads.tick() == []
    [lesson, prompt] = fake.calls_to("chat.postMessage")
    assert prompt.args["thread_ts"] == lesson.response["ts"] and prompt.args["channel"] == "CSTUDY"
    assert "Questions about lesson 1" in prompt.args["text"]
    assert prompt.args["metadata"]["event_payload"]["tag"].startswith("delivery:")
    lesson_ts = lesson.response["ts"]

    # Replies: counted once each (the same message delivered twice counts once); bots, top-level
    # messages and other threads are not counted.
    thread_reply(app, user="U1", ts="1799168500.000100", thread_ts=lesson_ts)
    thread_reply(app, user="U1", ts="1799168500.000100", thread_ts=lesson_ts)  # seen again, another event id
    thread_reply(app, user="U2", ts="1799168600.000100", thread_ts=lesson_ts, subtype="thread_broadcast")
    thread_reply(app, user="U1", ts="1799168700.000100", thread_ts=lesson_ts)
    thread_reply(app, user="UBOT", ts="1799168800.000100", thread_ts=lesson_ts, bot_id="BOTHER")
    thread_reply(app, user="U2", ts="1799168900.000100", thread_ts="1799160000.000001")  # not a lesson post
    thread_reply(app, user="U2", ts="1799169000.000100", thread_ts=lesson_ts, channel="CPUBLIC")  # other channel
    top = {"type": "message", "channel": "CSTUDY", "channel_type": "channel", "user": "U2", "text": "hi",
           "ts": "1799169100.000100"}
    assert slack.event(app.url, SIGNING_SECRET, top).status_code == 200
    cohort_id = services.cohorts.view("UADMIN", "fastai").id
    eventually(lambda: services.lesson_threads.counts(cohort_id).get("1") is not None
               and services.lesson_threads.counts(cohort_id)["1"].replies == 3)
    study(app, "help", user="U1", name="after")  # requests after the events, handled in order of arrival
    counts = services.lesson_threads.counts(cohort_id)["1"]
    assert (counts.replies, counts.participants) == (3, {"U1", "U2"})
    assert not [c for c in fake.calls_to("chat.postMessage") if c.args.get("channel") == "CPUBLIC"]  # no answers

    graded(services.db, "U1", "pets", "passed", LESSON_1 + timedelta(hours=20))
    graded(services.db, "U2", "pets", "crashed", LESSON_1 + timedelta(hours=21))

    # The slot: the digest is posted to the private channel once, its picture uploaded there after it.
    app.clock.set(DIGEST_SLOT)
    assert services.digests.tick() == ["fastai:2027-W02"]
    assert services.digests.tick() == []
    [digest] = [c for c in fake.calls_to("chat.postMessage") if c.args["channel"] == "GORG"]
    text = digest.args["text"]
    assert "Lesson 1 (pets): 2 of 2 submitted, 1 passed · thread: 3 replies from 2 people; passed: ada" in text
    assert "Active (2): ada, bob" in text and "Joined (2): ada, bob" in text
    assert "<@U1>" not in json.dumps(digest.args["blocks"])  # names, never mentions
    assert digest.args["metadata"]["event_payload"]["tag"].startswith("delivery:")
    image = check_png(uploaded_png(fake, "GORG"))
    assert pixels_of(image, digest_plot.PASSED) > LEGEND_SWATCH


def test_a_report_on_demand_and_the_status_streak_in_slack(slack_app):
    app, fake, services = slack_app, slack_app.fake, slack_app.services
    study(app, CREATE)
    assert "has no members yet" in study(app, "cohort report fastai", name="empty")["text"]
    study(app, "join fastai", user="U1", name="join")
    app.clock.set(LESSON_1)
    services.deliveries.tick()
    graded(services.db, "U1", "pets", "passed", LESSON_1 + timedelta(minutes=5))
    app.clock.set(LESSON_1 + timedelta(hours=1))
    assert "Only organizers of fastai" in study(app, "cohort report fastai", user="U1", name="learner")["text"]
    report = study(app, "cohort report fastai", name="report")
    assert report["blocks"][0]["text"]["text"] == "Report: fastai"
    assert "Lesson 1* `pets`: 1 of 1 submitted, 1 passed" in json.dumps(report["blocks"])
    dm = next(c.response["channel"]["id"] for c in fake.calls_to("conversations.open") if c.args["users"] == "UADMIN")
    check_png(uploaded_png(fake, dm))

    status = study(app, "status", user="U1", name="status")  # answered inside the ack
    assert "Weekly streak: 1 lesson passed in its week" in status["text"]
    assert "1 of 1 passed pets this week, you among them" in status["text"]
    assert "Best results" not in status["text"]  # no ranking time on this row: no best result to show


def test_a_digest_never_shows_another_workspaces_learners(deployment, clock):  # noqa: F811 - the fixture
    for team, token in ((TEAM_A, TOKEN_A), (TEAM_B, TOKEN_B)):
        deployment.install(team, token)
        deployment.study(team, "cohort create fastai --channel <#{c}|fastai> --start 2027-01-05 --time 18:00 "
                               "--tz Europe/Berlin".format(c=CHANNEL_OF[team]))
    deployment.study(TEAM_A, "join fastai", user="U1")
    deployment.study(TEAM_B, "join fastai", user="U2")
    deployment.study(TEAM_B, "join fastai", user="U1")  # the same user id in both workspaces
    assert "in a DM to each of its organizers" in deployment.study(TEAM_A, "cohort digest fastai --weekday mon")["text"]
    clock.set(LESSON_1)
    assert deployment.services.deliveries.tick().posted == ["fastai:1", "fastai:1"]
    for team, user, status in ((TEAM_A, "U1", "passed"), (TEAM_B, "U2", "passed"), (TEAM_B, "U1", "crashed")):
        with acting_for(Team(team)):
            graded(deployment.services.db, user, "pets", status, LESSON_1 + timedelta(hours=2))
    deployment.fake.reset()
    clock.set(DIGEST_SLOT + timedelta(hours=9))  # team A's slot (18:00, the cohort's post time, by default)
    assert deployment.services.digests.tick() == ["fastai:2027-W02@1"]
    [digest] = [c for c in deployment.fake.calls_to("chat.postMessage") if "Weekly digest" in c.args["text"]]
    assert digest.token == TOKEN_A
    assert "1 member." in digest.args["text"] and "bob" not in digest.args["text"]
    assert "Lesson 1 (pets): 1 of 1 submitted, 1 passed" in digest.args["text"]  # team B's U1 crash is not here
    assert {c.token for c in deployment.fake.calls_to("files.completeUploadExternal")} == {TOKEN_A}
    with acting_for(Team(TEAM_B)), deployment.services.db.session() as s:
        assert s.scalar(select(Submission.status).where(Submission.user_id == "U1")) == "crashed"
