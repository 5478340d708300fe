"""Slack as it really answers (issue 10): partial file objects, error codes, channels the bot is not
in or that are archived, bots talking to bots, escaped text. Every case replays a shape from
tests/support/slack_shapes.py through the real bolt app over HTTP, against the fake Slack Web API."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy import func, select

from studybot.db.models import Submission
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
