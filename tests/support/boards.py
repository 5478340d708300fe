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


def submit(db, user, seconds, *, status="passed", minutes=0, exercise="digits", cohort="fastai", lane="ranked",
           notebook: bytes | None = None, disqualified=False) -> int:
    """A graded submission, as the grader leaves it."""
    with db.session() as s:
        sha = None
        if notebook is not None:
            sha = hashlib.sha256(notebook).hexdigest()
            if s.get(Notebook, sha) is None:
                s.add(Notebook(sha256=sha, content=notebook, size=len(notebook), created_at=T0))
        row = Submission(
            user_id=user, exercise_id=exercise, status=status, created_at=T0 + timedelta(minutes=minutes),
            cohort_id=s.scalar(select(Cohort.id).where(Cohort.name == cohort)), lane=lane, source="shell",
            train_seconds=seconds, accuracy=0.975, speed_ratio=seconds / 40 if seconds else None,
            result_json=json.dumps({"status": status, "train_seconds": seconds}), notebook_sha256=sha,
            filename="digits.ipynb", finished_at=T0 + timedelta(minutes=minutes, seconds=90))
        if disqualified:
            row.disqualified_at, row.disqualified_by, row.disqualified_reason = T0, "admin", "earlier"
        s.add(row)
        s.flush()
        return row.id


def board_lines(said: str) -> list[str]:
    return [line for line in said.splitlines() if line[:1].isdigit() and ". " in line]


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
