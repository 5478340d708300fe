"""Moderation: organizers disqualify and requalify leaderboard entries, and re-grade submissions.

The evidence stays: a disqualified submission keeps its row and the grader's result, and only drops
off the boards (services/leaderboards.py ranks without it); the learner is told by DM. A re-grade is a
new submission of the same stored notebook, queued like any other (``Submissions.regrade``). Who may
act: the organizers of the submission's cohort, or workspace admins for a submission outside any cohort.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy.orm import Session

from studybot.db.engine import Database
from studybot.db.models import Cohort, Submission
from studybot.errors import ChatError, Conflict, FieldError, NotFound, PermissionDenied
from studybot.messages import render
from studybot.ports import Chat
from studybot.services.cohorts import Cohorts
from studybot.services.leaderboards import Leaderboards
from studybot.services.submissions import Submissions
from studybot.time_source import Clock

log = logging.getLogger(__name__)

MAX_REASON = 500  # characters of a disqualification reason (the learner and the export see it)


@dataclass(frozen=True)
class SubmissionInfo:
    """What the organizer replies (disqualify, requalify, regrade) show about a submission."""

    id: int
    user_id: str
    exercise: str
    cohort_name: str | None
    status: str
    seconds: float | None
    reason: str | None = None
    was_on_board: bool = False
    new_id: int | None = None  # regrade: the new submission
    position: int | None = None  # regrade: its place in the queue, when known


class Moderation:
    def __init__(self, db: Database, chat: Chat, clock: Clock, cohorts: Cohorts, leaderboards: Leaderboards,
                 submissions: Submissions) -> None:
        self.db, self.chat, self.clock = db, chat, clock
        self.cohorts, self.leaderboards, self.submissions = cohorts, leaderboards, submissions

    def disqualify(self, user_id: str, submission_id: Any, reason: str) -> SubmissionInfo:
        """Take an entry off the board; the row and the grader's result stay, as evidence."""
        reason = (reason or "").strip()
        if not reason:
            raise FieldError("reason", 'Give a reason: `/study disqualify SUBMISSION_ID --reason "..."`. '
                             "The learner and the export see it.")
        if len(reason) > MAX_REASON:
            raise FieldError("reason", f"The reason is {len(reason)} characters; keep it under {MAX_REASON}.")
        number = parse_submission_id(submission_id)
        with self.db.session() as s:
            submission, cohort = self._organizer_submission(s, user_id, number, "disqualify submissions")
            if submission.disqualified_at is not None:
                raise Conflict(f"Submission {number} is already disqualified "
                               f"(by {submission.disqualified_by}: {submission.disqualified_reason}).")
            was_on_board = cohort is not None and any(
                e.submission_id == number for e in self.leaderboards.ranked(s, cohort, submission.exercise_id))
            submission.disqualified_at = self.clock.now()
            submission.disqualified_by = user_id
            submission.disqualified_reason = reason
            info = self._info(submission, cohort, reason=reason, was_on_board=was_on_board)
        self._tell_learner(info, "disqualified")
        return info

    def requalify(self, user_id: str, submission_id: Any) -> SubmissionInfo:
        """Undo a disqualification: the entry competes again."""
        number = parse_submission_id(submission_id)
        with self.db.session() as s:
            submission, cohort = self._organizer_submission(s, user_id, number, "requalify submissions")
            if submission.disqualified_at is None:
                raise Conflict(f"Submission {number} is not disqualified.")
            reason = submission.disqualified_reason
            submission.disqualified_at = submission.disqualified_by = submission.disqualified_reason = None
            s.flush()
            on_board = cohort is not None and any(
                e.submission_id == number for e in self.leaderboards.ranked(s, cohort, submission.exercise_id))
            info = self._info(submission, cohort, reason=reason, was_on_board=on_board)
        self._tell_learner(info, "requalified")
        return info

    def regrade(self, user_id: str, submission_id: Any) -> SubmissionInfo:
        """A new submission of the same stored notebook (source 'regrade'), queued for grading."""
        number = parse_submission_id(submission_id)
        with self.db.session() as s:  # permission first: learners learn nothing about other submissions
            original, cohort = self._organizer_submission(s, user_id, number, "re-grade submissions")
            info = self._info(original, cohort)
        regraded = self.submissions.regrade(number)
        return SubmissionInfo(**{**asdict(info), "new_id": regraded.submission_id, "position": regraded.position})

    # ---- internals ---------------------------------------------------------------------------

    def _require_organizer(self, user_id: str, cohort: Cohort | None, action: str) -> None:
        if cohort is None:  # a submission made outside any cohort: only workspace admins may touch it
            if not self.chat.is_workspace_admin(user_id):
                raise PermissionDenied(f"Only workspace admins can {action} outside a cohort.", action=action)
            return
        self.cohorts.require_organizer(user_id, cohort, action)

    def organizer_submission(self, s: Session, user_id: str, number: int, action: str):
        """(submission, its cohort) for an organizer of that cohort; PermissionDenied or NotFound otherwise,
        a learner getting PermissionDenied whether or not the id exists."""
        return self._organizer_submission(s, user_id, number, action)

    def _organizer_submission(self, s: Session, user_id: str, number: int, action: str):
        submission = s.get(Submission, number)
        if submission is None:
            if not self.cohorts.is_any_organizer(user_id):  # learners learn nothing about which ids exist
                raise PermissionDenied(f"Only organizers can {action}.", action=action)
            raise NotFound(f"There is no submission {number}.", submission=number)
        cohort = s.get(Cohort, submission.cohort_id) if submission.cohort_id is not None else None
        self._require_organizer(user_id, cohort, action)
        return submission, cohort

    @staticmethod
    def _info(submission: Submission, cohort: Cohort | None, **extra) -> SubmissionInfo:
        return SubmissionInfo(id=submission.id, user_id=submission.user_id, exercise=submission.exercise_id,
                              cohort_name=cohort.name if cohort else None, status=submission.status,
                              seconds=submission.rank_seconds, **extra)

    def _tell_learner(self, info: SubmissionInfo, action: str) -> None:
        try:
            self.chat.dm(info.user_id, render("disqualified", info=info, action=action, to_learner=True))
        except ChatError:
            log.warning("could not tell %s that submission %s was %s", info.user_id, info.id, action)


def parse_submission_id(raw: Any) -> int:
    text = str(raw if raw is not None else "").strip().lstrip("#")
    if not text.isdigit() or not 0 < int(text) < 2**31:
        raise FieldError("submission", f"{raw!r} is not a submission id: give the number, e.g. `42` "
                         "(organizers see ids on `/study leaderboard` and in `/study export`).", value=raw)
    return int(text)
