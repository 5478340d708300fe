"""Submitting from Slack: a DM upload becomes one queued submission, answered at once; results
come back by editing that message, retried through Slack's 429 and 500 answers."""

from __future__ import annotations

import io
import json
import logging
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select, update

from studybot.bootstrap import build_services
from studybot.db.models import GradingJob, Notebook, Submission
from studybot.errors import InputError
from studybot.services.feedback import UPDATE_BACKOFF_SECONDS
from studybot.services.intake import DUPLICATE, REJECTED
from studybot.services.submissions import check_notebook
from studybot.shell.chat import ShellChat
from studybot.slack import events as slack_events
from tests.conftest import SIGNING_SECRET
from tests.support import signed_requests as slack
from tests.support.waiting import eventually

CREATE = "cohort create fastai --channel <#CSTUDY|fastai-study> --start 2027-01-05 --time 18:00 --tz Europe/Berlin"


def notebook(source: str = "def train(x, y, *, seed, device, report=None):\n    return None") -> bytes:
    return json.dumps({"nbformat": 4, "nbformat_minor": 5, "metadata": {},
                       "cells": [{"cell_type": "code", "id": "a1", "metadata": {}, "execution_count": None,
                                  "outputs": [], "source": "#| export\n" + source}]}).encode()


def count(app, model) -> int:
    with app.services.db.session() as s:
        return s.scalar(select(func.count()).select_from(model))


def submission_row(app, **expected):
    with app.services.db.session() as s:
        row = s.scalar(select(Submission).order_by(Submission.id.desc()))
        return row if row is not None and all(getattr(row, k) == v for k, v in expected.items()) else None


def upload(app, content, name="solution.ipynb", text="digits", user="U1", event_id=None):
    info = app.fake.add_file(name, content, user=user)
    event = {"type": "message", "subtype": "file_share", "channel": f"D{user}", "channel_type": "im", "user": user,
             "text": text, "ts": "1.2", "files": [{"id": info["id"], "name": name}]}
    assert slack.event(app.url, SIGNING_SECRET, event, event_id=event_id).status_code == 200
    return info["id"]


@pytest.fixture
def app(slack_app, monkeypatch):
    monkeypatch.setattr(slack_events, "FILE_SHARED_GRACE_SECONDS", 0.2)
    slack.slash_command(slack_app.url, SIGNING_SECRET, text=CREATE, user_id="UADMIN",
                        response_url=slack_app.fake.response_url("create"))
    slack_app.fake.wait_for("response_url")
    slack.slash_command(slack_app.url, SIGNING_SECRET, text="join fastai", user_id="U1")
    slack_app.fake.reset()
    return slack_app


def test_a_dm_upload_is_stored_queued_and_answered_with_its_position(app):
    upload(app, notebook())
    [answer] = app.fake.wait_for("chat.postMessage")
    assert answer.args["channel"] == "DU1"
    assert "Notebook received for digits" in answer.args["text"] and "position 1" in answer.args["text"]
    download = app.fake.calls_to("download")[0]
    assert download.headers.get("Authorization", download.headers.get("authorization")) == "Bearer xoxb-test-token"
    submission = eventually(lambda: submission_row(app, dm_ts=answer.response["ts"]))
    assert (submission.exercise_id, submission.status) == ("digits", "queued")
    with app.services.db.session() as s:
        assert submission.cohort_id is not None and s.scalar(select(GradingJob.status)) == "queued"
        assert s.get(Notebook, submission.notebook_sha256).content == notebook()


def test_duplicate_file_shared_events_make_one_submission(app, caplog):
    caplog.set_level(logging.INFO, logger="studybot")
    file_id = upload(app, notebook())
    app.fake.wait_for("chat.postMessage")
    for event_id in ("EvA", "EvB"):  # Slack's file_shared for the same upload, and a redelivery
        assert slack.event(app.url, SIGNING_SECRET, {"type": "file_shared", "file_id": file_id, "user_id": "U1",
                                                     "channel_id": "DU1", "file": {"id": file_id}},
                           event_id=event_id).status_code == 200
    upload_event = {"type": "message", "subtype": "file_share", "channel": "DU1", "channel_type": "im", "user": "U1",
                    "text": "digits", "ts": "1.2", "files": [{"id": file_id}]}
    slack.event(app.url, SIGNING_SECRET, upload_event, event_id="EvC", retry_num=1, retry_reason="http_timeout")
    # Wait until all three duplicates have been handled (each says so), then count: a slow but broken
    # handler can no longer pass by finishing after the assertion.
    eventually(lambda: sum("already taken" in r.getMessage() for r in caplog.records) == 3, timeout=10)
    assert count(app, Submission) == 1 and count(app, GradingJob) == 1
    assert len(app.fake.calls_to("chat.postMessage")) == 1


