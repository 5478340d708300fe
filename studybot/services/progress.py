"""A learner's streak and standing in each cohort, for `/study status` and the App Home.

- A lesson's exercise is *passed in its week* when the learner has a passing submission for it from
  before the lesson's deadline (the next weekly slot, as the lesson post says).
- The *weekly streak* counts consecutive posted lessons with an exercise passed in its week, back from
  the latest. This week's lesson, while its deadline is still ahead, adds to the streak once passed and
  does not break it before then. ``best_streak`` is the longest such run so far.
- The *standing*: of the cohort's current members, how many have passed this week's exercise
  ("3 of 12 passed digits this week"), and whether the learner is one of them.

What counts as passing is ``passing()``: passed, ranked (not a `/study check` run, not a verification
re-run), not disqualified, not held for review. The digest (services/digests.py) counts the same way."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from sqlalchemy import func, select

from studybot.db.engine import Database
from studybot.db.models import Membership, Submission
from studybot.services.cohorts import CohortView, Cohorts
from studybot.time_source import Clock


NEVER = datetime.max.replace(tzinfo=timezone.utc)  # the first pass of an exercise not passed


def passing():
    """The SQL condition of a submission that passed and counts (see the module's docstring)."""
    return (Submission.status == "passed", Submission.lane == "ranked", Submission.disqualified_at.is_(None),
            func.coalesce(Submission.review_state, "") != "flagged")


@dataclass(frozen=True)
class Standing:
    exercise: str
    lesson_key: str
    passed: int  # current members who passed it (before its deadline)
    members: int
    you_passed: bool
    open: bool  # its deadline is still ahead: "this week"


@dataclass(frozen=True)
class CohortProgress:
    cohort_id: int
    streak: int
    best_streak: int
    passed_in_week: int  # lessons whose exercise the learner passed in its week
    exercises_posted: int  # posted lessons with an exercise
    standing: Standing | None


def first_passes(db: Database, user_ids: list[str] | None, exercises: set[str]) -> dict[tuple[str, str], datetime]:
    """(user, exercise) -> the time of the first passing submission, for these users (None: anyone)."""
    if not exercises or user_ids == []:
        return {}
    query = (select(Submission.user_id, Submission.exercise_id, func.min(Submission.created_at))
             .where(*passing(), Submission.exercise_id.in_(sorted(exercises)))
             .group_by(Submission.user_id, Submission.exercise_id))
    if user_ids is not None:
        query = query.where(Submission.user_id.in_(user_ids))
    with db.session() as s:
        return {(user, exercise): at for user, exercise, at in s.execute(query)}


class Progress:
    def __init__(self, db: Database, clock: Clock, cohorts: Cohorts) -> None:
        self.db, self.clock, self.cohorts = db, clock, cohorts

    def of(self, user_id: str) -> dict[int, CohortProgress]:
        """Per cohort id, the learner's progress in each of their cohorts."""
        return {view.id: self.in_cohort(user_id, view) for view in self.cohorts.cohorts_of(user_id)}

    def in_cohort(self, user_id: str, cohort: CohortView) -> CohortProgress:
        now = self.clock.now()
        lessons = [slot for slot in cohort.lessons if slot.status == "sent" and slot.exercise]
        exercises = {slot.exercise for slot in lessons}
        mine = first_passes(self.db, [user_id], exercises)
        in_week = [(mine.get((user_id, slot.exercise)) or NEVER) < slot.deadline_local
                   for slot in lessons]
        open_ = [slot.deadline_local > now for slot in lessons]
        streak = 0
        for passed, still_open in reversed(list(zip(in_week, open_))):
            if passed:
                streak += 1
            elif not still_open:
                break
        best = run = 0
        for passed, still_open in zip(in_week, open_):
            if passed:
                run += 1
                best = max(best, run)
            elif not still_open:
                run = 0
        return CohortProgress(cohort.id, streak, best, sum(in_week), len(lessons), self._standing(user_id, cohort, now))

    def _standing(self, user_id: str, cohort: CohortView, now: datetime) -> Standing | None:
        current = cohort.current
        if current is None or not current.exercise:
            return None
        with self.db.session() as s:
            members = list(s.scalars(select(Membership.user_id).where(
                Membership.cohort_id == cohort.id, Membership.left_at.is_(None))))
        passes = first_passes(self.db, members, {current.exercise})
        passed = {user for (user, _), at in passes.items() if at < current.deadline_local}
        return Standing(current.exercise, current.key, len(passed), len(members), user_id in passed,
                        open=current.deadline_local > now)
