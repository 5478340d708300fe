"""Leaderboards: one per exercise per cohort, each learner's best passing submission ranked by training time.

Transport-neutral (no Slack here). This module ranks; the other jobs around boards live beside it:
moderation (services/moderation.py), CSV exports (services/exports.py) and the weekly channel post
(services/weekly_boards.py). What it answers:
- ``board``: the ranking a learner asks for with `/study leaderboard EXERCISE`;
- ``set_mode``: a learner is named, anonymous (a stable pseudonym) or hidden (left out);
- ``record_broken``: after a submission passes, what the "new record" channel post needs, if it is one;
- ``rank_of``: where a result puts the learner, for the result DM;
- ``ranked``, ``public_board``, ``exercise``: the same ranking for the services beside it.

Ranking (README, "How boards are ranked"): only submissions with status 'passed', lane 'ranked', not
disqualified, not held for review (review_state 'flagged'), made for that cohort (Submission.cohort_id) by a
current member; fastest ``rank_seconds`` (median train + predict) first; an equal median goes to the earlier
submission (created_at, then id). One entry per learner: their best. Entries whose intervals overlap share a
rank ("=2"; services/ranking_statistics.py), and a record must be faster beyond noise.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from studybot.curricula import Curriculum, Lesson, get_curriculum
from studybot.db.engine import Database
from studybot.db.models import Cohort, Membership, Submission
from studybot.errors import FieldError, NotFound
from studybot.services.cohorts import Cohorts
from studybot.services.ranking_statistics import Interval, faster_beyond_noise, tie_groups

MODES = {"named": "named", "anonymous": "anonymous", "anon": "anonymous", "optout": "hidden", "hidden": "hidden",
         "optin": "named"}
# Anonymous learners' pseudonyms ("anonymous otter"): drawn from a hash, so stable and free of user ids.
ANIMALS = ("otter", "heron", "lynx", "marten", "puffin", "ibex", "gecko", "quokka", "walrus", "okapi", "tapir",
           "badger", "falcon", "narwhal", "axolotl", "pangolin", "lemur", "bison", "condor", "dingo", "egret",
           "ferret", "gannet", "hare", "jackal", "kestrel", "llama", "magpie", "newt", "ocelot", "panda", "quail",
           "raven", "seal", "toucan", "urchin", "vole", "wombat", "yak", "zebra", "beaver", "crane", "dolphin",
           "eland", "fox", "gibbon", "hedgehog", "impala", "jay", "koala", "loris", "moose", "nightjar", "orca",
           "plover", "robin", "stoat", "tern", "viper", "wren", "alpaca", "caracal", "dormouse", "mole")


@dataclass(frozen=True)
class Entry:
    """One learner's place on a board. ``user_id`` is None unless the learner is shown by name."""

    rank: int  # shared by entries whose intervals overlap (``tied``)
    submission_id: int
    label: str  # "anonymous otter" for anonymous learners; the user id otherwise (templates mention it)
    user_id: str | None
    seconds: float  # the ranking time: rank_seconds
    accuracy: float | None
    speed_ratio: float | None
    created_at: datetime
    is_you: bool = False
    low: float | None = None  # the interval of the ranking time
    high: float | None = None
    tied: bool = False
    verified: bool = False  # a re-run on new seeds agreed (services/verification.py)
    # The exercise's metric and the entry's score in it ("rmse", 0.912); the board still ranks by time.
    metric: str = "accuracy"
    score: float | None = None
    higher_is_better: bool = True

    @property
    def interval(self) -> Interval:
        return Interval.of(self.seconds, self.low, self.high)


@dataclass(frozen=True)
class Board:
    cohort_name: str
    channel_id: str
    channel_name: str
    exercise: str
    lesson_key: str
    lesson_title: str
    entries: tuple[Entry, ...]
    show_ids: bool = False  # organizers see submission ids (to disqualify or re-grade)
    public: bool = False  # shown in the channel: no "(you)", no ids
    your_mode: str | None = None  # the viewer's leaderboard_mode in this cohort, when a member
    your_best: float | None = None  # the viewer's best passing time, also when hidden
    mark_unverified: bool = False  # the weekly post marks its top entries that no re-run has verified

    @property
    def you(self) -> Entry | None:
        return next((e for e in self.entries if e.is_you), None)


