"""Accommodations (issue 12, part 3) through the shell: a deadline extension moves one learner's reminder,
a quota raise for a day, a reminder pause and coming back, and bad input named by its field."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from studybot.db.models import DeadlineExtension, QuotaGrant, Submission
from tests.test_conversations import CREATE, count


def dms_about(said: str, lesson: str) -> list[str]:
    """The reminder DMs' headers whose message is about ``lesson`` ("lesson 3")."""
    chunks = said.split("\n── ")
    return [chunk.splitlines()[0] for chunk in chunks if chunk.startswith("DM to") and f"for {lesson} " in chunk]


def setup(bot):
    bot.say(CREATE)
    for learner in ("ada", "bob"):
        bot.say("/study join fastai", as_user=learner)
    bot.shell.user = "admin"


def test_an_extension_moves_one_learners_reminder_to_before_their_new_deadline(bot):
    setup(bot)
    said = bot.say("/study extend @ada 3 --until 2027-02-05")
    assert "ada's deadline for lesson 3" in said and "Sat 06 Feb 2027, 00:00 CET (the end of 2027-02-05)" in said
    said = bot.say(":advance 5w")
    # Lesson 3 (digits) is due Tue 26 Jan 18:00 CET: bob is reminded a day before; ada a day before her own.
    assert dms_about(said, "lesson 3") == ["DM to @bob · Mon 25 Jan 2027 17:00 UTC ──",
                                          "DM to @ada · Thu 04 Feb 2027 23:00 UTC ──"]
    assert "(your extended deadline)" in said
    status = bot.say("/study status", as_user="ada")
    assert "digits not yet submitted (deadline extended to Sat 06 Feb 2027, 00:00 CET)" in status
    with bot.services.db.session() as s:
        cohort_id = s.scalar(select(DeadlineExtension.cohort_id))
    deadline = bot.services.accommodations.deadline_for("ada", cohort_id, "3")
    assert deadline == datetime(2027, 2, 5, 23, 0, tzinfo=timezone.utc)
    assert bot.services.accommodations.deadline_for("bob", cohort_id, "3") == datetime(2027, 1, 26, 17, 0,
                                                                                       tzinfo=timezone.utc)


def test_an_extended_learner_who_submits_is_not_reminded(bot):
    setup(bot)
    bot.say("/study extend @ada 3 --until 2027-02-05")
    with bot.services.db.session() as s:
        s.add(Submission(user_id="ada", exercise_id="digits", status="passed", created_at=bot.clock.now()))
    assert dms_about(bot.say(":advance 5w"), "lesson 3") == ["DM to @bob · Mon 25 Jan 2027 17:00 UTC ──"]


@pytest.mark.parametrize("command, words, field", [
    ("/study extend @ada 3 --until 2026-12-01", "is in the past", "until"),
    ("/study extend @ada 3 --until 2027-01-10", "is before lesson 3 posts (Tue 19 Jan 2027)", "until"),
    ("/study extend @ada 3 --until 2027-01-25", "does not extend anything", "until"),
    ("/study extend @ada 3 --until soon", "is not a date", "until"),
    ("/study extend @ada 3", "--until is missing", "until"),
    ("/study extend @ada 99 --until 2027-02-05", "has no lesson '99'", "lesson"),
    ("/study extend @zed 3 --until 2027-02-05 fastai", "@zed is not a member of fastai", "user"),
    ("/study extend @ada 3 --until 2027-02-05 empty", "empty has no members yet", "user"),
    ("/study quota @zed +2 digits fastai", "@zed is not a member of fastai", "user"),
    ("/study quota @ada 2x digits", "is not a raise", "amount"),
    ("/study quota @ada +2 nosuch fastai", "There is no exercise 'nosuch'", "exercise"),
    ("/study pause 0", "is not a number of weeks", "weeks"),
])
def test_bad_accommodations_are_refused_naming_the_field(bot, command, words, field):
    setup(bot)
    bot.say(CREATE.replace("create fastai", "create empty").replace("#fastai", "#empty"))
    said = bot.say(command, as_user="admin")
    assert words in said, said
    reply = bot.services.commands.handle(command.removeprefix("/study "), "admin")
    assert reply.template == "error" and reply.context["field"] == field
    assert count(bot, DeadlineExtension) == 0 and count(bot, QuotaGrant) == 0


def test_only_organizers_extend_or_raise(bot):
    setup(bot)
    assert "Only organizers of fastai can extend deadlines" in bot.say("/study extend @ada 3 --until 2027-02-05",
                                                                       as_user="bob")
    assert "Only organizers of fastai can raise quotas" in bot.say("/study quota @ada +2", as_user="bob")


def test_a_quota_raise_counts_for_that_day_only(bot):
    setup(bot)
    with bot.services.db.session() as s:
        for _ in range(5):
            s.add(Submission(user_id="ada", exercise_id="digits", status="passed", created_at=bot.clock.now()))
    submissions = bot.services.submissions
    assert submissions.quota_left("ada", "digits") == 0
    assert "used all 5 digits submissions" in bot.say("/study submit digits", as_user="ada")
    said = bot.say("/study quota @ada +2 digits", as_user="admin")
    assert "ada> " not in said and "2 more ranked submissions of digits today" in said and "2 left now" in said
    assert submissions.quota_left("ada", "digits") == 2 and submissions.quota_left("ada", "pets") == 5
    assert submissions.quota_left("bob", "digits") == 5 and submissions.quota_left("ada", "digits", "check") == 20
    assert "Ready for your digits notebook" in bot.say("/study submit digits", as_user="ada")
    bot.say("/study quota @ada +1", as_user="admin")  # every exercise
    assert submissions.quota_left("ada", "digits") == 3 and submissions.quota_left("ada", "pets") == 6
    bot.clock.advance(timedelta(days=1))  # the next UTC day: the raise is over, the day's quota is whole again
    assert submissions.quota_left("ada", "digits") == 5 and submissions.quota_left("ada", "pets") == 5


def test_a_paused_learner_gets_no_reminders_until_the_pause_ends_or_they_unpause(bot):
    setup(bot)
    said = bot.say("/study pause 2", as_user="bob")
    assert "Reminders paused until Mon 18 Jan 2027, 12:00 UTC" in said
    assert "Reminders paused until Mon 18 Jan 2027, 12:00 UTC" in bot.say("/study status", as_user="bob")
    assert bot.services.accommodations.is_paused("bob") and not bot.services.accommodations.is_paused("ada")
    said = bot.say(":advance 3w", as_user="admin")
    # Lesson 1's reminder (Mon 11 Jan) falls in bob's pause; lesson 2's (Mon 18 Jan 17:00) after it.
    assert dms_about(said, "lesson 1") == ["DM to @ada · Mon 11 Jan 2027 17:00 UTC ──"]
    assert dms_about(said, "lesson 2") == ["DM to @ada · Mon 18 Jan 2027 17:00 UTC ──",
                                          "DM to @bob · Mon 18 Jan 2027 17:00 UTC ──"]
    bot.say("/study pause 4", as_user="bob")
    assert "your reminders are on again" in bot.say("/study unpause", as_user="bob")
    assert "are not paused" in bot.say("/study unpause", as_user="bob")
    assert "DM to @bob · Mon 25 Jan 2027 17:00 UTC" in bot.say(":advance 1w", as_user="admin")
