"""Exports: an organizer's CSV of every submission to one exercise in a cohort, uploaded to their DM.

Everything is in it, failed and disqualified submissions too (moderation needs the evidence), with the
learner's user id whatever their leaderboard mode: exports go to organizers only. CSV_COLUMNS names
and explains each column (`/study export` shows them). Cells a spreadsheet would run as formulas are
quoted (``_cell``).
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from studybot.db.engine import Database
from studybot.db.models import Cohort, Submission
from studybot.errors import FieldError
from studybot.ports import Chat
from studybot.services.cohorts import Cohorts
from studybot.services.leaderboards import Leaderboards
from studybot.time_source import Clock

CSV_COLUMNS = (
    ("submission_id", "the submission's id (what /study disqualify and /study regrade take)"),
    ("cohort", "the cohort's name"),
    ("exercise", "the exercise id"),
    ("user_id", "the learner's Slack user id (also for anonymous and hidden learners: organizers only)"),
    ("leaderboard_mode", "named, anonymous or hidden; empty if the learner is no longer a member"),
    ("created_at", "when it was submitted, ISO 8601 UTC"),
    ("finished_at", "when grading finished, ISO 8601 UTC; empty while queued or running"),
    ("source", "slack, shell or regrade"),
    ("lane", "ranked or check"),
    ("status", "queued, running, passed, below_target, too_slow, timeout, oom, crashed, ..."),
    ("accuracy", "the grader's accuracy (0-1); empty for exercises not scored by accuracy or error rate"),
    ("metric", "the exercise's metric: accuracy, error_rate, rmse, mae or pearson"),
    ("higher_is_better", "true when a higher score is better (accuracy, pearson), false for error_rate, rmse, mae"),
    ("score", "the mean score over runs in that metric"),
    ("target", "the exercise's target in that metric: at least it when higher is better, at most it otherwise"),
    ("train_seconds", "training time in seconds, as the grader measured it (median over runs)"),
    ("predict_seconds", "prediction time in seconds (median over runs)"),
    ("rank_seconds", "the ranking time: median over runs of train + predict seconds"),
    ("rank_seconds_low", "the low end of the ranking time's interval"),
    ("rank_seconds_high", "the high end of the ranking time's interval"),
    ("speed_ratio", "the reference's ranking time over this one's (x)"),
    ("board_rank", "its rank on the board now, if it is the learner's entry there (=N: tied within noise)"),
    ("review_state", "empty, flagged (held off the board for review) or approved"),
    ("review_note", "why it was held: the grader's flags, or a verification re-run's evidence"),
    ("reviewed_by", "the organizer who approved it"),
    ("verification", "empty, pending, verified or disagreed (a re-run on new seeds)"),
    ("verified_by_submission", "the re-run that verified it"),
    ("flags", "the grader's flag codes, separated by ;"),
    ("load_averages", "the machine's 1-minute load at the start of each run, separated by ;"),
    ("gpu", "GPU name, SM clock (MHz) and temperature (°C) per run, separated by ;"),
    ("disqualified_at", "ISO 8601 UTC, empty if not disqualified"),
    ("disqualified_by", "the organizer's user id"),
    ("disqualified_reason", "the reason the organizer gave"),
    ("regrade_of", "the submission this one re-grades"),
    ("notebook_sha256", "the stored notebook's hash"),
    ("filename", "the uploaded file's name"),
)


@dataclass(frozen=True)
class Export:
    filename: str
    content: bytes
    rows: int
    cohort_name: str
    exercise: str
    where: str  # what chat.upload_file answered: a Slack file id, or a path in the shell


class Exports:
    def __init__(self, db: Database, chat: Chat, clock: Clock, cohorts: Cohorts, leaderboards: Leaderboards) -> None:
        self.db, self.chat, self.clock = db, chat, clock
        self.cohorts, self.leaderboards = cohorts, leaderboards

    def export_csv(self, user_id: str, exercise_id: str, cohort_name: str | None = None) -> tuple[str, bytes]:
        """Every submission of the cohort for the exercise, failed and disqualified ones included (CSV_COLUMNS)."""
        export = self._export(user_id, exercise_id, cohort_name)
        return export.filename, export.content

    def send_export(self, user_id: str, exercise_id: str, cohort_name: str | None = None) -> Export:
        """`/study export`: build the CSV and upload it to the organizer's DM (chat.upload_file)."""
        export = self._export(user_id, exercise_id, cohort_name)
        where = self.chat.upload_file(user_id, export.filename, export.content,
                                      f"{export.cohort_name} {export.exercise} submissions")
        return Export(**{**asdict(export), "where": where})

    def _export(self, user_id: str, exercise_id: str, cohort_name: str | None) -> Export:
        with self.db.session() as s:
            cohort = self._cohort(s, user_id, cohort_name)
            self.cohorts.require_organizer(user_id, cohort, "export a leaderboard")
            exercise, _ = self.leaderboards.exercise(cohort, exercise_id)
            filename, content, rows = self._csv(s, cohort, exercise)
            return Export(filename=filename, content=content, rows=rows, cohort_name=cohort.name, exercise=exercise,
                          where="")

    # ---- internals ---------------------------------------------------------------------------

    def _cohort(self, s: Session, user_id: str, name: str | None) -> Cohort:
        """The named cohort; else the caller's only cohort; an organizer in none: the one they organize."""
        if name:
            return self.cohorts.get(s, name)
        if not self.cohorts.member_cohorts(s, user_id):
            organized = self.cohorts.named_organizer_of(s, user_id)
            if len(organized) == 1:
                return organized[0]
            if organized:
                raise FieldError("name", "You organize several cohorts: name one, e.g. "
                                 f"`{organized[0].name}`. Yours: {', '.join(c.name for c in organized)}.")
            raise FieldError("name", "Name the cohort: `/study export EXERCISE COHORT`.")
        return self.cohorts.only_cohort_of(s, user_id)

    def _csv(self, s: Session, cohort: Cohort, exercise: str) -> tuple[str, bytes, int]:
        modes = self.leaderboards.modes(s, cohort)
        ranks = {e.submission_id: f"={e.rank}" if e.tied else e.rank
                 for e in self.leaderboards.ranked(s, cohort, exercise)}
        submissions = s.scalars(select(Submission).where(
            Submission.cohort_id == cohort.id, Submission.exercise_id == exercise,
            Submission.lane != "verify").order_by(Submission.created_at, Submission.id))
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\r\n")
        writer.writerow([name for name, _ in CSV_COLUMNS])
        rows = 0
        for sub in submissions:
            rows += 1
            result = _result(sub)
            runs = [r for r in result.get("runs") or [] if isinstance(r, dict)]
            writer.writerow([_cell(v) for v in (
                sub.id, cohort.name, sub.exercise_id, sub.user_id, modes.get(sub.user_id, ""), _iso(sub.created_at),
                _iso(sub.finished_at), sub.source, sub.lane, sub.status, sub.accuracy,
                sub.metric, "true" if sub.higher_is_better is not False else "false",
                sub.score if sub.score is not None else sub.accuracy, sub.target, sub.train_seconds,
                sub.predict_seconds, sub.rank_seconds, sub.rank_seconds_low, sub.rank_seconds_high,
                sub.speed_ratio, ranks.get(sub.id, ""), sub.review_state, sub.review_note, sub.reviewed_by,
                sub.verification, sub.verified_by_submission,
                ";".join(str(f.get("code", "")) for f in result.get("flags") or [] if isinstance(f, dict)),
                ";".join("" if r.get("load_average") is None else str(r["load_average"]) for r in runs),
                ";".join(_gpu(r.get("gpu")) for r in runs),
                _iso(sub.disqualified_at), sub.disqualified_by,
                sub.disqualified_reason, sub.regrade_of, sub.notebook_sha256, sub.filename)])
        stamp = self.clock.now().strftime("%Y%m%d-%H%M")
        return f"{cohort.name}-{exercise}-submissions-{stamp}.csv", buffer.getvalue().encode("utf-8"), rows


def _result(submission: Submission) -> dict:
    try:
        result = json.loads(submission.result_json) if submission.result_json else {}
    except ValueError:
        return {}
    return result if isinstance(result, dict) else {}


def _gpu(gpu: Any) -> str:
    if not isinstance(gpu, dict):
        return ""
    return " ".join(str(part) for part in (gpu.get("name"), f"{gpu['sm_clock_mhz']}MHz" if gpu.get("sm_clock_mhz")
                                           is not None else None, f"{gpu['temperature_c']}C" if gpu.get(
                                               "temperature_c") is not None else None) if part)


def _iso(value: datetime | None) -> str:
    return value.isoformat().replace("+00:00", "Z") if value else ""


def _cell(value: Any) -> Any:
    """Spreadsheets run cells that start with = + - @ as formulas: quote user-typed text that does."""
    if value is None:
        return ""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value
