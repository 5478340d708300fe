"""The answer cache of read-only commands: hit while nothing changes, miss after any write."""

from __future__ import annotations

from studybot.db.models import Submission

CREATE = "/study cohort create fastai --channel #fastai --start 2027-01-05 --time 18:00 --tz Europe/Berlin"


def test_cached_answers_follow_every_kind_of_write(bot):
    bot.say(CREATE)
    replies = bot.services.reply_cache
    assert "not in any cohort" in replies.answer("status", "ada").text
    assert "Welcome to fastai" in replies.answer("join fastai", "ada").text  # a write, answered directly
    status = replies.answer("status", "ada")
    assert "fastai: 0/9 lessons posted" in status.text
    assert replies.answer("STATUS ", "ada") is status  # same question, nothing written: the cached object

    bot.say(":advance 16d")  # the scheduler's marks are writes
    status = replies.answer("status", "ada")
    assert "fastai: 3/9 lessons posted" in status.text and "digits not yet submitted" in status.text

    with bot.services.db.session() as s:  # an ORM insert from anywhere invalidates too
        s.add(Submission(user_id="ada", exercise_id="digits", status="queued", created_at=bot.clock.now()))
    assert "digits submitted" in replies.answer("status", "ada").text


def test_a_failed_write_does_not_invalidate(bot):
    bot.say(CREATE)
    version = bot.services.db.state_version()
    bot.say(CREATE)  # duplicate name: refused, nothing written
    bot.say("/study lesson", as_user="nobody")
    assert bot.services.db.state_version() == version


def test_progress_and_dm_states_leave_cached_answers_warm(bot):
    """A busy grader writes progress every run and the feedback loop records each DM state: neither is in
    any cached answer, so neither may empty the cache (it kept /study lesson's p99 at 3x the bare app's)."""
    bot.say(CREATE)
    bot.say("/study join fastai", as_user="ada")
    bot.say("/study check digits", as_user="ada")
    notebook = (b'{"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [{"cell_type": "code", "id": "a", '
                b'"metadata": {}, "execution_count": null, "outputs": [], "source": "#| export\\nx = 1"}]}')
    bot.services.intake.accept("ada", notebook, filename="a.ipynb", exercise="digits", source="shell")
    replies = bot.services.reply_cache
    status = replies.answer("status", "ada")
    version = bot.services.db.state_version()
    claim = bot.services.queue.claim("w1", ("check",))
    assert bot.services.queue.report_progress(claim.job_id, claim.token, {"run": 1, "runs": 1})
    assert bot.services.feedback.tick()  # the DM moves to "running": its state is recorded
    assert bot.services.db.state_version() == version + 1  # only the claim (status: running) was a write
    status = replies.answer("status", "ada")
    assert replies.answer("status", "ada") is status
    assert bot.services.queue.report_progress(claim.job_id, claim.token, {"run": 1, "runs": 1, "runs_done": 1})
    bot.services.feedback.tick()
    assert replies.answer("status", "ada") is status
