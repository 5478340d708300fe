"""Review: results that look implausible are held off the boards until an organizer decides.

A passing result with any of the grader's ``flags`` (train_near_zero, too_good_too_fast, far_too_good, predict_heavy,
warmup_heavy, ...) is stored with review_state 'flagged' (studybot/queue.py), and so is an entry whose
verification re-run disagreed (services/verification.py). A flagged entry is on no board and never a
record. Organizers of the submission's cohort:

- ``flagged``: `/study review [EXERCISE] [COHORT]`, the entries waiting;
- ``evidence``: `/study review SUBMISSION_ID`, per-run times, accuracy and machine load, the code hash, the
  hardware, the flags' messages, with the notebook uploaded to the organizer's DM;
- ``approve``: `/study approve SUBMISSION_ID` puts it on the board (and a record check runs: a record
  still needs its verification re-run). Rejecting is `/study disqualify` (services/moderation.py).
Permissions as for disqualify: learners learn nothing about which ids exist.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from studybot.db.engine import Database
from studybot.db.models import Cohort, Notebook, Submission
from studybot.errors import ChatError, Conflict, FieldError, PermissionDenied
from studybot.messages import render
from studybot.ports import Chat
from studybot.services.cohorts import Cohorts
from studybot.services.feedback import Feedback
from studybot.services.leaderboards import Leaderboards
from studybot.services.moderation import Moderation, parse_submission_id
from studybot.services.verification import flags_of
from studybot.time_source import Clock

log = logging.getLogger(__name__)

MAX_LISTED = 50  # flagged entries one `/study review` lists (newest first)


@dataclass(frozen=True)
class Flagged:
    id: int
    user_id: str
    exercise: str
    cohort_name: str | None
    rank_seconds: float | None
    note: str | None


@dataclass(frozen=True)
class Run:
    seed: Any
    accuracy: float | None
    train_seconds: float | None
    predict_seconds: float | None
    rank_seconds: float | None
    warmup_seconds: float | None
    load_average: float | None
    gpu: dict | None
    score: float | None = None  # in the exercise's metric (Evidence.metric); accuracy for older results


@dataclass(frozen=True)
class Evidence:
    id: int
    user_id: str
    exercise: str
    cohort_name: str | None
    status: str
    review_state: str | None
    review_note: str | None
    verification: str | None
    accuracy: float | None
    train_seconds: float | None
    predict_seconds: float | None
    rank_seconds: float | None
    rank_seconds_low: float | None
    rank_seconds_high: float | None
    code_sha256: str | None
    notebook_sha256: str | None
    hardware: dict
    flags: list[dict] = field(default_factory=list)
    runs: list[Run] = field(default_factory=list)
    notebook_where: str | None = None  # where the notebook was uploaded (a Slack file id, a shell path)
    metric: str = "accuracy"
    score: float | None = None


def runs_of(result: dict) -> list[Run]:
    """The per-run evidence of a result; fields a result does not have are None."""
    runs = []
    for run in result.get("runs") or []:
        if isinstance(run, dict):
            runs.append(Run(seed=run.get("seed"), accuracy=run.get("accuracy"),
                            train_seconds=run.get("train_seconds"), predict_seconds=run.get("predict_seconds"),
                            rank_seconds=run.get("rank_seconds"), warmup_seconds=run.get("warmup_seconds"),
                            load_average=run.get("load_average"), gpu=run.get("gpu") or None,
                            score=run.get("score", run.get("accuracy"))))
    return runs


class Review:
    def __init__(self, db: Database, chat: Chat, clock: Clock, cohorts: Cohorts, leaderboards: Leaderboards,
                 moderation: Moderation, feedback: Feedback) -> None:
        self.db, self.chat, self.clock = db, chat, clock
        self.cohorts, self.leaderboards, self.moderation, self.feedback = cohorts, leaderboards, moderation, feedback

    def flagged(self, user_id: str, exercise: str | None = None, cohort_name: str | None = None) -> dict[str, Any]:
        """`/study review [EXERCISE] [COHORT]`: the flagged entries of the cohorts the caller organizes."""
        if not self.cohorts.is_any_organizer(user_id):
            raise PermissionDenied("Only organizers can review flagged results.", action="review")
        with self.db.session() as s:
            if cohort_name:
                cohorts = [self.cohorts.get(s, cohort_name)]
                self.cohorts.require_organizer(user_id, cohorts[0], "review flagged results")
            else:
                cohorts = [c for c in s.scalars(select(Cohort).order_by(Cohort.id))
                           if self.cohorts.is_organizer(user_id, c)]
            wanted = None
            if exercise:
                if len(cohorts) != 1:
                    wanted = exercise.strip().lower()
                else:
                    wanted, _ = self.leaderboards.exercise(cohorts[0], exercise)
            names = {c.id: c.name for c in cohorts}
            query = select(Submission).where(Submission.review_state == "flagged",
                                             Submission.cohort_id.in_(list(names)),
                                             Submission.disqualified_at.is_(None))
            if wanted:
                query = query.where(Submission.exercise_id == wanted)
            rows = s.scalars(query.order_by(Submission.id.desc()).limit(MAX_LISTED)).all()
            entries = [Flagged(r.id, r.user_id, r.exercise_id, names.get(r.cohort_id), r.rank_seconds, r.review_note)
                       for r in rows]
        return {"entries": entries, "exercise": wanted, "cohort_name": cohort_name}

    def evidence(self, user_id: str, submission_id: Any) -> Evidence:
        """`/study review SUBMISSION_ID`: what an organizer needs to decide, and the notebook in their DM."""
        number = parse_submission_id(submission_id)
        with self.db.session() as s:
            submission, cohort = self.moderation.organizer_submission(s, user_id, number, "review submissions")
            result = json.loads(submission.result_json) if submission.result_json else {}
            content = s.scalar(select(Notebook.content).where(Notebook.sha256 == submission.notebook_sha256)) \
                if submission.notebook_sha256 else None
            found = Evidence(
                id=submission.id, user_id=submission.user_id, exercise=submission.exercise_id,
                cohort_name=cohort.name if cohort else None, status=submission.status,
                review_state=submission.review_state, review_note=submission.review_note,
                verification=submission.verification, accuracy=submission.accuracy,
                metric=submission.metric or "accuracy",
                score=submission.score if submission.score is not None else submission.accuracy,
                train_seconds=submission.train_seconds, predict_seconds=submission.predict_seconds,
                rank_seconds=submission.rank_seconds, rank_seconds_low=submission.rank_seconds_low,
                rank_seconds_high=submission.rank_seconds_high, code_sha256=result.get("code_sha256"),
                notebook_sha256=submission.notebook_sha256,
                hardware=result.get("hardware") if isinstance(result.get("hardware"), dict) else {},
                flags=flags_of(submission), runs=runs_of(result))
            filename = f"submission-{submission.id}-{submission.filename or 'notebook.ipynb'}"
        where = None
        if content is not None:
            where = self.chat.upload_file(user_id, filename, content, f"Submission {number}'s notebook, for review")
        return Evidence(**{**found.__dict__, "notebook_where": where})

    def approve(self, user_id: str, submission_id: Any) -> dict[str, Any]:
        """`/study approve SUBMISSION_ID`: a flagged entry joins the board; a record check runs then."""
        number = parse_submission_id(submission_id)
        with self.db.session() as s:
            submission, cohort = self.moderation.organizer_submission(s, user_id, number, "approve submissions")
            if submission.review_state != "flagged":
                raise Conflict(f"Submission {number} is not waiting for review"
                               f"{' (already approved)' if submission.review_state == 'approved' else ''}.")
            if submission.lane != "ranked" or submission.status != "passed":
                raise FieldError("submission", f"Submission {number} is not a passing ranked entry "
                                 f"({submission.status}, lane {submission.lane}); only those can be approved.")
            submission.review_state, submission.reviewed_by, submission.reviewed_at = "approved", user_id, \
                self.clock.now()
            s.flush()
            on_board = cohort is not None and any(
                e.submission_id == number for e in self.leaderboards.ranked(s, cohort, submission.exercise_id))
            info = {"id": number, "user_id": submission.user_id, "exercise": submission.exercise_id,
                    "cohort_name": cohort.name if cohort else None, "on_board": on_board}
        info["record"] = self.feedback.consider_record(number)  # 'posted', 'verifying' or None
        try:
            self.chat.dm(info["user_id"], render("approved", **info, to_learner=True))
        except ChatError:
            log.warning("could not tell %s that submission %s was approved", info["user_id"], number)
        return {**info, "to_learner": False}