@pytest.mark.parametrize("content, name, words", [
    (b"not json at all", "solution.ipynb", "not valid notebook JSON"),
    (b'{"just": "json"}', "solution.ipynb", "not a Jupyter notebook"),
    (notebook(), "solution.py", "is not a notebook"),
])
def test_bad_uploads_are_refused_and_nothing_is_stored(app, content, name, words):
    upload(app, content, name=name)
    [answer] = app.fake.wait_for("chat.postMessage")
    assert words in answer.args["text"] and "Nothing was queued" in answer.args["text"]
    assert count(app, Submission) == 0 and count(app, Notebook) == 0


def test_an_unknown_exercise_is_named(app):
    upload(app, notebook(), text="cifar-1000")
    [answer] = app.fake.wait_for("chat.postMessage")
    assert "There is no exercise 'cifar-1000'" in answer.args["text"] and "digits" in answer.args["text"]


def test_study_submit_then_upload_without_text(app):
    slack.slash_command(app.url, SIGNING_SECRET, text="submit mnist1d", user_id="U1",
                        response_url=app.fake.response_url("submit"))
    assert "Ready for your mnist1d notebook" in app.fake.wait_for("response_url")[0].args["text"]
    upload(app, notebook(), text="")
    app.fake.wait_for("chat.postMessage")
    assert eventually(lambda: submission_row(app, exercise_id="mnist1d"))


def test_the_daily_quota_is_enforced(app):
    app.services.submissions.daily_quota = 2
    for i in range(3):
        upload(app, notebook(f"x = {i}"))
        app.fake.wait_for("chat.postMessage", count=i + 1)
    last = app.fake.calls_to("chat.postMessage")[-1]
    assert "You have used all 2 digits submissions for today" in last.args["text"]
    assert count(app, Submission) == 2


def test_results_edit_the_message_in_place_through_429_and_500(app):
    upload(app, notebook())
    [queued] = app.fake.wait_for("chat.postMessage")
    eventually(lambda: submission_row(app, dm_ts=queued.response["ts"]))
    queue = app.services.queue
    claim = queue.claim("worker-1")
    # The last finished run's score, in the exercise's own metric (the worker's Progress writes it).
    assert queue.report_progress(claim.job_id, claim.token, {"run": 2, "runs": 5, "runs_done": 1,
                                                             "last_score": 0.93125, "last_metric": "rmse"})
    app.fake.fail_next("chat.update", status=429, retry_after=1)
    app.services.feedback.tick()
    updates = [c for c in app.fake.calls_to("chat.update") if c.ok]
    assert updates[-1].args["ts"] == queued.response["ts"] and "run 2 of 5" in updates[-1].args["text"]
    assert "(run 1: RMSE 0.931" in updates[-1].args["text"], updates[-1].args["text"]

    result = {"status": "below_target", "message": "mean accuracy 90.00% is below the target 97.00%",
              "accuracy": 0.9, "accuracy_std": 0.01, "train_seconds": 1.5, "speed_ratio": 0.5, "target": 0.97,
              "reference": {"accuracy": 0.985, "train_seconds": 0.75}, "log_tail": "epoch 3 loss 0.4",
              "hardware": {"device_name": "cpu"}, "runs": []}
    assert queue.finish(claim.job_id, claim.token, result)
    app.fake.fail_next("chat.update", status=500, times=4)  # more than the client's own retries
    assert app.services.feedback.tick() == []  # not lost: not marked either
    assert app.services.feedback.tick() == []  # and not hammered: it waits out its backoff
    app.clock.advance(timedelta(seconds=UPDATE_BACKOFF_SECONDS))
    assert app.services.feedback.tick() == [(1, "done:below_target")]
    final = [c for c in app.fake.calls_to("chat.update") if c.ok][-1]
    assert "below target" in final.args["text"] and "90.00% is below the target" in str(final.args["blocks"])
    assert "epoch 3 loss 0.4" in str(final.args["blocks"])
    assert app.services.feedback.tick() == []  # nothing left to say


