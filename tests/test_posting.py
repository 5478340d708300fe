"""The one exactly-once poster (services/posting.py) on its own, on SQLite and PostgreSQL: claims are won
once, failures are retried up to the cap, a post that landed before its process died is found by its tag
rather than posted again, and a row stuck mid-post is released only after STUCK_AFTER."""

from __future__ import annotations

import io
from datetime import timedelta

from sqlalchemy import select

from studybot.db.engine import Database
from studybot.db.models import Cohort, Delivery
from studybot.errors import ChatError
from studybot.ports import Message
from studybot.services.posting import STUCK_AFTER, ExactlyOncePoster
from studybot.shell.chat import ShellChat

CREATE = "/study cohort create fastai --channel #fastai --start 2027-01-05 --time 18:00 --tz Europe/Berlin"


class Scripted(ShellChat):
    """Posts fail while ``failures`` lasts; with ``die`` the process dies right after a post landed."""

    failures = 0
    die = False

    def post(self, channel_id, message, *, tag=None):
        if self.failures:
            self.failures -= 1
            raise ChatError("Slack could not be reached for chat_postMessage: timeout")
        ts = super().post(channel_id, message, tag=tag)
        if self.die:
            self.die = False
            raise SystemExit("killed mid-post")
        return ts


def setup(bot, chat=None, worker_id="clock-1") -> tuple[ExactlyOncePoster, int]:
    bot.say(CREATE, as_user="admin")
    with bot.services.db.session() as s:
        cohort_id = s.scalar(select(Cohort.id))
    chat = chat or Scripted(io.StringIO(), bot.clock, lambda user: False)
    return ExactlyOncePoster(bot.services.db, chat, bot.clock, worker_id=worker_id), cohort_id


def row(db, row_id) -> tuple:
    with db.session() as s:
        r = s.get(Delivery, row_id)
        return r.status, r.attempts, r.message_ts


def test_a_row_made_when_due_is_claimed_by_one_poster_and_posted_with_its_tag(bot):
    poster, cohort_id = setup(bot)
    other = ExactlyOncePoster(Database(bot.services.db.url), poster.chat, bot.clock, worker_id="clock-2")
    row_id = poster.claim_new(cohort_id=cohort_id, kind="test", key="k1", due_at=bot.clock.now())
    assert row_id is not None
    assert other.claim_new(cohort_id=cohort_id, kind="test", key="k1", due_at=bot.clock.now()) is None
    assert other.post(row_id, "fastai", Message("hello")).status == "lost"  # not its claim: nothing posted
    outcome = poster.post(row_id, "fastai", lambda: Message("hello"))
    assert (outcome.status, outcome.attempts, outcome.found) == ("sent", 1, False)
    [post] = poster.chat.posted
    assert post.tag == poster.tag(row_id) == f"delivery:{row_id}" and post.message.text == "hello"
    assert row(bot.services.db, row_id) == ("sent", 1, post.id)
    assert not poster.claim(row_id) and not other.claim(row_id)  # sent is final
    other.db.dispose()


def test_failures_go_back_to_pending_until_the_last_attempt_fails(bot):
    poster, cohort_id = setup(bot)
    poster.chat.failures = 10
    row_id = poster.claim_new(cohort_id=cohort_id, kind="test", key="k1", due_at=bot.clock.now())
    statuses = [poster.post(row_id, "fastai", Message("hello")).status]
    while poster.claim(row_id):
        statuses.append(poster.post(row_id, "fastai", Message("hello")).status)
    assert statuses == ["pending", "pending", "pending", "pending", "failed"]
    status, attempts, _ = row(bot.services.db, row_id)
    assert (status, attempts) == ("failed", 5) and poster.chat.posted == []


def test_a_post_that_landed_before_its_process_died_is_found_not_repeated(bot):
    poster, cohort_id = setup(bot)
    poster.chat.die = True
    row_id = poster.claim_new(cohort_id=cohort_id, kind="test", key="k1", due_at=bot.clock.now())
    try:
        poster.post(row_id, "fastai", Message("hello"))
    except SystemExit:
        pass
    assert row(bot.services.db, row_id)[0] == "sending"
    bot.clock.advance(STUCK_AFTER - timedelta(seconds=1))
    assert poster.release_stuck(["test"]) == 0  # it may still be posting
    bot.clock.advance(timedelta(seconds=2))
    assert poster.release_stuck(["lesson"]) == 0  # other kinds are left to their own tickers
    assert poster.release_stuck(["test"]) == 1
    restarted = ExactlyOncePoster(bot.services.db, poster.chat, bot.clock, worker_id="clock-2")
    assert restarted.claim(row_id)
    outcome = restarted.post(row_id, "fastai", lambda: Message("hello again"))
    assert (outcome.status, outcome.attempts, outcome.found) == ("sent", 2, True)
    [post] = poster.chat.posted
    assert post.message.text == "hello" and row(bot.services.db, row_id) == ("sent", 2, post.id)


def test_skipped_rows_are_never_claimed(bot):
    poster, cohort_id = setup(bot)
    assert poster.skip_new(cohort_id=cohort_id, kind="test", key="k1", due_at=bot.clock.now(), note="nothing new")
    assert not poster.skip_new(cohort_id=cohort_id, kind="test", key="k1", due_at=bot.clock.now(), note="again")
    assert poster.claim_new(cohort_id=cohort_id, kind="test", key="k1", due_at=bot.clock.now()) is None
    with bot.services.db.session() as s:
        lesson = s.scalar(select(Delivery.id).where(Delivery.kind == "lesson").order_by(Delivery.id))
    assert poster.skip(lesson, note="too late") and not poster.skip(lesson, note="twice")
    assert not poster.claim(lesson) and poster.chat.posted == []
