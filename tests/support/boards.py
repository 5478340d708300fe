"""What the leaderboard tests share: a cohort with learners, graded submissions inserted as the grader
leaves them (grading is tested elsewhere; here only what boards make of results matters), a flaky chat."""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta

from sqlalchemy import func, select

from studybot.db.models import Cohort, Notebook, Submission
from studybot.errors import ChatError
from studybot.shell.chat import ShellChat
from tests.conftest import T0

CREATE = "/study cohort create fastai --channel #fastai --start 2027-01-05 --time 18:00 --tz Europe/Berlin"


def start(bot, learners=("ada", "bob", "cy", "dee")) -> None:
    bot.say(CREATE + " --organizer @carol", as_user="admin")
    for learner in learners:
        bot.say("/study join fastai", as_user=learner)


def cohort_id(db, name="fastai") -> int:
    with db.session() as s:
        return s.scalar(select(Cohort.id).where(Cohort.name == name))


def result_of(seconds, *, status="passed", train=None, predict=None, low=None, high=None, flags=None, runs=None,
              **extra) -> dict:
    """The grader's result JSON (the issue-8 contract): ``seconds`` is the ranking time (median train +
    predict); ``train`` defaults to all of it. Without ``low``/``high`` the result has no interval, like an
    old result ([x, x])."""
    result = {"status": status, "accuracy": 0.975, "train_seconds": seconds if train is None else train,
              "speed_ratio": 40 / seconds if seconds else None, "target": 0.97, "message": status, "log_tail": "",
              "hardware": {}, "runs": runs or [], **extra}
    if predict is not None:
        result["predict_seconds"] = predict
    if seconds is not None and (predict is not None or low is not None):
        result["rank_seconds"] = seconds
    if low is not None:
        result["rank_seconds_low"], result["rank_seconds_high"] = low, high
    if flags:
        result["flags"] = [{"code": code, "message": message} for code, message in flags]
    return result


def submit(db, user, seconds, *, status="passed", minutes=0, exercise="digits", cohort="fastai", lane="ranked",
           notebook: bytes | None = None, disqualified=False, **result_fields) -> int:
    """A graded submission, as queue.finish() leaves it for the result ``result_of`` builds."""
    from studybot.queue import _flag_note, rank_times

    result = result_of(seconds, status=status, **result_fields)
    rank, low, high = rank_times(result)
    with db.session() as s:
        sha = None
        if notebook is not None:
            sha = hashlib.sha256(notebook).hexdigest()
            if s.get(Notebook, sha) is None:
                s.add(Notebook(sha256=sha, content=notebook, size=len(notebook), created_at=T0))
        row = Submission(
            user_id=user, exercise_id=exercise, status=status, created_at=T0 + timedelta(minutes=minutes),
            cohort_id=s.scalar(select(Cohort.id).where(Cohort.name == cohort)), lane=lane, source="shell",
            train_seconds=result["train_seconds"], predict_seconds=result.get("predict_seconds"),
            rank_seconds=rank, rank_seconds_low=low, rank_seconds_high=high,
            review_state="flagged" if result.get("flags") and status == "passed" else None,
            review_note=_flag_note(result),
            accuracy=0.975, speed_ratio=seconds / 40 if seconds else None,
            result_json=json.dumps(result), notebook_sha256=sha,
            filename="digits.ipynb", finished_at=T0 + timedelta(minutes=minutes, seconds=90))
        if disqualified:
            row.disqualified_at, row.disqualified_by, row.disqualified_reason = T0, "admin", "earlier"
        s.add(row)
        s.flush()
        return row.id


def board_lines(said: str) -> list[str]:
    return [line for line in said.splitlines() if line.lstrip("=")[:1].isdigit() and ". " in line]


def count(db, model) -> int:
    with db.session() as s:
        return s.scalar(select(func.count()).select_from(model))


class FlakyChat(ShellChat):
    """Posting to the channel fails once, or the process dies right after the post landed."""

    mode = "ok"

    def post(self, channel_id, message, *, tag=None):
        if self.mode == "fail" and channel_id == "fastai":
            self.mode = "ok"
            raise ChatError("Slack could not be reached for chat_postMessage: timeout")
        ts = super().post(channel_id, message, tag=tag)
        if self.mode == "die" and channel_id == "fastai":
            self.mode = "ok"
            raise SystemExit("killed mid-post")
        return ts


def rerun_verifications(db, clock, result_for=None, worker="other-worker") -> list[int]:
    """Act as a second worker on the verify lane: claim each queued re-run and finish it with
    ``result_for(original_submission)`` (default: the original's own result, so it agrees).
    Returns the re-run submission ids."""
    from studybot.queue import JobQueue

    queue, done = JobQueue(db, clock), []
    while (claim := queue.claim(worker, ("verify",))) is not None:
        with db.session() as s:
            rerun = s.get(Submission, claim.submission_id)
            original = s.get(Submission, rerun.verifies)
            result = result_for(original) if result_for else json.loads(original.result_json)
        assert queue.finish(claim.job_id, claim.token, result)
        done.append(claim.submission_id)
    return done
