"""The organizers' weekly digest, the lesson threads and learners' streaks, as people meet them in the
shell (the same services and templates Slack uses; tests/test_digests_slack.py has the Slack side).

T0 is Mon 4 Jan 2027, 12:00 UTC. The cohort posts Tuesdays 18:00 Berlin (17:00 UTC): lesson 1 (pets) on
5 Jan, lesson 2 (deploy) on 12 Jan, lesson 3 (digits) on 19 Jan; each lesson's deadline is the next post.
The digest goes out Mondays at 09:00 Berlin (08:00 UTC) and covers the seven days before it."""

from __future__ import annotations

import io
import re
import struct
import zlib
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy import select

from studybot.db.models import Delivery, LessonThreadReply, Submission
from studybot.services import digest_plot

CREATE = "/study cohort create fastai --channel #fastai --start 2027-01-05 --time 18:00 --tz Europe/Berlin"


def at(day: int, hour: int = 12) -> datetime:
    return datetime(2027, 1, day, hour, tzinfo=timezone.utc)


def graded(bot, user: str, exercise: str, status: str, when: datetime, lane: str = "ranked") -> None:
    """A graded submission as the worker leaves it (grading itself is tested elsewhere)."""
    with bot.services.db.session() as s:
        s.add(Submission(user_id=user, exercise_id=exercise, status=status, created_at=when, lane=lane,
                         source="shell", finished_at=when + timedelta(minutes=2)))


