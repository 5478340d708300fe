"""The weekly board post (services/weekly_boards.py): once per cohort per ISO week whoever ticks,
across failures, crashes and racing tickers, within the grace only; lesson tickers leave it alone."""

from __future__ import annotations

import io
import threading
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from studybot.db.engine import Database
from studybot.db.models import Cohort, Delivery, Membership
from studybot.services.posting import ExactlyOncePoster
from studybot.services.weekly_boards import WeeklyBoards
from studybot.shell.chat import ShellChat
from tests.support.boards import CREATE, FlakyChat, start, submit


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
    assert "Leaderboard for `digits` in fastai" in post and "1. anonymous " in post and "2. ada · 50.0 s" in post
    assert "<@" not in post  # named, never @-mentioned: the weekly post pings nobody
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
    # Part 2's first lessons (9-15) have no exercise; Part 1's all do now
    bot.say(CREATE + " --curriculum fastai-part2-2022 --organizer @carol", as_user="admin")
    bot.say("/study cohort leaderboard fastai --weekday fri --time 17:00", as_user="carol")
    bot.clock.set(datetime(2027, 1, 5, 17, 1, tzinfo=timezone.utc))
    bot.services.deliveries.tick()  # lesson 9 has no exercise
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


def test_the_weekly_post_shows_slack_display_names_and_pings_nobody(bot, fake_slack):
    """Through the real SlackChat: users.info's display name, else the real name, else the id;
    no <@U…> mention anywhere in the post's text or blocks."""
    from studybot.slack.chat import SlackChat, make_web_client
    from tests.conftest import BOT_TOKEN

    fake_slack.add_user("UADA", "ada.l", real_name="Ada Lovelace")
    fake_slack.add_user("UBOB", "", real_name="Bob Builder")["profile"]["display_name"] = ""
    start(bot, learners=())
    to_lesson_three(bot)
    bot.say("/study cohort leaderboard fastai --weekday fri --time 17:00", as_user="carol")
    for user, seconds in (("UADA", 30.0), ("UBOB", 40.0), ("UGONE", 50.0)):
        with bot.services.db.session() as s:  # members as Slack knows them (ids), not shell names
            s.add(Membership(cohort_id=s.scalar(select(Cohort.id)), user_id=user, joined_at=bot.clock.now()))
        submit(bot.services.db, user, seconds)
    chat = SlackChat(make_web_client(BOT_TOKEN, fake_slack.api_url), post_interval=0.0)
    fake_slack.add_channel("fastai", "fastai")
    boards = weekly(bot, chat=chat)
    bot.clock.set(FRIDAY_1700_BERLIN)
    assert boards.tick() == ["fastai:2027-W03"]
    [post] = [c for c in fake_slack.calls_to("chat.postMessage") if c.args["text"].startswith("Weekly")]
    text, blocks = post.args["text"], str(post.args["blocks"])
    assert "1. ada.l · 30.0 s" in text and "2. Bob Builder · 40.0 s" in text and "3. UGONE · 50.0 s" in text
    assert "<@" not in text and "<@" not in blocks