def test_check_notebook_refuses_a_login_page_and_oversize():
    with pytest.raises(InputError, match="web page instead"):
        check_notebook(b"<!DOCTYPE html><html>Sign in</html>", "a.ipynb", "text/html")
    with pytest.raises(InputError, match="the limit is 1.0 MB"):
        check_notebook(b"{" + b" " * (2 * 1024 * 1024) + b"}", "a.ipynb", max_bytes=1024 * 1024)
    with pytest.raises(InputError, match="format 3"):
        check_notebook(json.dumps({"nbformat": 3, "cells": []}).encode(), "a.ipynb")


def test_app_home_lists_submissions_and_best_results(app):
    upload(app, notebook())
    [queued] = app.fake.wait_for("chat.postMessage")
    eventually(lambda: submission_row(app, dm_ts=queued.response["ts"]))
    queue = app.services.queue
    claim = queue.claim("worker-1")
    queue.finish(claim.job_id, claim.token, {"status": "passed", "accuracy": 0.99, "train_seconds": 2.5,
                                             "speed_ratio": 1.2, "target": 0.97, "message": "passed", "runs": []})
    slack.event(app.url, SIGNING_SECRET, {"type": "app_home_opened", "user": "U1", "tab": "home"})
    [home] = app.fake.wait_for("views.publish")
    text = json.dumps(home.args["view"], ensure_ascii=False)
    assert "Your submissions" in text and "99.00% in 2.50 s" in text and "#1 `digits` \u00b7 passed" in text


def test_a_dead_job_tells_the_learner_and_the_organizers_once(app):
    upload(app, notebook())
    [queued] = app.fake.wait_for("chat.postMessage")
    eventually(lambda: submission_row(app, dm_ts=queued.response["ts"]))
    queue = app.services.queue
    for attempt in range(3):  # infrastructure fails every time (no GPU, driver gone…)
        with app.services.db.session() as s:  # skip the backoff wait
            s.execute(update(GradingJob).values(run_after=app.clock.now()))
        claim = queue.claim("worker-1")
        assert claim is not None and claim.attempt == attempt + 1
        queue.fail(claim.job_id, claim.token, "CUDA driver not found")
    assert app.services.feedback.tick() == [(1, "done:dead")]
    assert "failed on our side" in app.fake.calls_to("chat.update")[-1].args["text"]
    [alert] = [c for c in app.fake.calls_to("chat.postMessage") if c.args["channel"] == "DUADMIN"]
    assert "after 3 attempts" in alert.args["text"] and "CUDA driver not found" in alert.args["text"]
    assert app.services.feedback.tick() == []


def test_an_oversized_upload_is_refused_before_it_is_downloaded(app):
    app.services.submissions.max_bytes = 1024
    upload(app, notebook("x = 1\n" * 400))
    [answer] = app.fake.wait_for("chat.postMessage")
    assert "the limit is 1 KB" in answer.args["text"] and "Clear the outputs" in answer.args["text"]
    assert not app.fake.calls_to("download") and count(app, Submission) == 0


def test_slack_and_the_shell_refuse_a_notebook_with_the_same_message(app, settings, db, clock):
    upload(app, notebook(), text="cifar-1000")
    [slack_answer] = app.fake.wait_for("chat.postMessage")
    shell_chat = ShellChat(io.StringIO(), clock, lambda user_id: False)
    shell = build_services(settings, db, shell_chat, clock)
    refused = shell.intake.accept("U1", notebook(), filename="solution.ipynb", exercise="cifar-1000", source="shell")
    assert refused.status == REJECTED and refused.error.field == "exercise"
    [shell_answer] = shell_chat.posted
    assert shell_answer.channel_id == "@U1"
    assert (shell_answer.message.text, shell_answer.message.blocks) == (slack_answer.args["text"],
                                                                        slack_answer.args["blocks"])


def test_a_slack_upload_is_acknowledged_with_the_intakes_outcome(app):
    file_id = upload(app, notebook())
    [answer] = app.fake.wait_for("chat.postMessage")
    submission = eventually(lambda: submission_row(app, dm_ts=answer.response["ts"]))
    assert (submission.slack_file_id, submission.source, submission.dm_channel) == (file_id, "slack", "DU1")
    again = app.services.intake.accept("U1", notebook(), filename="solution.ipynb", exercise="digits",
                                       upload_id=file_id)
    assert (again.status, again.submission_id) == (DUPLICATE, submission.id)
    assert len(app.fake.calls_to("chat.postMessage")) == 1
