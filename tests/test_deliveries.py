"""Each lesson posts exactly once, whatever happens: restarts, two schedulers, downtime, DST, crashes.

The scheduler's clock is injected (ManualClock); the chat is the real shell transport, which
records every post with its tag."""

from __future__ import annotations

import io
import threading
import time
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from sqlalchemy import select

from studybot.bootstrap import build_services
from studybot.db.engine import Database
from studybot.db.models import Delivery
from studybot.services.posting import retry_delay
from studybot.shell.chat import ShellChat

NEW_YORK = ZoneInfo("America/New_York")


def make(settings, db, clock, chat=None):
    chat = chat or ShellChat(io.StringIO(), clock, lambda user: user == "admin")
    return build_services(settings, db, chat, clock)


def create(services, *, start="2027-01-05", at="18:00", tz="Europe/Berlin", weekday=None, name="fastai"):
    return services.cohorts.create("admin", name=name, channel="#fastai", start=start, at=at, tz=tz, weekday=weekday)


def lesson_posts(chat) -> list[tuple[str, datetime]]:
    return [(p.message.text.splitlines()[0], p.at) for p in chat.posted if p.channel_id == "fastai"]


def tick_until(services, clock, end: datetime, step: timedelta, fine_around: datetime | None = None) -> None:
    """Tick every ``step``, and at each post's due time in between (as the clock process's ticks
    would land on it); every minute within 90 minutes of ``fine_around`` (a DST change: the hour
    that repeats or goes missing, and the posts on either side of it), where a post must go out
    once at its own minute however often the clock ticks."""
    window = timedelta(minutes=90)
    while clock.now() < end:
        now = clock.now()
        if fine_around is not None and abs(now - fine_around) < window:
            clock.advance(timedelta(minutes=1))
        else:
            stops = [now + step, services.deliveries.next_due()]
            if fine_around is not None:
                stops.append(fine_around - window + timedelta(minutes=1))
            clock.set(min(t for t in stops if t is not None and t > now))
        services.deliveries.tick()


def test_posts_go_out_at_the_due_time(settings, db, clock):
    bot = make(settings, db, clock)
    create(bot)
    clock.set(datetime(2027, 1, 5, 16, 59, 59, tzinfo=timezone.utc))
    assert bot.deliveries.tick().posted == []
    clock.set(datetime(2027, 1, 5, 17, 0, 0, tzinfo=timezone.utc))  # 18:00 CET
    assert bot.deliveries.tick().posted == ["fastai:1"]
    [(title, at)] = lesson_posts(bot.chat)
    assert title == "Week 1 of 9 in fastai: Lesson 1: Getting started"
    assert at == datetime(2027, 1, 5, 17, 0, tzinfo=timezone.utc)


def test_exactly_once_across_a_restart(settings, db, clock):
    first = make(settings, db, clock)
    create(first)
    tick_until(first, clock, datetime(2027, 1, 13, tzinfo=timezone.utc), timedelta(hours=6))
    assert [t for t, _ in lesson_posts(first.chat)] == [
        "Week 1 of 9 in fastai: Lesson 1: Getting started", "Week 2 of 9 in fastai: Lesson 2: Deployment"]
    # A new process: new engine, new services, same database. It must not repeat anything.
    restarted_db = Database(db.url)
    second = make(settings, restarted_db, clock)
    second.deliveries.tick()
    tick_until(second, clock, datetime(2027, 1, 20, tzinfo=timezone.utc), timedelta(hours=6))
    assert [t for t, _ in lesson_posts(second.chat)] == ["Week 3 of 9 in fastai: Lesson 3: Neural net foundations"]
    restarted_db.dispose()


class SlowChat(ShellChat):
    """Posting takes a while, as over a real network: widens the window for a race."""

    def post(self, channel_id, message, *, tag=None):
        time.sleep(0.05)
        return super().post(channel_id, message, tag=tag)


