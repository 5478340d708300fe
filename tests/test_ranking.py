"""Leaderboards as learners see them, through the shell transport on SQLite and PostgreSQL: the
ranking, privacy modes, records and the result DM's rank (services/leaderboards.py), the record post
going out exactly once (services/feedback.py), and every leaderboard template."""

from __future__ import annotations

import io
import json
from datetime import timedelta

import pytest
from sqlalchemy import select

from studybot.db.models import Cohort, Delivery, Submission
from studybot.messages import render
from studybot.services.exports import CSV_COLUMNS
from studybot.services.feedback import Feedback
from studybot.services.posting import ExactlyOncePoster
from studybot.services.weekly_boards import WeeklyBoards
from tests.support.boards import CREATE, FlakyChat, board_lines, rerun_verifications, start, submit


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
        "=1. @ada · 40.0 s · 97.5% · 1.00× ref",  # equal times are within each other's noise: tied
        "=1. @bob · 40.0 s · 97.5% · 1.00× ref ← you",
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
    from studybot.curricula import get_curriculum
    scheduled = ", ".join(l.exercise for l in get_curriculum("fastai-part1-2022").lessons if l.exercise)
    assert f"fastai has no exercise 'nosuch'. Its exercises: {scheduled}." in said and "digits" in scheduled
    assert "You are in several cohorts" in bot.say("/study leaderboard digits", as_user="ada")
    assert "Name the exercise" in bot.say("/study leaderboard", as_user="ada")
    assert "You are not in fastai" in bot.say("/study leaderboard anonymous fastai", as_user="zed")
    reply = bot.services.commands.handle("leaderboard nosuch fastai", "ada")
    assert reply.template == "error" and reply.context["field"] == "exercise"
    reply = bot.services.commands.handle("leaderboard digits", "ada")
    assert reply.context["field"] == "name"


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
        "First on the digits board in fastai: <@ada> trained and predicted in 50.0 s to 97.5%."
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


# ---- the record post --------------------------------------------------------------------------


def graded(db, user, seconds, *, minutes=0, **result_fields) -> int:
    """A submission the grader has just finished: the learner's DM still shows it running. Its notebook is
    stored, so a record candidate can be re-run."""
    submission_id = submit(db, user, seconds, minutes=minutes, notebook=f"{user} {seconds} {minutes}".encode(),
                           **result_fields)
    with db.session() as s:
        row = s.get(Submission, submission_id)
        row.dm_channel, row.dm_ts, row.notified_state = f"@{user}", "m0", "running:1/3"
    return submission_id


def feedback_on(bot, chat) -> Feedback:
    """The result side of the clock process, posting through ``chat``."""
    return Feedback(bot.services.db, chat, bot.clock, bot.services.submissions, bot.services.leaderboards,
                    ExactlyOncePoster(bot.services.db, chat, bot.clock))


def record_posts(chat) -> list[str]:
    return [p.message.text for p in chat.posted
            if p.channel_id == "fastai" and p.message.text.startswith(("First on the", "New record in"))]


def record_rows(db) -> list[tuple[str, str, int]]:
    with db.session() as s:
        return [tuple(r) for r in s.execute(select(Delivery.lesson_key, Delivery.status, Delivery.attempts).where(
            Delivery.kind == "record").order_by(Delivery.id))]


def test_a_record_posts_once_however_often_results_are_brought_to_learners(bot):
    start(bot)
    chat = FlakyChat(io.StringIO(), bot.clock, lambda user: user == "admin")
    first, second = feedback_on(bot, chat), feedback_on(bot, chat)  # e.g. the clock process and the shell
    ada = graded(bot.services.db, "ada", 50.0)
    assert first.tick() == [(ada, "done:passed")]
    assert record_posts(chat) == []  # a record candidate waits for its verification re-run
    assert rerun_verifications(bot.services.db, bot.clock) != []
    assert second.tick() == [] and first.tick() == []
    assert record_posts(chat) == ["First on the digits board in fastai: <@ada> trained and predicted in 50.0 s to 97.5%."]
    assert record_rows(bot.services.db) == [(f"sub{ada}", "sent", 1)]
    graded(bot.services.db, "bob", 60.0, minutes=1)  # slower: no record, no row, no re-run
    first.tick()
    assert rerun_verifications(bot.services.db, bot.clock) == []
    assert len(record_posts(chat)) == 1 and len(record_rows(bot.services.db)) == 1


@pytest.mark.parametrize("mode", ["fail", "die"])
def test_a_failed_or_crashed_record_post_is_retried_without_posting_twice(bot, mode):
    start(bot)
    chat = FlakyChat(io.StringIO(), bot.clock, lambda user: user == "admin")
    chat.mode = mode
    ada = graded(bot.services.db, "ada", 50.0)
    feedback_on(bot, chat).tick()  # the result DM; the record waits for its re-run
    rerun_verifications(bot.services.db, bot.clock)
    try:
        feedback_on(bot, chat).tick()
    except SystemExit:  # the process died right after the post landed
        pass
    status = "pending" if mode == "fail" else "sending"
    assert record_rows(bot.services.db) == [(f"sub{ada}", status, 1)]
    bot.clock.advance(timedelta(minutes=6))  # a crashed claim is released after 5 minutes
    restarted = feedback_on(bot, chat)
    restarted.tick()
    restarted.tick()
    assert len(record_posts(chat)) == 1
    assert record_rows(bot.services.db) == [(f"sub{ada}", "sent", 2)]
    [post] = [p for p in chat.posted if p.channel_id == "fastai"]
    with bot.services.db.session() as s:
        assert s.scalar(select(Delivery.message_ts).where(Delivery.kind == "record")) == post.id


def test_a_failed_record_post_is_dropped_once_it_is_no_longer_a_record(bot):
    start(bot)
    chat = FlakyChat(io.StringIO(), bot.clock, lambda user: user == "admin")
    feedback = feedback_on(bot, chat)
    chat.mode = "fail"
    ada = graded(bot.services.db, "ada", 50.0)
    feedback.tick()
    rerun_verifications(bot.services.db, bot.clock)
    feedback.tick()  # verified; the post fails
    bob = graded(bot.services.db, "bob", 40.0, minutes=1)  # beats ada before her post could be retried
    feedback.tick()
    rerun_verifications(bot.services.db, bot.clock)
    feedback.tick()
    assert record_posts(chat) == ["New record in fastai for digits: <@bob> trained and predicted in 40.0 s to 97.5%, "
                                  "1.25× faster than <@ada>'s 50.0 s."]
    assert record_rows(bot.services.db) == [(f"sub{ada}", "skipped", 1), (f"sub{bob}", "sent", 1)]


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