def advance_to(bot, when: datetime) -> str:
    minutes = int((when - bot.clock.now()).total_seconds() // 60)
    assert minutes >= 0
    return bot.say(f":advance {minutes}m", as_user="admin")


def dm_posts(said: str, user: str) -> list[str]:
    """The bodies of the DMs to ``user`` in a stretch of shell output."""
    parts = re.split(r"\n── ", said)
    return [part.split("──\n", 1)[1] for part in parts if part.startswith(f"DM to @{user} ·")]


def png_written(said: str, where: str) -> Path:
    [path] = re.findall(rf"── file in the DM to @{where} · [^\n]*──\n[^\n]*: (\S+\.png) \(\d+ bytes\)", said)
    return Path(path)


def check_png(content: bytes) -> Image.Image:
    """A real PNG: the signature, an IHDR of the picture's size, IDAT that decompresses to its rows."""
    assert content[:8] == b"\x89PNG\r\n\x1a\n"
    length, kind, width, height, depth, colour = struct.unpack(">I4sIIBB", content[8:26])
    assert (length, kind, width, height, depth, colour) == (13, b"IHDR", digest_plot.WIDTH, digest_plot.HEIGHT, 8, 2)
    chunks, offset = [], 8
    while offset < len(content):
        size, name = struct.unpack(">I4s", content[offset:offset + 8])
        chunks.append((name, content[offset + 8:offset + 8 + size]))
        offset += 12 + size
    raw = zlib.decompress(b"".join(data for name, data in chunks if name == b"IDAT"))
    assert len(raw) == height * (1 + 3 * width)  # a filter byte and RGB per pixel, every row
    assert chunks[-1][0] == b"IEND"
    image = Image.open(io.BytesIO(content))
    image.verify()
    return Image.open(io.BytesIO(content)).convert("RGB")


def pixels_of(image: Image.Image, colour) -> int:
    return sum(1 for pixel in image.getdata() if pixel == colour)


LEGEND_SWATCH = 13 * 13  # the legend's square of each colour


@pytest.fixture
def cohort(bot):
    """Five learners join at T0, carol co-organizes, the digest is set for Mondays 09:00; lesson 1 posts."""
    bot.say(CREATE + " --organizer @carol", as_user="admin")
    for learner in ("ada", "bob", "cy", "dee", "fay"):
        bot.say("/study join fastai", as_user=learner)
    said = bot.say("/study cohort digest fastai --weekday mon --time 09:00", as_user="admin")
    assert "Weekly digest of fastai: Mondays at 09:00 Europe/Berlin, in a DM to each of its organizers" in said
    posted = advance_to(bot, at(5, 18))
    assert "Week 1 of 9 in fastai: Lesson 1: Getting started" in posted
    return posted


def test_a_lesson_post_opens_its_question_thread_once(bot, cohort):
    [lesson] = [p for p in bot.chat.posted if p.message.text.startswith("Week 1 of 9")]
    prompt = f"in the thread of {lesson.id} ──\n"
    assert prompt + "Questions about lesson 1, Getting started? Ask them here" in cohort
    assert "say how exercise pets is going" in cohort
    bot.say(":advance 1h")  # more ticks: the thread is opened once
    prompts = [p for p in bot.chat.posted if p.message.text.startswith("Questions about lesson 1")]
    assert len(prompts) == 1 and prompts[0].tag and prompts[0].tag.startswith("delivery:")
    with bot.services.db.session() as s:
        row = s.scalar(select(Delivery).where(Delivery.kind == "thread"))
        assert (row.lesson_key, row.status, row.message_ts) == ("1", "sent", prompts[0].id)


def test_thread_replies_are_counted_once_each_and_only_for_posted_lessons(bot, cohort):
    assert "Lesson 2 of fastai is not posted yet" in bot.say(":reply fastai 2 early question", as_user="ada")
    assert "fastai has no lesson '99'" in bot.say(":reply fastai 99 hello", as_user="ada")
    assert "@ada: how do I load the pets?" in bot.say(":reply fastai 1 how do I load the pets?", as_user="ada")
    channel, thread = bot.services.lesson_threads.lesson_thread("fastai", "1")
    first = bot.services.lesson_threads.record_reply(channel, thread, "bob", "1736100000.000200")
    again = bot.services.lesson_threads.record_reply(channel, thread, "bob", "1736100000.000200")  # a retried event
    assert (first.counted, again.counted) == (True, False)
    assert bot.services.lesson_threads.record_reply(channel, "not-a-lesson", "bob", "1736100000.000300") is None
    cohort_id = bot.services.cohorts.view("admin", "fastai").id
    counts = bot.services.lesson_threads.counts(cohort_id)
    assert counts["1"].replies == 2 and counts["1"].participants == {"ada", "bob"}


def test_the_weekly_digest_reports_lessons_people_and_the_trend_with_a_picture(bot, cohort, tmp_path):
    bot.chat.files_dir = tmp_path / "files"
    # Week 1 (Mon 4 to Mon 11 Jan): ada passes pets, bob does not; cy only checks that his notebook runs.
    graded(bot, "ada", "pets", "passed", at(6))
    graded(bot, "bob", "pets", "below_target", at(6, 13))
    graded(bot, "cy", "pets", "passed", at(6, 14), lane="check")
    advance_to(bot, at(6, 15))
    bot.say(":reply fastai 1 which learner do I use?", as_user="ada")
    bot.say(":reply fastai 1 vision_learner", as_user="bob")
    bot.say(":reply fastai 1 thanks!", as_user="ada")
    advance_to(bot, at(7))
    bot.say("/study join fastai", as_user="eve")
    advance_to(bot, at(8))
    bot.say("/study leave fastai", as_user="dee")

    week1 = advance_to(bot, at(11, 9))
    [to_admin], [to_carol] = dm_posts(week1, "admin"), dm_posts(week1, "carol")
    assert to_admin == to_carol
    assert to_admin.startswith("Weekly digest of fastai, Mon 04 Jan 2027, 09:00 CET to Mon 11 Jan 2027, 09:00 CET: "
                               "5 members.")
    assert "This week: 2 submissions (+2 on the week before), 1 passes (+1 on the week before), " \
           "3 active members (+3 on the week before)." in to_admin
    assert "• Lesson 1 (pets): 2 of 5 submitted, 1 passed · thread: 3 replies from 2 people; passed: ada" in to_admin
    assert "Active (3): ada, bob, cy" in to_admin
    assert "Went quiet (0): nobody" in to_admin  # everyone joined this week
    assert "Joined (5): ada, bob, cy, eve, fay. Left (1): dee." in to_admin
    image = check_png(png_written(week1, "admin").read_bytes())
    assert pixels_of(image, digest_plot.PASSED) > LEGEND_SWATCH  # a pass is drawn, beyond the legend
    assert png_written(week1, "carol").read_bytes() == png_written(week1, "admin").read_bytes()

    # Week 2: lesson 2 posts; ada passes deploy, eve fails it; bob, cy and fay do nothing.
    advance_to(bot, at(13))
    graded(bot, "ada", "deploy", "passed", at(13))
    graded(bot, "eve", "deploy", "crashed", at(14))
    week2 = advance_to(bot, at(18, 9))
    [digest] = dm_posts(week2, "admin")
    assert "This week: 2 submissions (+0 on the week before), 1 passes (+0 on the week before), " \
           "2 active members (-1 on the week before)." in digest
    assert "• Lesson 1 (pets): 2 of 5 submitted, 1 passed · thread: 3 replies from 2 people" in digest
    assert "• Lesson 2 (deploy): 2 of 5 submitted, 1 passed · thread: 0 replies from 0 people; passed: ada" in digest
    assert "Active (2): ada, eve" in digest
    # The longest quiet first: fay never did anything; bob's last was a thread reply, cy's a check run.
    assert "Went quiet (3): fay (nothing since joining Mon 04 Jan); cy since Wed 06 Jan; bob since Wed 06 Jan" in digest
    assert "Joined (0): nobody. Left (0): nobody." in digest
    check_png(png_written(week2, "admin").read_bytes())

    # Exactly once: more ticks in the same week post nothing; each post and its picture is one row.
    assert dm_posts(bot.say(":advance 3h"), "admin") == []
    with bot.services.db.session() as s:
        rows = s.execute(select(Delivery.kind, Delivery.lesson_key, Delivery.status).where(
            Delivery.kind.in_(("digest", "digest_plot"))).order_by(Delivery.kind, Delivery.lesson_key)).all()
    # (Mon 4 Jan's slot had passed, within the grace, before lesson 1 posted: skipped, saying why.)
    assert [(kind, key[:8], status) for kind, key, status in rows] == [
        ("digest", "2027-W01", "skipped"), ("digest", "2027-W01", "skipped"),
        ("digest", "2027-W02", "sent"), ("digest", "2027-W02", "sent"),
        ("digest", "2027-W03", "sent"), ("digest", "2027-W03", "sent"),
        ("digest_plot", "2027-W02", "sent"), ("digest_plot", "2027-W02", "sent"),
        ("digest_plot", "2027-W03", "sent"), ("digest_plot", "2027-W03", "sent")]


def test_a_picture_without_passes_draws_none(bot, cohort, tmp_path):
    bot.chat.files_dir = tmp_path / "files"
    graded(bot, "bob", "pets", "below_target", at(5, 17) + timedelta(minutes=30))  # after the post, before now
    said = bot.say("/study cohort report fastai", as_user="carol")
    image = check_png(_report_png(said, "carol").read_bytes())
    assert pixels_of(image, digest_plot.PASSED) == LEGEND_SWATCH  # only the legend's swatch
    assert pixels_of(image, digest_plot.SUBMITTED) > LEGEND_SWATCH


def _report_png(said: str, user: str) -> Path:
    [path] = re.findall(rf"── file for @{user} · [^\n]*──\n[^\n]*: (\S+\.png) \(\d+ bytes\)", said)
    return Path(path)


def test_the_report_on_demand_shows_the_same_and_says_where_the_picture_is(bot, cohort, tmp_path):
    bot.chat.files_dir = tmp_path / "files"
    graded(bot, "ada", "pets", "passed", at(5, 17) + timedelta(minutes=30))
    said = bot.say("/study cohort report fastai", as_user="carol")
    assert "Report of fastai, Tue 29 Dec 2026, 19:00 CET to Tue 05 Jan 2027, 19:00 CET: 5 members." in said
    assert "• Lesson 1 (pets): 1 of 5 submitted, 1 passed" in said
    path = _report_png(said, "carol")
    assert path.parent == tmp_path / "files" / "carol" and path.name == "digest-fastai-2027-01-05.png"
    check_png(path.read_bytes())
    assert "The picture (submissions and passes per week, the completion funnel) is in your DM." in said


def test_bad_digest_and_report_input_is_named(bot, cohort):
    assert "There is no cohort named 'nope'" in bot.say("/study cohort report nope", as_user="admin")
    assert "There is no cohort named 'nope'" in bot.say("/study cohort digest nope --weekday mon", as_user="admin")
    assert "Only organizers of fastai" in bot.say("/study cohort report fastai", as_user="ada")
    assert "Only organizers of fastai" in bot.say("/study cohort digest fastai --off", as_user="ada")
    assert "--weekday is missing" in bot.say("/study cohort digest fastai --time 09:00", as_user="admin")
    assert "is not one of" in bot.say("/study cohort digest fastai --weekday someday", as_user="admin")
    assert "is not a time of day" in bot.say("/study cohort digest fastai --weekday mon --time 25:00", as_user="admin")
    own = bot.say("/study cohort digest fastai --weekday mon --channel #fastai", as_user="admin")
    assert "#fastai is the cohort's own channel" in own
    assert "either --off, or" in bot.say("/study cohort digest fastai --off --weekday mon", as_user="admin")
    assert "Give exactly one cohort name" in bot.say("/study cohort report", as_user="admin")
    bot.say(CREATE.replace("create fastai", "create empty"), as_user="admin")
    empty = bot.say("/study cohort report empty", as_user="admin")
    assert "empty has no members yet, so there is nothing to report" in empty
    with bot.services.db.session() as s:  # the schedule set in the fixture is untouched by the refusals
        from studybot.db.models import CohortDigest

        [row] = s.scalars(select(CohortDigest)).all()
        assert (row.weekday, row.post_time, row.channel_id) == (0, "09:00", None)


def test_a_digest_to_an_organizers_channel_and_off(bot, cohort, tmp_path):
    bot.chat.files_dir = tmp_path / "files"
    said = bot.say("/study cohort digest fastai --weekday sun --time 20:00 --channel #organizers", as_user="carol")
    assert "Sundays at 20:00 Europe/Berlin, posted to #organizers" in said
    posted = advance_to(bot, at(10, 20))
    assert "── #organizers · Sun 10 Jan 2027 19:00 UTC ──\nWeekly digest of fastai" in posted
    assert "DM to @admin" not in posted and "── file in #organizers" in posted
    assert "No more weekly digests of fastai" in bot.say("/study cohort digest fastai --off", as_user="carol")
    assert "Weekly digest" not in advance_to(bot, at(17, 21))


def test_a_cohort_without_members_gets_no_digest(bot):
    bot.say(CREATE, as_user="admin")
    bot.say("/study cohort digest fastai --weekday mon", as_user="admin")
    assert "Weekly digest" not in advance_to(bot, at(12, 18))
    with bot.services.db.session() as s:
        notes = set(s.scalars(select(Delivery.note).where(Delivery.kind == "digest")))
    assert notes == {"no lesson posted yet", "the cohort has no members"}


def test_streaks_best_results_and_standing_in_status_and_home(bot, cohort):
    graded(bot, "ada", "pets", "passed", at(6))
    graded(bot, "bob", "pets", "passed", at(13))  # after lesson 1's deadline (Tue 12 Jan 17:00 UTC)
    advance_to(bot, at(13))
    graded(bot, "ada", "deploy", "passed", at(13, 14))
    status = bot.say("/study status", as_user="ada")
    assert "Weekly streak: 2 lessons passed in their week; 2 of 2 exercises so far. " \
           "1 of 5 passed deploy this week, you among them." in status
    bob = bot.say("/study status", as_user="bob")
    assert "Weekly streak: 0 lessons passed in their week; 0 of 2 exercises so far. 1 of 5 passed deploy this week." in bob
    # This week's lesson not passed yet does not break the streak; once its deadline passes, it does.
    advance_to(bot, at(19, 18))
    assert "Weekly streak: 2 lessons" in bot.say("/study status", as_user="ada")
    advance_to(bot, at(26, 18))
    after = bot.say("/study status", as_user="ada")
    assert "Weekly streak: 0 lessons passed in their week (best 2); 2 of 4 exercises so far. 0 of 5 passed imdb" in after
    assert "Weekly streak: 0 lessons passed in their week (best 2)" in bot.say(":home", as_user="ada")


def test_streaks_count_only_passes_that_count(bot, cohort):
    graded(bot, "ada", "pets", "passed", at(6), lane="check")  # a check run is not a pass
    graded(bot, "bob", "pets", "below_target", at(6))
    with bot.services.db.session() as s:
        s.add(Submission(user_id="cy", exercise_id="pets", status="passed", created_at=at(6), lane="ranked",
                         source="shell", review_state="flagged"))  # held for review
        s.add(Submission(user_id="dee", exercise_id="pets", status="passed", created_at=at(6), lane="ranked",
                         source="shell", disqualified_at=at(7)))
    for learner in ("ada", "bob", "cy", "dee"):
        said = bot.say("/study status", as_user=learner)
        assert "Weekly streak: 0 lessons" in said and "0 of 5 passed pets this week." in said, learner


def test_replies_rows_hang_off_the_lesson_post(bot, cohort):
    bot.say(":reply fastai 1 hi", as_user="ada")
    with bot.services.db.session() as s:
        reply = s.scalar(select(LessonThreadReply))
        post = s.get(Delivery, reply.delivery_id)
        assert (post.kind, post.lesson_key, reply.user_id) == ("lesson", "1", "ada")
