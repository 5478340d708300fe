"""The queued message's "about N min" (services/eta.py): from the finished grades' durations per
exercise, the jobs ahead, what is left of the running ones and the workers seen; and what the
learner's DM says as the job moves, runs long, and finishes."""

from __future__ import annotations

from datetime import timedelta

import pytest

from studybot.services import eta
from tests.conftest import T0

def notebook(tag: str) -> bytes:
    return (b'{"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [{"cell_type": "code", "id": "a1", '
            b'"metadata": {}, "execution_count": null, "outputs": [], "source": "#| export\\nx = \'' + tag.encode()
            + b'\'"}]}')


def queue_one(bot, user: str, exercise: str = "digits") -> int:
    taken = bot.services.intake.accept(user, notebook(f"{user}-{exercise}"), filename=f"{user}.ipynb",
                                       exercise=exercise, source="shell", upload_id=f"F-{user}-{exercise}")
    assert taken.submission_id, taken
    return taken.submission_id


def grade(bot, worker: str, seconds: float) -> None:
    """One job graded by `worker` in `seconds` of (frozen) clock time, as a worker would."""
    queue = bot.services.queue
    claim = queue.claim(worker)
    bot.clock.advance(timedelta(seconds=seconds))
    assert queue.finish(claim.job_id, claim.token, {"status": "below_target", "accuracy": 0.5, "target": 0.97,
                                                    "train_seconds": 1.0, "message": "", "runs": []})


@pytest.fixture
def history(bot):
    """Three digits grades of 60 s each, by worker A: the median is 60 s, one worker is alive."""
    bot.clock.set(T0)
    for name in ("h1", "h2", "h3"):
        queue_one(bot, name)
        grade(bot, "worker-a", 60)
    return bot


def test_an_exercise_never_graded_counts_its_first_grade(bot):
    bot.clock.set(T0)
    estimate = bot.services.feedback.estimates.estimate(queue_one(bot, "ada"))
    assert (estimate.position, estimate.seconds, estimate.workers) == (1, eta.FIRST_GRADE_SECONDS, 0)


def test_the_estimate_adds_the_jobs_ahead_and_divides_by_the_workers(history):
    bot = history
    ids = [queue_one(bot, name) for name in ("ada", "bob", "cy", "dee")]
    estimates = bot.services.feedback.estimates
    assert [estimates.estimate(i).seconds for i in ids] == [60.0, 120.0, 180.0, 240.0]
    assert estimates.estimate(ids[3]).minutes == 4
    # A second worker is seen (it holds a lease now): dee has 2 jobs ahead once ada is running,
    # ada's left-over plus bob and cy, shared by two workers.
    claim = bot.services.queue.claim("worker-b")
    bot.clock.advance(timedelta(seconds=20))
    dee = estimates.estimate(ids[3])
    assert (dee.position, dee.workers) == (3, 2)
    assert dee.seconds == pytest.approx((40 + 60 + 60) / 2 + 60)
    running = estimates.estimate(ids[0])
    assert (running.position, running.seconds, running.elapsed_seconds) == (None, 40.0, 20.0)
    assert bot.services.queue.finish(claim.job_id, claim.token, {"status": "crashed", "message": "", "runs": []})


def test_other_exercises_ahead_count_at_their_own_median(history):
    bot = history
    queue_one(bot, "ada", exercise="mnist1d")  # never graded: FIRST_GRADE_SECONDS
    bob = queue_one(bot, "bob")
    assert bot.services.feedback.estimates.estimate(bob).seconds == eta.FIRST_GRADE_SECONDS + 60.0


def test_the_dm_shows_the_estimate_updates_it_and_says_how_long_it_took(history):
    bot = history
    ids = [queue_one(bot, name) for name in ("ada", "bob", "cy")]
    assert "Queued, position 3, result in about 3 min." in latest(bot, ids[2])
    feedback = bot.services.feedback
    grade(bot, "worker-a", 60)                  # ada's job done: cy is now 2nd, about 2 min
    bot.clock.advance(timedelta(seconds=feedback_refresh()))
    feedback.tick()
    assert "Queued, position 2, result in about 2 min." in latest(bot, ids[2])
    grade(bot, "worker-a", 90)                  # bob's, in 90 s
    grade(bot, "worker-a", 45)                  # cy's
    feedback.tick()
    # since it was sent: 60 s (ada) + the refresh wait + 90 s (bob) + 45 s (cy)
    took = 60 + feedback_refresh() + 90 + 45
    assert "below target" in latest(bot, ids[2])
    assert f"Graded {int(took // 60)} min {int(took % 60)} s after you sent it." in latest(bot, ids[2])


def test_a_grade_running_past_twice_its_usual_time_says_it_is_still_working(history):
    bot = history
    ada = queue_one(bot, "ada")
    claim = bot.services.queue.claim("worker-a")
    assert bot.services.queue.report_progress(claim.job_id, claim.token, {"run": 1, "runs": 5})
    bot.services.feedback.tick()
    assert "Still working" not in latest(bot, ada)
    for _ in range(3):  # a live worker: it keeps heartbeating, so its lease never runs out
        bot.clock.advance(timedelta(seconds=41))
        assert bot.services.queue.heartbeat(claim.job_id, claim.token)
    bot.services.feedback.tick()
    assert "run 1 of 5" in latest(bot, ada) and "Still working" in latest(bot, ada)
    assert "stopped answering" not in latest(bot, ada)


def latest(bot, submission_id: int) -> str:
    """The last version of a submission's DM the shell printed (posted or updated)."""
    shown = [chunk for chunk in bot.out.getvalue().split("\n── ") if f"(submission #{submission_id})" in chunk]
    assert shown, f"no message about submission {submission_id}"
    return shown[-1]


def feedback_refresh() -> float:
    from studybot.services.feedback import QUEUED_REFRESH_SECONDS
    return QUEUED_REFRESH_SECONDS + 1


def test_a_lost_worker_tells_the_learner_and_the_organizers_once(bot):
    from tests.support.boards import start

    bot.clock.set(T0)
    start(bot)  # cohort fastai, organizer carol, learners ada, bob, cy, dee
    ada = queue_one(bot, "ada")
    queue = bot.services.queue
    claim = queue.claim("gpu-box-3")
    bot.services.feedback.tick()
    before = bot.out.tell()
    bot.clock.advance(queue.lease + timedelta(seconds=5))  # no heartbeat: the lease runs out
    bot.services.feedback.tick()
    bot.services.feedback.tick()
    said = bot.out.getvalue()[before:]
    assert "stopped answering; another one will take it over" in latest(bot, ada)
    assert said.count("── DM to @carol") == 1
    assert "`gpu-box-3` last renewed its lease" in said or "gpu-box-3 last renewed its lease" in said
    assert "Another worker will retry it (attempt 2 of 3)" in said
    # Taken over: the DM moves on, and a second loss is told again, as attempt 2.
    second = queue.claim("gpu-box-4")
    assert second.attempt == 2 and claim.job_id == second.job_id
    bot.services.feedback.tick()
    assert "stopped answering" not in latest(bot, ada)


def test_the_lost_worker_message_stays_within_slacks_limits_at_size():
    from types import SimpleNamespace

    from studybot.messages import render
    from tests.test_message_limits import check_message

    huge = SimpleNamespace(id=10**9, exercise_id="x" * 200, user_id="U" + "9" * 30)
    check_message(render("worker_lost", submission=huge, cohort_name="<!channel> " * 500, worker="w&<>" * 800,
                         attempts=3, max_attempts=3, since="59 min 59 s"), "worker_lost")