class Leaderboards:
    def __init__(self, db: Database, cohorts: Cohorts, curricula_dir: Path | None = None) -> None:
        self.db, self.cohorts = db, cohorts
        self.curricula_dir = curricula_dir if curricula_dir is not None else cohorts.curricula_dir

    # ---- learners ----------------------------------------------------------------------------

    def board(self, user_id: str, exercise_id: str, cohort_name: str | None = None, *, public: bool = False) -> Board:
        """The board of one exercise in the named cohort, or in the caller's only cohort."""
        with self.db.session() as s:
            cohort = self._cohort(s, user_id, cohort_name)
            exercise, lesson = self.exercise(cohort, exercise_id)
            show_ids = not public and self.cohorts.is_organizer(user_id, cohort)
            return self._board(s, cohort, exercise, lesson.key, lesson.title, viewer=user_id, show_ids=show_ids,
                               public=public)

    def set_mode(self, user_id: str, mode: str, cohort_name: str | None = None) -> dict[str, Any]:
        """`/study leaderboard optout|anonymous|named [COHORT]`: how the caller appears on the cohort's boards."""
        stored = MODES.get((mode or "").strip().lower())
        if stored is None:
            raise FieldError("mode", f"Leaderboard mode {mode!r} is not one of named, anonymous, optout.", value=mode)
        with self.db.session() as s:
            cohort = self._cohort(s, user_id, cohort_name)
            membership = self._membership(s, cohort, user_id)
            if membership is None:
                raise NotFound(f"You are not in {cohort.name}. `/study join {cohort.name}` joins it.")
            membership.leaderboard_mode = stored
            s.flush()
            pseudonym = self._pseudonyms(s, cohort).get(membership.id) if stored == "anonymous" else None
            return {"cohort_name": cohort.name, "mode": stored, "pseudonym": pseudonym}

    # ---- records -----------------------------------------------------------------------------

    def record_broken(self, submission_id: int) -> dict[str, Any] | None:
        """After a submission passed: the facts for the channel post if it is the new #1 of its cohort's
        board for its exercise and faster beyond noise than the previous #1 (its rank_seconds_high below
        the previous holder's rank_seconds_low), or the first passing entry; else None.
        Whether it has been verified is the caller's question (services/feedback.py waits for it).

        services/feedback.py posts it, once, with ``render("leaderboard_record", **record)``.
        Pure: calling it twice answers the same.
        Hidden learners are never on a board, so never in a record; anonymous ones appear by pseudonym."""
        with self.db.session() as s:
            submission = s.get(Submission, submission_id)
            if (submission is None or submission.status != "passed" or submission.disqualified_at is not None
                    or submission.lane != "ranked" or submission.cohort_id is None or submission.rank_seconds is None
                    or submission.review_state == "flagged"):
                return None
            cohort = s.get(Cohort, submission.cohort_id)
            now_board = self.ranked(s, cohort, submission.exercise_id)
            if not now_board or now_board[0].submission_id != submission.id:
                return None
            before = self.ranked(s, cohort, submission.exercise_id, exclude=submission.id)
            previous = before[0] if before else None
            if previous is not None and not faster_beyond_noise(now_board[0].interval, previous.interval):
                return None  # within noise of the old record (or a tie won on submission time): not news
            if previous is not None and submission.regrade_of == previous.submission_id:
                return None  # a re-grade confirming its own record is not news
            lesson = self.lesson_of(cohort, submission.exercise_id)
            holder = now_board[0]
            return {
                "cohort_name": cohort.name, "channel_id": cohort.channel_id, "channel_name": cohort.channel_name,
                "exercise": submission.exercise_id, "lesson_key": lesson.key if lesson else None,
                "lesson_title": lesson.title if lesson else None, "submission_id": submission.id,
                "holder": _public_entry(holder), "previous": _public_entry(previous) if previous else None,
                "seconds": holder.seconds, "low": holder.low, "high": holder.high, "accuracy": holder.accuracy,
                "metric": holder.metric, "score": holder.score,
                "speed_ratio": holder.speed_ratio, "previous_seconds": previous.seconds if previous else None,
                "previous_low": previous.low if previous else None,
                "speedup": previous.seconds / holder.seconds if previous and holder.seconds > 0 else None,
                "same_holder": previous is not None and previous.label == holder.label,
                "entries": len(now_board),
            }

    def rank_of(self, submission_id: int) -> dict[str, Any] | None:
        """The learner's place on the board once this submission counts: {"rank", "of", "previous"}
        (previous: their rank without it, None if it made them a new entry). None when the submission
        does not count or the learner is hidden. For the result DM (services/feedback.py)."""
        with self.db.session() as s:
            submission = s.get(Submission, submission_id)
            if (submission is None or submission.status != "passed" or submission.disqualified_at is not None
                    or submission.lane != "ranked" or submission.cohort_id is None or submission.rank_seconds is None
                    or submission.review_state == "flagged"):
                return None
            cohort = s.get(Cohort, submission.cohort_id)
            now = [sub.user_id for sub, _ in self._best(s, cohort, submission.exercise_id)]
            if submission.user_id not in now:
                return None
            before = [sub.user_id for sub, _ in self._best(s, cohort, submission.exercise_id, exclude=submission.id)]
            previous = before.index(submission.user_id) + 1 if submission.user_id in before else None
            return {"rank": now.index(submission.user_id) + 1, "of": len(now), "previous": previous}

    # ---- for moderation, exports and the weekly post ------------------------------------------

    def ranked(self, s: Session, cohort: Cohort, exercise: str, *, viewer: str | None = None,
               exclude: int | None = None) -> list[Entry]:
        """Each current, non-hidden member's best counting submission; fastest median first, an equal median to
        the earlier; entries whose intervals overlap share a rank."""
        best = self._best(s, cohort, exercise, exclude=exclude)
        labels = self._pseudonyms(s, cohort) if any(m.leaderboard_mode == "anonymous" for _, m in best) else {}
        places = tie_groups([interval_of(submission) for submission, _ in best])
        entries = []
        for place, (submission, membership) in zip(places, best):
            named = membership.leaderboard_mode == "named"
            interval = interval_of(submission)
            entries.append(Entry(
                rank=place.rank, tied=place.tied, submission_id=submission.id,
                label=submission.user_id if named else labels[membership.id], user_id=submission.user_id if named else None,
                seconds=interval.median, low=interval.low, high=interval.high, accuracy=submission.accuracy,
                speed_ratio=submission.speed_ratio, created_at=submission.created_at,
                is_you=viewer is not None and submission.user_id == viewer,
                verified=submission.verification == "verified", metric=submission.metric or "accuracy",
                score=submission.score if submission.score is not None else submission.accuracy,
                higher_is_better=submission.higher_is_better is not False))
        return entries

    def public_board(self, s: Session, cohort: Cohort, exercise: str, lesson_key: str, lesson_title: str) -> Board:
        """The board as the channel sees it: no "(you)", no submission ids."""
        return self._board(s, cohort, exercise, lesson_key, lesson_title, public=True)

    def modes(self, s: Session, cohort: Cohort) -> dict[str, str]:
        """user id -> leaderboard mode of the cohort's current members."""
        return {m.user_id: m.leaderboard_mode for m in s.scalars(select(Membership).where(
            Membership.cohort_id == cohort.id, Membership.left_at.is_(None)))}

    def curriculum(self, cohort: Cohort) -> Curriculum:
        return get_curriculum(cohort.curriculum_id, self.curricula_dir)

    def lesson_of(self, cohort: Cohort, exercise: str) -> Lesson | None:
        """The lesson of the cohort's curriculum that sets this exercise."""
        return next((lesson for lesson in self.curriculum(cohort).lessons if lesson.exercise == exercise), None)

    def exercise(self, cohort: Cohort, raw: str) -> tuple[str, Lesson]:
        """What a user typed as an exercise id, checked against the cohort's curriculum: (id, its lesson)."""
        wanted = (raw or "").strip().lower()
        lesson = self.lesson_of(cohort, wanted) if wanted else None
        if lesson is None:
            known = [l.exercise for l in self.curriculum(cohort).lessons if l.exercise]
            raise FieldError("exercise", f"{cohort.name} has no exercise {raw!r}. Its exercises: "
                             f"{', '.join(known) or 'none'}.", value=raw)
        return wanted, lesson

    # ---- internals ---------------------------------------------------------------------------

    def _board(self, s: Session, cohort: Cohort, exercise: str, lesson_key: str, lesson_title: str, *,
               viewer: str | None = None, show_ids: bool = False, public: bool = False) -> Board:
        entries = self.ranked(s, cohort, exercise, viewer=None if public else viewer)
        mine = self._membership(s, cohort, viewer) if viewer else None
        your_best = None
        if viewer:
            your_best = s.scalar(select(Submission.rank_seconds).where(
                *self._counting(cohort, exercise), Submission.user_id == viewer).order_by(
                Submission.rank_seconds, Submission.created_at, Submission.id).limit(1))
        return Board(cohort_name=cohort.name, channel_id=cohort.channel_id, channel_name=cohort.channel_name,
                     exercise=exercise, lesson_key=lesson_key, lesson_title=lesson_title, entries=tuple(entries),
                     show_ids=show_ids and not public, public=public,
                     your_mode=mine.leaderboard_mode if mine is not None and mine.left_at is None else None,
                     your_best=your_best)

    @staticmethod
    def _counting(cohort: Cohort, exercise: str) -> tuple:
        return (Submission.cohort_id == cohort.id, Submission.exercise_id == exercise, Submission.status == "passed",
                Submission.lane == "ranked", Submission.disqualified_at.is_(None),
                Submission.rank_seconds.is_not(None), not_held_for_review())

    def _best(self, s: Session, cohort: Cohort, exercise: str,
              exclude: int | None = None) -> list[tuple[Submission, Membership]]:
        rows = s.execute(select(Submission, Membership).join(Membership, (Membership.cohort_id == Submission.cohort_id)
                                                             & (Membership.user_id == Submission.user_id)).where(
            *self._counting(cohort, exercise), Membership.left_at.is_(None), Membership.leaderboard_mode != "hidden",
        ).order_by(Submission.rank_seconds, Submission.created_at, Submission.id)).all()
        best: dict[str, tuple[Submission, Membership]] = {}
        for submission, membership in rows:  # already in board order: the first per learner is their best
            if submission.id != exclude and submission.user_id not in best:
                best[submission.user_id] = (submission, membership)
        return list(best.values())

    def _cohort(self, s: Session, user_id: str, name: str | None) -> Cohort:
        return self.cohorts.get(s, name) if name else self.cohorts.only_cohort_of(s, user_id)

    @staticmethod
    def _pseudonyms(s: Session, cohort: Cohort) -> dict[int, str]:
        return _pseudonyms(cohort.id, list(s.scalars(select(Membership).where(
            Membership.cohort_id == cohort.id, Membership.leaderboard_mode == "anonymous").order_by(Membership.id))))

    @staticmethod
    def _membership(s: Session, cohort: Cohort, user_id: str) -> Membership | None:
        return s.scalar(select(Membership).where(Membership.cohort_id == cohort.id, Membership.user_id == user_id,
                                                 Membership.left_at.is_(None)))