def test_two_schedulers_never_post_twice(settings, db, clock):
    owner = make(settings, db, clock)
    create(owner)
    clock.set(datetime(2027, 2, 10, 18, tzinfo=timezone.utc))
    with db.session() as s:  # every lesson due a minute ago, so both schedulers race for each one
        for delivery in s.scalars(select(Delivery).where(Delivery.kind == "lesson")):
            delivery.due_at = clock.now() - timedelta(minutes=1)
    chats, errors = [], []

    def scheduler() -> None:
        engine = Database(db.url)  # its own connection pool, like a separate process
        chat = SlowChat(io.StringIO(), clock, lambda user: False)
        chats.append(chat)
        try:
            for _ in range(3):
                make(settings, engine, clock, chat).deliveries.tick()
        except Exception as error:  # pragma: no cover - surfaced by the assert below
            errors.append(error)
        finally:
            engine.dispose()

    threads = [threading.Thread(target=scheduler) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    titles = sorted(t for chat in chats for t, _ in lesson_posts(chat))
    assert len(titles) == 9 and len(set(titles)) == 9  # every lesson once, between both of them
    assert all(chats), "both schedulers should have won some of the posts"


def test_downtime_within_the_grace_posts_late_once(settings, db, clock):
    bot = make(settings, db, clock)
    create(bot)
    clock.set(datetime(2027, 1, 5, 17, tzinfo=timezone.utc) + timedelta(hours=3))  # down from 16:00 to 20:00 UTC
    assert bot.deliveries.tick().posted == ["fastai:1"]
    assert bot.deliveries.tick().posted == []


def test_downtime_past_the_grace_skips_and_tells_the_organizers_once(settings, db, clock):
    bot = make(settings, db, clock)
    create(bot)
    bot.cohorts.join("ada", "fastai")
    clock.set(datetime(2027, 1, 7, 12, tzinfo=timezone.utc))  # two days late, grace is 12 h
    report = bot.deliveries.tick()
    assert report.skipped == ["fastai:1"] and report.posted == []
    bot.deliveries.tick()
    dms = [p for p in bot.chat.posted if p.channel_id.startswith("@")]
    assert [p.channel_id for p in dms] == ["@admin"]
    assert "was not posted" in dms[0].message.text and "1 day 19 hours late" in dms[0].message.text
    # The schedule goes on: lesson 2 posts on time.
    clock.set(datetime(2027, 1, 12, 17, tzinfo=timezone.utc))
    assert bot.deliveries.tick().posted == ["fastai:2"]


class DiesAfterPosting(ShellChat):
    """The process dies between the post and the mark: the post landed, the database does not know."""

    armed = True

    def post(self, channel_id, message, *, tag=None):
        ts = super().post(channel_id, message, tag=tag)
        if self.armed:
            self.armed = False
            raise SystemExit("killed mid-post")
        return ts


def test_a_crash_between_post_and_mark_does_not_post_twice(settings, db, clock):
    chat = DiesAfterPosting(io.StringIO(), clock, lambda user: user == "admin")
    bot = make(settings, db, clock, chat)
    create(bot)
    clock.set(datetime(2027, 1, 5, 17, tzinfo=timezone.utc))
    try:
        bot.deliveries.tick()
    except SystemExit:
        pass
    with db.session() as s:
        assert s.scalar(select(Delivery.status).where(Delivery.lesson_key == "1", Delivery.kind == "lesson")) == "sending"
    clock.advance(timedelta(minutes=6))  # past STUCK_AFTER: a new scheduler releases and reconciles it
    restarted = make(settings, Database(db.url), clock, chat)
    restarted.deliveries.tick()
    assert len(lesson_posts(chat)) == 1
    with db.session() as s:
        row = s.scalar(select(Delivery).where(Delivery.lesson_key == "1", Delivery.kind == "lesson"))
        assert row.status == "sent" and row.message_ts == chat.posted[0].id


def test_dst_spring_forward_in_new_york(settings, db, clock):
    """Sunday 02:30 does not exist on 14 March 2027: that week posts at 03:30 EDT, once."""
    clock.set(datetime(2027, 2, 27, tzinfo=timezone.utc))
    bot = make(settings, db, clock)
    create(bot, start="2027-02-28", at="02:30", tz="America/New_York")
    tick_until(bot, clock, datetime(2027, 3, 22, tzinfo=timezone.utc), timedelta(hours=6),
               fine_around=datetime(2027, 3, 14, 7, tzinfo=timezone.utc))
    local = [at.astimezone(NEW_YORK).strftime("%a %d %b %H:%M %Z") for _, at in lesson_posts(bot.chat)]
    assert local == ["Sun 28 Feb 02:30 EST", "Sun 07 Mar 02:30 EST", "Sun 14 Mar 03:30 EDT", "Sun 21 Mar 02:30 EDT"]


def test_dst_fall_back_in_new_york(settings, db, clock):
    """Sunday 01:30 happens twice on 7 November 2027: the lesson posts at the first one, only."""
    clock.set(datetime(2027, 10, 23, tzinfo=timezone.utc))
    bot = make(settings, db, clock)
    create(bot, start="2027-10-24", at="01:30", tz="America/New_York")
    tick_until(bot, clock, datetime(2027, 11, 15, tzinfo=timezone.utc), timedelta(hours=6),
               fine_around=datetime(2027, 11, 7, 6, tzinfo=timezone.utc))
    posts = lesson_posts(bot.chat)
    assert [at.astimezone(timezone.utc).strftime("%d %b %H:%M") for _, at in posts] == [
        "24 Oct 05:30", "31 Oct 05:30", "07 Nov 05:30", "14 Nov 06:30"]
    assert [at.astimezone(NEW_YORK).strftime("%H:%M %Z") for _, at in posts] == [
        "01:30 EDT", "01:30 EDT", "01:30 EDT", "01:30 EST"]


def test_weekday_morning_slots_keep_local_time_across_both_changes(settings, db, clock):
    clock.set(datetime(2027, 3, 1, tzinfo=timezone.utc))
    bot = make(settings, db, clock)
    create(bot, start="2027-03-01", at="09:00", tz="America/New_York")
    slots = bot.cohorts.view("admin", "fastai").lessons
    assert {slot.local.strftime("%a %H:%M") for slot in slots} == {"Mon 09:00"}
    assert slots[1].due_at.hour - slots[2].due_at.hour == 1  # 14:00 UTC before 14 March, 13:00 after


def test_a_failing_channel_is_retried_then_reported(settings, db, clock):
    from studybot.errors import ChatError

    class Refuses(ShellChat):
        def post(self, channel_id, message, *, tag=None):
            if channel_id == "fastai":  # the bot was removed from the cohort channel; DMs still work
                raise ChatError("Slack refused chat_postMessage: not_in_channel")
            return super().post(channel_id, message, tag=tag)

    chat = Refuses(io.StringIO(), clock, lambda user: user == "admin")
    bot = make(settings, db, clock, chat)
    create(bot)
    clock.set(datetime(2027, 1, 5, 17, tzinfo=timezone.utc))
    reports = []
    for attempt in range(1, 7):
        reports.append(bot.deliveries.tick())
        assert bot.deliveries.tick().failed == []  # at once: the row waits its backoff, no attempt is burnt
        clock.advance(retry_delay(attempt))
    assert [r.failed for r in reports] == [[], [], [], [], ["fastai:1"], []]
    [dm] = [p for p in chat.posted if p.channel_id == "@admin"]
    assert "could not be posted" in dm.message.text and "not_in_channel" in dm.message.text and "after 5 attempts" in dm.message.text
