"""The bot as people talk to it, through the terminal shell transport (no Slack)."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from studybot.db.models import Cohort, Delivery, Submission

CREATE = "/study cohort create fastai --channel #fastai --start 2027-01-05 --time 18:00 --tz Europe/Berlin"


def count(bot, model) -> int:
    with bot.services.db.session() as s:
        return s.scalar(select(func.count()).select_from(model))


def test_create_join_and_see_the_first_lesson(bot):
    created = bot.say(CREATE)
    assert "Created *fastai* in #fastai" in created
    assert "Lesson 1 posts Tue 05 Jan 2027, 18:00 CET" in created
    assert "Welcome to fastai" in bot.say("/study join fastai", as_user="ada")
    lesson = bot.say("/study lesson")
    assert "coming Tue 05 Jan 2027, 18:00 CET: Lesson 1: Getting started" in lesson
    assert "https://course.fast.ai/Lessons/lesson1.html" in lesson


def test_weeks_one_two_and_three_post_in_order(bot):
    bot.say(CREATE)
    said = bot.say(":advance 3w")
    posts = [line for line in said.splitlines() if line.startswith("Week ")]
    assert posts == [
        "Week 1 of 9 in fastai: Lesson 1: Getting started",
        "Week 2 of 9 in fastai: Lesson 2: Deployment",
        "Week 3 of 9 in fastai: Lesson 3: Neural net foundations",
    ]
    assert "── #fastai · Tue 05 Jan 2027 17:00 UTC ──" in said  # 18:00 CET


def test_schedule_lists_every_lesson_with_local_dates(bot):
    bot.say(CREATE)
    schedule = bot.say("/study schedule fastai")
    assert "Tue 05 Jan 2027 18:00  Lesson 1: Getting started" in schedule
    assert "Tue 02 Mar 2027 18:00  Lesson 8a: Bonus: Data ethics" in schedule


OPTIONS = {"--channel": "#fastai", "--start": "2027-01-05", "--time": "18:00", "--tz": "Europe/Berlin"}


@pytest.mark.parametrize("option, value, words", [
    ("--start", "2027-02-30", "is not a date"),
    ("--time", "25:00", "is not a time of day"),
    ("--tz", "Mars/Olympus", "is not an IANA timezone"),
    ("--channel", "#Not_A_Channel!", "is not a channel name"),
    ("--curriculum", "fastai-part9", "fastai-part9"),
    ("--weekday", "someday", "is not one of"),
])
def test_invalid_fields_are_named_and_nothing_is_written(bot, option, value, words):
    options = {**OPTIONS, option: value}
    said = bot.say("/study cohort create fastai " + " ".join(f"{k} {v!r}" for k, v in options.items()))
    assert words in said and value in said
    assert count(bot, Cohort) == 0 and count(bot, Delivery) == 0


def test_missing_option_is_named(bot):
    said = bot.say("/study cohort create fastai --channel #fastai --start 2027-01-05 --tz Europe/Berlin")
    assert "--time is missing" in said
    assert count(bot, Cohort) == 0


def test_duplicate_cohort_name_is_refused_case_insensitively(bot):
    bot.say(CREATE)
    said = bot.say(CREATE.replace("create fastai", "create FastAI"))
    assert "A cohort named FastAI already exists" in said
    assert count(bot, Cohort) == 1


def test_non_organizers_are_refused(bot):
    bot.say(CREATE)
    for command in ("/study cohort pause fastai", "/study cohort skip fastai", "/study cohort list",
                    "/study cohort resume fastai", CREATE.replace("fastai ", "other ", 1),
                    "/study cohort reschedule fastai --time 19:00"):
        said = bot.say(command, as_user="mallory")
        assert "Only organizers" in said, command
    with bot.services.db.session() as s:
        assert s.scalar(select(Cohort.status)) == "active"
        assert s.scalar(select(Cohort.post_time)) == "18:00"


def test_named_organizers_may_manage_their_cohort(bot):
    bot.say(CREATE + " --organizer @carol")
    assert "Paused fastai" in bot.say("/study cohort pause fastai", as_user="carol")
    assert "Resumed fastai" in bot.say("/study cohort resume fastai", as_user="carol")


def test_unknown_subcommands_get_the_help_text(bot):
    said = bot.say("/study frobnicate", as_user="ada")
    assert "I don't know `frobnicate`" in said
    assert "/study join NAME" in said
    assert "Organizers:" not in said  # learners see learner help


def test_pause_holds_lessons_and_resume_moves_them_on(bot):
    bot.say(CREATE)
    bot.say(":advance 2d")  # lesson 1 posts Tue 5 Jan
    bot.say("/study cohort pause fastai")
    assert "Week 2" not in bot.say(":advance 3w")  # nothing while paused
    resumed = bot.say("/study cohort resume fastai")
    assert "Next: lesson 2, Tue 02 Feb 2027, 18:00 CET" in resumed
    assert "Week 2 of 9 in fastai: Lesson 2" in bot.say(":advance 8d")


def test_skip_moves_every_pending_lesson_a_week(bot):
    bot.say(CREATE)
    said = bot.say("/study cohort skip fastai")
    assert "Next: lesson 1, Tue 12 Jan 2027, 18:00 CET" in said
    last = bot.say("/study schedule fastai").splitlines()[-1]
    assert "Tue 09 Mar 2027" in last and "Lesson 8a: Bonus: Data ethics" in last


def test_reschedule_changes_weekday_time_and_zone(bot):
    bot.say(CREATE)
    said = bot.say("/study cohort reschedule fastai --weekday thu --time 07:30 --tz Asia/Tokyo")
    assert "Next: lesson 1, Thu 07 Jan 2027, 07:30 JST" in said
    assert "── #fastai · Wed 06 Jan 2027 22:30 UTC ──" in bot.say(":advance 3d")


def test_reminders_go_only_to_members_who_have_not_submitted(bot):
    bot.say(CREATE)
    bot.say("/study join fastai", as_user="ada")
    bot.say("/study join fastai", as_user="bob")
    with bot.services.db.session() as s:  # bob did lessons 1-3's exercises; ada did none
        for exercise in ("pets", "deploy", "digits"):
            s.add(Submission(user_id="bob", exercise_id=exercise, status="graded", created_at=bot.clock.now()))
    said = bot.say(":advance 22d", as_user="admin")
    reminders = [line for line in said.splitlines() if line.startswith("── DM to")]
    assert reminders == ["── DM to @ada · Mon 11 Jan 2027 17:00 UTC ──",  # 24 h before each lesson's deadline
                         "── DM to @ada · Mon 18 Jan 2027 17:00 UTC ──",
                         "── DM to @ada · Mon 25 Jan 2027 17:00 UTC ──"]
    assert "exercise pets for lesson 1" in said and "exercise digits for lesson 3" in said


def test_leave_stops_reminders_and_status_follows(bot):
    bot.say(CREATE)
    bot.say("/study join fastai", as_user="ada")
    assert "You left fastai" in bot.say("/study leave", as_user="ada")
    assert "not in any cohort" in bot.say("/study status", as_user="ada")
    assert "DM to @ada" not in bot.say(":advance 4w")


def test_status_and_home_show_progress(bot):
    bot.say(CREATE)
    bot.say("/study join fastai", as_user="ada")
    bot.say(":advance 16d")
    status = bot.say("/study status", as_user="ada")
    assert "fastai: 3/9 lessons posted. This week: lesson 3, Neural net foundations." in status
    assert "digits not yet submitted" in status
    assert "fastai: 3/9 lessons; this week lesson 3" in bot.say(":home")


def test_quotes_that_do_not_close_get_a_clear_error(bot):
    assert "Check your quotes" in bot.say('/study join "fastai')


NOTEBOOK = (b'{"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [{"cell_type": "code", "id": "a1", '
            b'"metadata": {}, "execution_count": null, "outputs": [], "source": "#| export\\nx = 1"}]}')


def test_a_shell_submission_that_is_no_notebook_is_refused_in_the_dm(bot, tmp_path):
    missing = bot.say(f"/study submit digits {tmp_path / 'nowhere.ipynb'}", as_user="ada")
    assert "── DM to @ada" in missing and "I could not take that notebook: There is no file" in missing
    broken = tmp_path / "broken.ipynb"
    broken.write_text("not json at all")
    said = bot.say(f"/study submit digits {broken}")
    assert "not valid notebook JSON" in said and "Nothing was queued" in said
    assert count(bot, Submission) == 0


def test_the_intake_acknowledges_a_notebook_in_the_dm_once_per_upload(bot):
    from studybot.services.intake import DUPLICATE, QUEUED

    start = bot.out.tell()
    taken = bot.services.intake.accept("ada", NOTEBOOK, filename="mine.ipynb", exercise="digits", source="shell",
                                       upload_id="F1")
    said = bot.out.getvalue()[start:]
    assert taken.status == QUEUED
    assert "── DM to @ada" in said and "Notebook received for digits (submission #1). Queued, position 1, result in about 3 min." in said
    # (3 min: digits has never been graded here, so its first grade counts eta.FIRST_GRADE_SECONDS)
    submission = bot.services.submissions.get(taken.submission_id)
    assert (submission.dm_channel, submission.dm_ts, submission.notified_state) == ("@ada", taken.message_id, "queued:3")  # the state shown: queued, about 3 min
    again = bot.services.intake.accept("ada", NOTEBOOK, filename="mine.ipynb", exercise="digits", source="shell",
                                       upload_id="F1")
    assert (again.status, again.submission_id, again.message_id) == (DUPLICATE, taken.submission_id, None)
    assert bot.out.getvalue()[start:] == said  # the repeat posts nothing
    assert count(bot, Submission) == 1


def test_a_learner_asking_for_the_cohort_form_is_refused_before_it_opens(bot):
    refused = bot.say("/study cohort create", as_user="mallory")
    assert "Only organizers can create cohorts" in refused and "cohort form" not in refused
    assert "The cohort form opens in Slack" in bot.say("/study cohort create", as_user="admin")


def test_the_cohort_in_a_channel_is_the_oldest_there(bot):
    bot.say(CREATE)
    bot.say(CREATE.replace("create fastai", "create later"))
    assert bot.services.cohorts.cohort_in_channel("fastai").name == "fastai"
    assert bot.services.cohorts.cohort_in_channel("elsewhere") is None


def test_the_shell_shows_hints_thread_replies_and_home_updates(bot):
    from studybot.messages import render, render_view

    bot.chat.post_ephemeral("fastai", "ada", render("channel_welcome", cohort_name="fastai"))
    bot.chat.reply_in_thread("fastai", "m7", render("help", unknown=None, organizer=False))
    bot.chat.publish_home("ada", render_view("home", cohorts=[], organized=[], submitted=set(), is_organizer=False,
                                             recent=[], best=[]))
    said = bot.out.getvalue()
    assert "· only @ada sees this ──\nWelcome! This channel is the study cohort fastai." in said
    assert "· in the thread of m7 ──\nHere is what `/study` does" in said
    assert "── App Home of @ada" in said
    assert [p.channel_id for p in bot.chat.posted] == ["fastai"]  # the thread reply only: a hint cannot be found later