def _pseudonyms(cohort_id: int, memberships: list[Membership]) -> dict[int, str]:
    """A stable name per anonymous membership (the same on every board of the cohort), no user id in it."""
    names: dict[int, str] = {}
    for membership in memberships:
        digest = hashlib.sha256(f"studybot-anonymous:{cohort_id}:{membership.id}".encode()).hexdigest()
        names[membership.id] = f"anonymous {ANIMALS[int(digest[:8], 16) % len(ANIMALS)]}"
    counts: dict[str, int] = {}
    for name in names.values():
        counts[name] = counts.get(name, 0) + 1
    for membership_id, name in names.items():
        if counts[name] > 1:  # two learners drew the same animal: tell them apart, still stably
            digest = hashlib.sha256(f"studybot-anonymous:{cohort_id}:{membership_id}".encode()).hexdigest()
            names[membership_id] = f"{name} {digest[8:12]}"
    return names


def _public_entry(entry: Entry) -> dict[str, Any]:
    return {"label": entry.label, "user_id": entry.user_id, "seconds": entry.seconds, "low": entry.low,
            "high": entry.high, "accuracy": entry.accuracy, "speed_ratio": entry.speed_ratio,
            "metric": entry.metric, "score": entry.score,
            "submission_id": entry.submission_id}


def interval_of(submission: Submission) -> Interval:
    """A submission's ranking time and interval ([x, x] when the ends are missing)."""
    return Interval.of(submission.rank_seconds, submission.rank_seconds_low, submission.rank_seconds_high)


def not_held_for_review():
    """The SQL condition of a submission that may be on a board: never flagged, or approved since."""
    return or_(Submission.review_state.is_(None), Submission.review_state != "flagged")
