"""Leaderboards as people use them: through the shell transport on SQLite and PostgreSQL, plus one
Slack HTTP test of the CSV export. Submissions are inserted directly with their results: grading is
tested elsewhere; here only what the leaderboard makes of them matters."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import threading
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select

from studybot.db.engine import Database
from studybot.db.models import Cohort, Delivery, GradingJob, Notebook, Submission
from studybot.errors import ChatError
from studybot.messages import render
from studybot.services.exports import CSV_COLUMNS
from studybot.services.posting import ExactlyOncePoster
from studybot.services.weekly_boards import WeeklyBoards
from studybot.shell.chat import ShellChat
from tests.conftest import SIGNING_SECRET, T0
from tests.support import signed_requests as slack

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


# ---- ranking ----------------------------------------------------------------------------------


def test_best_passing_entry_per_learner_fastest_first_ties_to_the_earlier(bot):
    start(bot)
    db = bot.services.db
    submit(db, "ada", 50.0, minutes=1)
    submit(db, "ada", 40.0, minutes=2)  # ada's best
    submit(db, "bob", 40.0, minutes=3)  # same time, submitted later: after ada
    submit(db, "cy", 30.0, status="too_slow", minutes=4)  # failing: never on the board
    submit(db, "cy", 61.5, minutes=5)
    submit(db, "dee", 20.0, minutes=6, disqualified=True)  # disqualified: off the board
    submit(db, "dee", 55.0, minutes=7)
    submit(db, "dee", 10.0, minutes=8, lane="check")  # the quick check lane is not ranked
    submit(db, "ada", 5.0, minutes=9, exercise="mnist1d")  # another exercise, another board
    said = bot.say("/study leaderboard digits", as_user="bob")
    assert "Leaderboard for `digits` in fastai (lesson 3: Neural net foundations)" in said
    assert board_lines(said) == [
        "1. @ada · 40.0 s · 97.5% · 1.00× ref",
        "2. @bob · 40.0 s · 97.5% · 1.00× ref ← you",
        "3. @dee · 55.0 s · 97.5% · 1.38× ref",
        "4. @cy · 1 min 01.5 s · 97.5% · 1.54× ref",
    ]


def test_a_tie_at_the_same_instant_goes_to_the_lower_id(bot):
    start(bot)
    first = submit(bot.services.db, "cy", 42.0, minutes=1)
    submit(bot.services.db, "ada", 42.0, minutes=1)
    board = bot.services.leaderboards.board("ada", "digits")
    assert [(e.rank, e.label, e.submission_id) for e in board.entries][0] == (1, "cy", first)


def test_an_empty_board_invites_the_first_submission(bot):
    start(bot)
    said = bot.say("/study leaderboard digits", as_user="ada")
    assert "No passing submissions yet" in said
    assert "You are not on this board yet" in said


def test_leavers_and_other_cohorts_are_not_on_the_board(bot):
    start(bot)
    bot.say(CREATE.replace("create fastai", "create other").replace("#fastai", "#other"), as_user="admin")
    bot.say("/study join other", as_user="eve")
    submit(bot.services.db, "eve", 12.0, cohort="other")
    submit(bot.services.db, "ada", 44.0)
    submit(bot.services.db, "bob", 33.0)
    bot.say("/study leave fastai", as_user="bob")
    said = bot.say("/study leaderboard digits fastai", as_user="ada")
    assert board_lines(said) == ["1. @ada · 44.0 s · 97.5% · 1.10× ref ← you"]
    assert "eve" in board_lines(bot.say("/study leaderboard digits other", as_user="eve"))[0]


# ---- privacy ----------------------------------------------------------------------------------


def test_hidden_learners_are_left_out_and_anonymous_ones_get_a_stable_pseudonym(bot):
    start(bot)
    db = bot.services.db
    answer = bot.say("/study leaderboard anonymous", as_user="bob")
    pseudonym = answer.split("anonymously, as ")[1].split(".")[0]
    assert pseudonym.startswith("anonymous ") and "bob" not in pseudonym
    assert "left off fastai's leaderboards" in bot.say("/study leaderboard optout fastai", as_user="cy")
    submit(db, "ada", 50.0, minutes=1)
    bob_id = submit(db, "bob", 45.0, minutes=2)
    submit(db, "cy", 30.0, minutes=3)  # fastest, but hidden
    submit(db, "bob", 7.0, minutes=4, exercise="mnist1d")
    said = bot.say("/study leaderboard digits", as_user="ada")
    assert board_lines(said) == [f"1. {pseudonym} · 45.0 s · 97.5% · 1.12× ref", "2. @ada · 50.0 s · 97.5% · 1.25× ref ← you"]
    # Nothing that names bob anywhere in what Slack would get, and the same name on every board.
    board = bot.services.leaderboards.board("ada", "digits")
    slack_json = json.dumps(render("leaderboard", board=board).blocks)
    assert "bob" not in slack_json and pseudonym in slack_json
    assert board.entries[0].user_id is None and board.entries[0].submission_id == bob_id
    assert pseudonym in bot.say("/study leaderboard mnist1d", as_user="ada")
    # The hidden learner still sees their own best, and how to come back.
    mine = bot.say("/study leaderboard digits", as_user="cy")
    assert "You are hidden from leaderboards (your best: 30.0 s)" in mine and "@cy" not in mine
    # Bob sees himself marked, under the pseudonym.
    assert f"1. {pseudonym} · 45.0 s · 97.5% · 1.12× ref ← you" in bot.say("/study leaderboard digits", as_user="bob")
    assert "shown by name" in bot.say("/study leaderboard named", as_user="cy")
    assert "@cy" in board_lines(bot.say("/study leaderboard digits", as_user="ada"))[0]


def test_public_boards_show_no_ids_and_organizers_see_submission_ids(bot):
    start(bot)
    ada = submit(bot.services.db, "ada", 50.0)
    assert f"`#{ada}`" in bot.say("/study leaderboard digits fastai", as_user="carol")
    public = bot.services.commands.handle("leaderboard digits fastai --public", "carol")
    assert public.public and "#" not in json.dumps(render(public.template, **public.context).blocks).replace("#fastai", "")
    assert f"#{ada}" not in bot.say("/study leaderboard digits", as_user="bob")


def test_bad_input_names_the_field(bot):
    start(bot)
    bot.say(CREATE.replace("create fastai", "create other").replace("#fastai", "#other"), as_user="admin")
    bot.say("/study join other", as_user="ada")
    said = bot.say("/study leaderboard nosuch fastai", as_user="ada")
    assert "fastai has no exercise 'nosuch'. Its exercises: digits, mnist1d." in said
    assert "You are in several cohorts" in bot.say("/study leaderboard digits", as_user="ada")
    assert "Name the exercise" in bot.say("/study leaderboard", as_user="ada")
    assert "You are not in fastai" in bot.say("/study leaderboard anonymous fastai", as_user="zed")
    reply = bot.services.commands.handle("leaderboard nosuch fastai", "ada")
    assert reply.template == "error" and reply.context["field"] == "exercise"
    reply = bot.services.commands.handle("leaderboard digits", "ada")
    assert reply.context["field"] == "name"


# ---- organizers: export, disqualify, re-grade ---------------------------------------------------


def test_export_is_a_csv_of_every_submission_for_organizers_only(bot, tmp_path):
    start(bot)
    bot.chat.files_dir = tmp_path / "files"
    db = bot.services.db
    passed = submit(db, "ada", 40.0, minutes=1)
    failed = submit(db, "bob", None, status="crashed", minutes=2)
    dq = submit(db, "cy", 20.0, minutes=3, disqualified=True)
    submit(db, "dee", 5.0, minutes=4, exercise="mnist1d")  # another exercise: not in this export
    with db.session() as s:
        s.get(Submission, dq).disqualified_reason = "=HYPERLINK(\"http://x\")"  # a spreadsheet formula stays text
    refused = bot.say("/study export digits fastai", as_user="ada")
    assert "Only organizers of fastai" in refused
    assert not (tmp_path / "files").exists()
    said = bot.say("/study export digits fastai", as_user="carol")
    assert "Sent fastai-digits-submissions-20270104-1200.csv to you in a direct message: 3 submissions" in said
    [path] = list((tmp_path / "files" / "carol").iterdir())
    rows = list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))))
    assert list(rows[0]) == [name for name, _ in CSV_COLUMNS]
    assert [(int(r["submission_id"]), r["status"], r["board_rank"]) for r in rows] == [
        (passed, "passed", "1"), (failed, "crashed", ""), (dq, "passed", "")]
    assert rows[2]["disqualified_by"] == "admin" and rows[2]["disqualified_reason"] == "'=HYPERLINK(\"http://x\")"
    assert rows[0]["user_id"] == "ada" and rows[0]["created_at"] == "2027-01-04T12:01:00Z"
    assert rows[0]["train_seconds"] == "40.0" and rows[1]["train_seconds"] == ""
    filename, content = bot.services.exports.export_csv("carol", "digits", "fastai")
    assert content == path.read_bytes() and filename == path.name


def test_disqualify_keeps_the_evidence_and_takes_the_entry_off_the_board(bot):
    start(bot)
    db = bot.services.db
    fast = submit(db, "ada", 20.0, minutes=1)
    submit(db, "bob", 30.0, minutes=2)
    for line, words in [(f"/study disqualify {fast} --reason 'x'", "Only organizers"),
                        (f"/study disqualify {fast}", "Give a reason"),
                        ("/study disqualify abc --reason 'copied'", "is not a submission id"),
                        ("/study disqualify 9999 --reason 'copied'", "There is no submission 9999")]:
        said = bot.say(line, as_user="ada" if "'x'" in line else "carol")
        assert words in said, line
    with db.session() as s:
        assert s.get(Submission, fast).disqualified_at is None
    said = bot.say(f"/study disqualify {fast} --reason 'trained on the <!channel> test set'", as_user="carol")
    assert f"Disqualified submission {fast} (@ada, `digits`, 20.0 s, fastai)" in said
    assert "It is off the board now" in said
    with db.session() as s:
        row = s.get(Submission, fast)
        assert row.status == "passed" and row.train_seconds == 20.0 and row.accuracy == 0.975
        assert json.loads(row.result_json)["train_seconds"] == 20.0
        assert (row.disqualified_by, row.disqualified_reason) == ("carol", "trained on the <!channel> test set")
        assert row.disqualified_at == bot.clock.now()
    [dm] = [p for p in bot.chat.posted if p.channel_id == "@ada"]
    assert "was disqualified by an organizer" in dm.message.text
    assert "<!channel>" not in json.dumps(dm.message.blocks)  # user-typed text stays inert
    assert board_lines(bot.say("/study leaderboard digits", as_user="ada"))[0].startswith("1. @bob")
    assert "already disqualified" in bot.say(f"/study disqualify {fast} --reason again", as_user="carol")
    assert "back on the board" in bot.say(f"/study requalify {fast}", as_user="carol")
    assert board_lines(bot.say("/study leaderboard digits", as_user="ada"))[0].startswith("1. @ada")


def test_regrade_queues_a_new_submission_of_the_same_notebook(bot):
    pytest.importorskip("studybot.queue")
    start(bot)
    db = bot.services.db
    original = submit(db, "ada", 20.0, notebook=b'{"cells": [], "nbformat": 4}')
    assert "Only organizers" in bot.say(f"/study regrade {original}", as_user="ada")
    assert count(db, GradingJob) == 0
    said = bot.say(f"/study regrade {original}", as_user="carol")
    assert f"Re-grading submission {original} (@ada, `digits`, 20.0 s, fastai)" in said
    with db.session() as s:
        new = s.scalar(select(Submission).where(Submission.regrade_of == original))
        old = s.get(Submission, original)
        assert (new.source, new.status, new.user_id, new.exercise_id, new.cohort_id, new.notebook_sha256) == (
            "regrade", "queued", "ada", "digits", old.cohort_id, old.notebook_sha256)
        job = s.scalar(select(GradingJob).where(GradingJob.submission_id == new.id))
        assert job is not None and job.status == "queued"
    assert f"queued as submission {new.id}, number 1 in the queue" in said
    assert "already being re-graded" in bot.say(f"/study regrade {original}", as_user="carol")
    assert count(db, GradingJob) == 1
    # A worker grades it: the re-grade competes as a new entry, and confirming one's own record is not news.
    from studybot.queue import JobQueue

    queue = JobQueue(db, bot.clock)
    claim = queue.claim("worker-1")
    assert claim.submission_id == new.id and claim.notebook == b'{"cells": [], "nbformat": 4}'
    assert queue.finish(claim.job_id, claim.token, {"status": "passed", "accuracy": 0.98, "train_seconds": 18.0,
                                                    "speed_ratio": 0.45})
    assert bot.services.leaderboards.record_broken(new.id) is None
    assert board_lines(bot.say("/study leaderboard digits", as_user="ada")) == [
        "1. @ada · 18.0 s · 98.0% · 0.45× ref ← you"]


# ---- records ----------------------------------------------------------------------------------


def test_record_broken_only_for_a_new_strictly_faster_number_one(bot):
    start(bot)
    bot.say("/study leaderboard anonymous", as_user="bob")
    bot.say("/study leaderboard optout", as_user="dee")
    db, boards = bot.services.db, bot.services.leaderboards
    first = submit(db, "ada", 50.0, minutes=1)
    record = boards.record_broken(first)
    assert record["previous"] is None and record["channel_id"] == "fastai" and record["holder"]["user_id"] == "ada"
    assert render("leaderboard_record", **record).text == \
        "First on the digits board in fastai: <@ada> trained in 50.0 s to 97.5%."
    assert boards.record_broken(submit(db, "cy", 60.0, minutes=2)) is None  # slower
    assert boards.record_broken(submit(db, "cy", 50.0, minutes=3)) is None  # a tie is not a record
    assert boards.record_broken(submit(db, "cy", 10.0, status="below_target", minutes=4)) is None  # failing
    assert boards.record_broken(submit(db, "cy", 10.0, minutes=5, disqualified=True)) is None
    assert boards.record_broken(submit(db, "dee", 10.0, minutes=6)) is None  # hidden: never on a board
    bob = submit(db, "bob", 40.0, minutes=7)
    record = boards.record_broken(bob)
    assert record["holder"]["user_id"] is None and record["holder"]["label"].startswith("anonymous ")
    assert record["previous"]["user_id"] == "ada" and record["speedup"] == pytest.approx(1.25)
    message = render("leaderboard_record", **record)
    assert "bob" not in message.text + json.dumps(message.blocks)
    assert "1.25× faster than <@ada>'s 50.0 s" in message.text
    faster = submit(db, "bob", 32.0, minutes=8)
    assert boards.record_broken(faster)["same_holder"] is True
    assert "their own 40.0 s" in render("leaderboard_record", **boards.record_broken(faster)).text
    assert boards.record_broken(bob) is None  # no longer #1
    assert boards.record_broken(999) is None


def test_rank_of_tells_the_result_dm_where_the_learner_stands(bot):
    start(bot)
    bot.say("/study leaderboard optout", as_user="dee")
    db, boards = bot.services.db, bot.services.leaderboards
    ada = submit(db, "ada", 50.0, minutes=1)
    assert boards.rank_of(ada) == {"rank": 1, "of": 1, "previous": None}
    bob = submit(db, "bob", 40.0, minutes=2)
    assert boards.rank_of(bob) == {"rank": 1, "of": 2, "previous": None}
    ada_faster = submit(db, "ada", 30.0, minutes=3)
    assert boards.rank_of(ada_faster) == {"rank": 1, "of": 2, "previous": 2}
    assert boards.rank_of(submit(db, "ada", 60.0, minutes=4)) == {"rank": 1, "of": 2, "previous": 1}  # not her best
    assert boards.rank_of(submit(db, "dee", 10.0, minutes=5)) is None  # hidden
    assert boards.rank_of(submit(db, "cy", 10.0, status="timeout", minutes=6)) is None


def test_a_late_graded_tie_that_wins_on_submission_time_is_not_a_record(bot):
    start(bot)
    db, boards = bot.services.db, bot.services.leaderboards
    submit(db, "bob", 40.0, minutes=5)
    early = submit(db, "ada", 40.0, minutes=1)  # submitted first, graded last
    assert boards.board("ada", "digits").entries[0].submission_id == early
    assert boards.record_broken(early) is None


# ---- the weekly post --------------------------------------------------------------------------

FRIDAY_1700_BERLIN = datetime(2027, 1, 22, 16, 0, tzinfo=timezone.utc)  # ISO week 2027-W03


def weekly_posts(chat) -> list[str]:
    return [p.message.text for p in chat.posted if p.channel_id == "fastai" and p.message.text.startswith("Weekly")]


def weekly(bot, db=None, chat=None, worker_id=None) -> WeeklyBoards:
    """Another weekly ticker on the same database: its own pool (``db``), chat and poster, as another process."""
    db, chat = db or bot.services.db, chat or bot.chat
    return WeeklyBoards(db, bot.clock, bot.services.cohorts, bot.services.leaderboards,
                        ExactlyOncePoster(db, chat, bot.clock, worker_id=worker_id))


def to_lesson_three(bot) -> None:
    """Lessons 1-3 posted (lesson 3 has the digits exercise), without the shell ticking past Friday."""
    bot.clock.set(datetime(2027, 1, 19, 17, 1, tzinfo=timezone.utc))
    bot.services.deliveries.tick()


def test_weekly_schedule_is_for_organizers_and_validated(bot):
    start(bot)
    assert "Only organizers of fastai" in bot.say("/study cohort leaderboard fastai --weekday fri", as_user="ada")
    assert "is not one of" in bot.say("/study cohort leaderboard fastai --weekday someday", as_user="carol")
    assert "is not a time of day" in bot.say("/study cohort leaderboard fastai --weekday fri --time 25:00",
                                             as_user="carol")
    assert "--weekday is missing" in bot.say("/study cohort leaderboard fastai", as_user="carol")
    assert "either --off" in bot.say("/study cohort leaderboard fastai --off --weekday fri", as_user="carol")
    with bot.services.db.session() as s:
        assert s.scalar(select(Cohort.leaderboard_weekday)) is None
    said = bot.say("/study cohort leaderboard fastai --weekday fri --time 17:00", as_user="carol")
    assert "Weekly leaderboard of fastai: Fridays at 17:00 Europe/Berlin in #fastai" in said
    with bot.services.db.session() as s:
        assert s.execute(select(Cohort.leaderboard_weekday, Cohort.leaderboard_time)).one() == (4, "17:00")
    assert "No more weekly leaderboard posts" in bot.say("/study cohort leaderboard fastai --off", as_user="carol")
    with bot.services.db.session() as s:
        assert s.execute(select(Cohort.leaderboard_weekday, Cohort.leaderboard_time)).one() == (None, None)


def test_weekly_board_posts_once_per_iso_week_whoever_ticks(bot):
    start(bot)
    bot.say("/study leaderboard anonymous", as_user="bob")
    to_lesson_three(bot)
    bot.say("/study cohort leaderboard fastai --weekday fri --time 17:00", as_user="carol")
    submit(bot.services.db, "ada", 50.0)
    submit(bot.services.db, "bob", 45.0)
    boards = bot.services.weekly_boards
    other = weekly(bot, Database(bot.services.db.url), worker_id="other")
    bot.clock.set(FRIDAY_1700_BERLIN - timedelta(seconds=1))
    assert boards.tick() == [] and other.tick() == []
    bot.clock.set(FRIDAY_1700_BERLIN)
    assert boards.tick() == ["fastai:2027-W03"]
    for _ in range(3):
        assert boards.tick() == [] and other.tick() == []
        bot.services.deliveries.tick()  # the lesson scheduler leaves the leaderboard row alone
        bot.clock.advance(timedelta(hours=2))
    [post] = weekly_posts(bot.chat)
    assert post.startswith("Weekly leaderboard of fastai (2027-W03)")
    assert "Leaderboard for `digits` in fastai" in post and "1. anonymous " in post and "2. <@ada> · 50.0 s" in post
    assert "bob" not in post and "← you" not in post and "#" not in post.replace("#fastai", "")
    with bot.services.db.session() as s:
        row = s.scalar(select(Delivery).where(Delivery.kind == "leaderboard"))
        assert (row.lesson_key, row.position, row.status, row.due_at) == ("2027-W03", 0, "sent", FRIDAY_1700_BERLIN)
        assert [p.id for p in bot.chat.posted if p.message.text.startswith("Weekly")] == [row.message_ts]
    # Next Friday: the next week's board, once, from whichever ticker comes first.
    bot.clock.set(FRIDAY_1700_BERLIN + timedelta(days=7, minutes=3))
    assert other.tick() == ["fastai:2027-W04"] and boards.tick() == []
    assert len(weekly_posts(bot.chat)) == 2
    other.db.dispose()


def test_weekly_board_waits_for_an_exercise_and_stops_when_turned_off(bot):
    start(bot)
    bot.say("/study cohort leaderboard fastai --weekday fri --time 17:00", as_user="carol")
    bot.clock.set(datetime(2027, 1, 5, 17, 1, tzinfo=timezone.utc))
    bot.services.deliveries.tick()  # lesson 1 has no exercise
    bot.clock.set(datetime(2027, 1, 8, 16, 0, tzinfo=timezone.utc))
    assert bot.services.weekly_boards.tick() == []
    with bot.services.db.session() as s:
        assert s.execute(select(Delivery.lesson_key, Delivery.status, Delivery.note).where(
            Delivery.kind == "leaderboard")).one() == ("2027-W01", "skipped", "no exercise posted yet")
    to_lesson_three(bot)
    bot.say("/study cohort leaderboard fastai --off", as_user="carol")
    bot.clock.set(FRIDAY_1700_BERLIN)
    assert bot.services.weekly_boards.tick() == []
    assert weekly_posts(bot.chat) == []


def test_a_late_tick_within_the_grace_still_posts_and_past_it_does_not(bot):
    start(bot)
    to_lesson_three(bot)
    bot.say("/study cohort leaderboard fastai --weekday sun --time 23:30", as_user="carol")
    # Sunday 24 Jan 23:30 Berlin is 22:30 UTC; a tick on Monday (a new ISO week) still finds it.
    bot.clock.set(datetime(2027, 1, 25, 2, 0, tzinfo=timezone.utc))
    assert bot.services.weekly_boards.tick() == ["fastai:2027-W03"]
    bot.clock.set(datetime(2027, 2, 1, 12, 0, tzinfo=timezone.utc))  # 13.5 h late: past the 12 h grace
    assert bot.services.weekly_boards.tick() == []
    assert len(weekly_posts(bot.chat)) == 1


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


@pytest.mark.parametrize("mode", ["fail", "die"])
def test_a_failed_or_crashed_weekly_post_is_retried_without_posting_twice(bot, mode):
    start(bot)
    to_lesson_three(bot)
    bot.say("/study cohort leaderboard fastai --weekday fri --time 17:00", as_user="carol")
    chat = FlakyChat(io.StringIO(), bot.clock, lambda user: user == "admin")
    boards = weekly(bot, chat=chat)
    bot.clock.set(FRIDAY_1700_BERLIN)
    chat.mode = mode
    try:
        assert boards.tick() == []
    except SystemExit:
        pass
    status = "pending" if mode == "fail" else "sending"  # failed: waits for a retry; crashed: stuck mid-post
    with bot.services.db.session() as s:
        assert s.scalar(select(Delivery.status).where(Delivery.kind == "leaderboard")) == status
    bot.clock.advance(timedelta(minutes=6))  # a crashed claim is released after 5 minutes
    bot.services.deliveries.tick()
    assert weekly(bot, chat=chat).tick() == ["fastai:2027-W03"]
    assert boards.tick() == []
    assert len(weekly_posts(chat)) == 1
    with bot.services.db.session() as s:
        row = s.scalar(select(Delivery).where(Delivery.kind == "leaderboard"))
        assert row.status == "sent" and row.attempts == 2 and row.message_ts == chat.posted[-1].id


def test_two_tickers_racing_post_the_weekly_board_once(bot):
    start(bot)
    to_lesson_three(bot)
    bot.say("/study cohort leaderboard fastai --weekday fri --time 17:00", as_user="carol")
    bot.clock.set(FRIDAY_1700_BERLIN + timedelta(seconds=5))
    chats, results, barrier = [], [], threading.Barrier(2)

    def ticker(name: str) -> None:
        database = Database(bot.services.db.url)  # its own pool, like another process
        chat = ShellChat(io.StringIO(), bot.clock, lambda user: False)
        chats.append(chat)
        boards = weekly(bot, database, chat, worker_id=name)
        barrier.wait()
        try:
            for _ in range(3):
                results.extend(boards.tick())
        finally:
            database.dispose()

    threads = [threading.Thread(target=ticker, args=(f"clock-{i}",)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == ["fastai:2027-W03"]
    assert sum(len(weekly_posts(chat)) for chat in chats) == 1


# ---- templates --------------------------------------------------------------------------------


def test_every_leaderboard_template_renders_valid_block_kit(bot):
    from tests.test_messages import check_blocks

    start(bot)
    db, boards = bot.services.db, bot.services.leaderboards
    for i in range(60):  # more than fit in one message
        bot.say("/study join fastai", as_user=f"u{i:02d}")
        submit(db, f"u{i:02d}", 30.0 + i, minutes=i)
    bot.say("/study leaderboard anonymous", as_user="u03")
    record = boards.record_broken(submit(db, "ada", 10.0, minutes=99))
    info = bot.services.moderation.disqualify("admin", 1, "<b>copied</b>")
    board = boards.board("u59", "digits", "fastai")
    assert board.you.rank == 60
    cohort = WeeklyBoards.schedule_view
    with db.session() as s:
        schedule = cohort(s.scalar(select(Cohort)))
    from studybot.services.exports import Export
    from studybot.services.moderation import SubmissionInfo
    contexts = {
        "leaderboard": dict(board=board),
        "leaderboard_weekly": dict(cohort=schedule, week="2027-W03", boards=[board, board], top=10),
        "leaderboard_record": record,
        "leaderboard_mode": dict(cohort_name="fastai", mode="anonymous", pseudonym="anonymous otter"),
        "leaderboard_schedule": dict(cohort=schedule),
        "disqualified": dict(info=info, action="disqualified", to_learner=False),
        "regrade_queued": dict(info=SubmissionInfo(id=1, user_id="ada", exercise="digits", cohort_name="fastai",
                                                   status="passed", seconds=12.0, new_id=7, position=2)),
        "export_ready": dict(export=Export("f.csv", b"", 3, "fastai", "digits", "F1"), columns=CSV_COLUMNS),
    }
    for kind, context in contexts.items():
        message = render(kind, **context)
        assert message.text, kind
        check_blocks(message.blocks)
    text = render("leaderboard", board=board).text
    assert "…and 10 more" in text and "60. <@u59> · 1 min 29.0 s" in text
    assert "&lt;b&gt;copied&lt;/b&gt;" in json.dumps(render("disqualified", info=info, action="disqualified",
                                                            to_learner=True).blocks)


def test_help_lists_the_leaderboard_commands(bot):
    assert "/study leaderboard EXERCISE" in bot.say("/study help", as_user="ada")
    organizer = bot.say("/study help", as_user="admin")
    assert "/study export EXERCISE" in organizer and "/study cohort leaderboard NAME" in organizer


# ---- Slack ------------------------------------------------------------------------------------


def test_slack_export_uploads_the_csv_to_the_organizers_dm(slack_app):
    fake = slack_app.fake

    def study(text, user="UADMIN", name="r1"):
        response = slack.slash_command(slack_app.url, SIGNING_SECRET, text=text, user_id=user,
                                       response_url=fake.response_url(name))
        assert response.status_code == 200
        if response.content:
            return response.json()
        [answer] = fake.wait_for("response_url", where=lambda c: c.args["_name"] == name)
        return answer.args

    study("cohort create fastai --channel <#CSTUDY|fastai-study> --start 2027-01-05 --time 18:00 --tz Europe/Berlin",
          name="create")
    study("join fastai", user="U1", name="join")
    submit(slack_app.services.db, "U1", 41.5)
    refused = study("export digits fastai", user="U2", name="refused")
    assert "Only organizers" in refused["text"] and refused["response_type"] == "ephemeral"
    answer = study("export digits fastai", name="export")
    assert answer["response_type"] == "ephemeral" and "Sent fastai-digits-submissions-" in answer["text"]
    [opened] = [c for c in fake.calls_to("conversations.open") if c.args.get("users") == "UADMIN"]
    [url] = fake.wait_for("files.getUploadURLExternal")
    assert url.args["filename"].startswith("fastai-digits-submissions-") and url.args["filename"].endswith(".csv")
    [upload] = fake.wait_for("upload")
    assert upload.args["content"].startswith(b"submission_id,cohort,exercise,user_id,")
    assert b",U1,named," in upload.args["content"]
    [complete] = fake.wait_for("files.completeUploadExternal")
    assert complete.args["channel_id"] == "DUADMIN"  # the DM's D… id, never the U… id
    assert complete.args["files"][0]["id"] == url.response["file_id"]
    assert complete.args["files"][0]["title"] == "fastai digits submissions"
    assert [c.method for c in fake.calls if c.method in ("files.getUploadURLExternal", "upload",
                                                          "files.completeUploadExternal")] == [
        "files.getUploadURLExternal", "upload", "files.completeUploadExternal"]
    assert not fake.calls_to("files.upload")
