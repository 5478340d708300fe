"""Posting exactly once: the one claim -> look up -> post -> mark machine, on the deliveries table.

Every post the bot must make once and only once goes through ``ExactlyOncePoster``: lesson posts and
reminders (services/deliveries.py), weekly boards (services/weekly_boards.py), record posts
(services/feedback.py), and any later kind. Each post is one row of ``deliveries``, named by
UNIQUE(cohort_id, lesson_key, kind); the database, not the process, knows what went out:

    pending --claim--> sending --post, mark--> sent
       ^                  |
       +---- ChatError ---+---- ChatError on attempt MAX_ATTEMPTS --> failed
       |                  +---- a permanent ChatError (not_in_channel, is_archived...) --> failed at once
       +-- history unreadable: an earlier post's fate cannot be checked (not counted as a failure)
    pending --skip--> skipped        (the caller's call: too late, nothing to say)
    pending --give_up--> failed      (the caller's call: it can no longer be posted)
    sending, claimed over STUCK_AFTER ago --release_stuck--> pending   (its process died mid-post)

Why it holds across crashes and racing processes:
- a claim is a conditional UPDATE (pending -> sending) or, for rows made when they fall due, an INSERT
  straight into 'sending' that the UNIQUE constraint lets one process win; each transition is its own
  committed transaction, so other processes see the claim before the post is attempted;
- an attempt after the first may follow one that posted and died before marking: it first looks the
  post up in the channel by its tag (the row's id, see ``tag``) and only posts if it is not there;
- that lookup is only needed when the earlier attempt may have posted: a refusal Slack answered
  (ChatError.may_have_posted False) posted nothing, so the next attempt posts without looking;
- when the lookup is needed but the channel cannot be read (HistoryUnreadable: Slack lets a bot post
  to a public channel it is not in, never read it), the row goes back to pending, marked UNKNOWN, and
  is retried after its backoff: it is never posted blind (that could post twice) and never failed for
  it (Slack is healthy); the caller's grace ends it if nobody lets the bot read the channel in time;
- the caller decides what a row means (which template, skip or not); this module only moves states.

Retries wait: a row that failed becomes due again ``retry_delay(attempts)`` after its last claim
(``next_attempt_at``), so a failing row cannot crowd out the others in a tick; tickers order their
rows by it.
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Callable, Iterable

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from studybot.db.engine import Database
from studybot.db.models import Delivery
from studybot.errors import ChatError, HistoryUnreadable
from studybot.ports import Chat, Message
from studybot.time_source import Clock

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 5  # post attempts before a row is marked failed
STUCK_AFTER = timedelta(minutes=5)  # a 'sending' row claimed longer ago than this belongs to a process that died
LOOKUP_SLACK = timedelta(minutes=1)  # the channel is searched from this long before the row's due time
RETRY_BASE_DELAY = timedelta(seconds=30)  # the wait after a row's first failed attempt; doubles with each
RETRY_MAX_DELAY = timedelta(minutes=15)  # the longest wait between two attempts of one row
# Notes that say what the last attempt left behind; a note without one of them means "may have posted".
REFUSED_NOTE = "refused: "  # Slack answered a refusal: nothing was posted, the next attempt need not look
UNKNOWN_NOTE = "unknown: "  # an earlier attempt may have posted and the channel cannot be read to check
PERMANENT_NOTE = "permanent: "  # failed at once: the same post cannot succeed until a person fixes something


def retry_delay(attempts: int) -> timedelta:
    """How long a row waits after its ``attempts``-th attempt failed: exponential, capped."""
    if attempts <= 0:
        return timedelta(0)
    return min(RETRY_BASE_DELAY * 2 ** (attempts - 1), RETRY_MAX_DELAY)


def next_attempt_at(due_at: datetime, claimed_at: datetime | None, attempts: int) -> datetime:
    """When a pending row may be claimed (again): its due time, or its last claim plus the backoff."""
    if attempts <= 0 or claimed_at is None:
        return due_at
    return max(due_at, _aware_like(claimed_at, due_at) + retry_delay(attempts))


def _aware_like(value: datetime, like: datetime) -> datetime:
    # SQLite hands back naive datetimes for timezone-aware columns: read them as UTC, like the rest.
    if value.tzinfo is None and like.tzinfo is not None:
        return value.replace(tzinfo=like.tzinfo)
    return value


@dataclass(frozen=True)
class Outcome:
    """What one ``post`` call did. ``status``: sent; pending (failed, a later claim retries it);
    failed (the last attempt failed); lost (the row was no longer this caller's to post)."""

    status: str
    attempts: int = 0
    message_ts: str | None = None
    error: str | None = None
    found: bool = False  # the post was already in the channel: an earlier attempt had landed
    permanent: bool = False  # failed at once: Slack refuses this post until a person fixes something
    unknown: bool = False  # pending: an earlier attempt's fate cannot be checked (the channel is unreadable)
    first_unknown: bool = False  # ... and this attempt is the first to find that out (tell someone once)
    code: str | None = None  # the transport's error code, if any (Slack's ``error``)


class ExactlyOncePoster:
    def __init__(self, db: Database, chat: Chat, clock: Clock, *, worker_id: str | None = None,
                 max_attempts: int = MAX_ATTEMPTS, stuck_after: timedelta = STUCK_AFTER) -> None:
        self.db, self.chat, self.clock = db, chat, clock
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}"
        self.max_attempts, self.stuck_after = max_attempts, stuck_after

    @staticmethod
    def tag(row_id: int) -> str:
        """The idempotency tag a row's post carries (ids are unique across every kind of row)."""
        return f"delivery:{row_id}"

    # ---- claiming ----------------------------------------------------------------------------

    def claim(self, row_id: int) -> bool:
        """pending -> sending for this process; False if another process has it (or it is done)."""
        with self.db.session() as s:
            result = s.execute(update(Delivery).where(Delivery.id == row_id, Delivery.status == "pending")
                               .values(status="sending", claimed_at=self.clock.now(), claimed_by=self.worker_id,
                                       attempts=Delivery.attempts + 1))
            return result.rowcount == 1

    def claim_new(self, *, cohort_id: int, kind: str, key: str, due_at: datetime, position: int = 0) -> int | None:
        """For rows made when they fall due (weekly boards, records): the INSERT is the claim.

        Returns the new row's id, or None when another process (or an earlier call) made it first."""
        return self._insert(cohort_id, kind, key, due_at, position, status="sending", attempts=1)

    def skip_new(self, *, cohort_id: int, kind: str, key: str, due_at: datetime, note: str, position: int = 0) -> bool:
        """Record that a row made when it falls due will not post (``note`` says why), so no one tries."""
        return self._insert(cohort_id, kind, key, due_at, position, status="skipped", attempts=0, note=note) is not None

    def _insert(self, cohort_id: int, kind: str, key: str, due_at: datetime, position: int, *, status: str,
                attempts: int, note: str | None = None) -> int | None:
        try:
            with self.db.session() as s:
                row = Delivery(cohort_id=cohort_id, lesson_key=key, position=position, kind=kind, due_at=due_at,
                               status=status, attempts=attempts, claimed_at=self.clock.now(),
                               claimed_by=self.worker_id, note=note)
                s.add(row)
                s.flush()
                return row.id
        except IntegrityError:  # UNIQUE(cohort_id, lesson_key, kind): the row exists, someone else owns it
            return None

    # ---- posting -----------------------------------------------------------------------------

    def post(self, row_id: int, channel_id: str, message: Message | Callable[[], Message], *,
             thread_id: str | None = None) -> Outcome:
        """Post a claimed row's message once: look for an earlier attempt's post, else post; mark sent.

        ``message`` may be a callable, so nothing is rendered when an earlier attempt's post is found.
        ``thread_id``: post it as a reply in that message's thread (and look for it there)."""
        with self.db.session() as s:
            row = s.execute(select(Delivery.attempts, Delivery.due_at, Delivery.note).where(
                Delivery.id == row_id, Delivery.status == "sending", Delivery.claimed_by == self.worker_id)).first()
        if row is None:
            return Outcome("lost")
        attempts, due_at, note = row
        tag = self.tag(row_id)
        found = False
        try:
            ts = None
            # An earlier attempt may have posted before it failed or died, unless Slack refused it.
            if attempts > 1 and not (note or "").startswith(REFUSED_NOTE):
                try:
                    since = due_at - LOOKUP_SLACK
                    ts = (self.chat.find_post(channel_id, since=since, tag=tag) if thread_id is None else
                          self.chat.find_post(channel_id, since=since, tag=tag, thread_id=thread_id))
                except HistoryUnreadable as error:
                    return self._unknown(row_id, attempts, error, first=not (note or "").startswith(UNKNOWN_NOTE))
                except ChatError as error:  # the lookup failed, not a post: the earlier fate is still unknown
                    return self._after_failure(row_id, attempts, error, earlier_may_have_posted=True)
                found = ts is not None
            if ts is None:
                rendered = message() if callable(message) else message
                ts = (self.chat.post(channel_id, rendered, tag=tag) if thread_id is None else
                      self.chat.reply_in_thread(channel_id, thread_id, rendered, tag=tag))
        except ChatError as error:
            return self._after_failure(row_id, attempts, error)
        self.mark_sent(row_id, ts)
        return Outcome("sent", attempts, message_ts=ts, found=found)

    def mark_sent(self, row_id: int, message_ts: str | None = None) -> bool:
        """sending -> sent. ``post`` calls it; callers that send their own way (reminder DMs) call it too."""
        with self.db.session() as s:
            result = s.execute(update(Delivery).where(Delivery.id == row_id, Delivery.status == "sending")
                               .values(status="sent", sent_at=self.clock.now(), message_ts=message_ts))
            return result.rowcount == 1

    def _after_failure(self, row_id: int, attempts: int, error: ChatError, *,
                       earlier_may_have_posted: bool = False) -> Outcome:
        text = str(error)
        if error.permanent:
            log.warning("delivery %s failed for good on attempt %d: %s", row_id, attempts, text)
            if self._transition(row_id, "sending", "failed", note=PERMANENT_NOTE + text):
                return Outcome("failed", attempts, error=text, permanent=True, code=error.code)
            return Outcome("lost", attempts, error=text, code=error.code)
        if attempts >= self.max_attempts:
            log.warning("delivery %s failed after %d attempts: %s", row_id, attempts, text)
            if self._transition(row_id, "sending", "failed", note=text):
                return Outcome("failed", attempts, error=text, code=error.code)
            return Outcome("lost", attempts, error=text, code=error.code)
        # A later claim tries again; unless Slack refused this one, its lookup by tag guards against a
        # post that did land after all. A refusal may be marked "nothing posted" because this attempt
        # only posted after every earlier one was known not to have landed (it was the first, its
        # lookup found nothing, or the one before was a refusal too).
        note = text if error.may_have_posted or earlier_may_have_posted else REFUSED_NOTE + text
        if self._transition(row_id, "sending", "pending", note=note):
            return Outcome("pending", attempts, error=text, code=error.code)
        return Outcome("lost", attempts, error=text, code=error.code)

    def _unknown(self, row_id: int, attempts: int, error: ChatError, *, first: bool) -> Outcome:
        """Back to pending without counting as a failure: Slack may be healthy, we only cannot look."""
        text = str(error)
        log.warning("delivery %s: cannot check whether an earlier attempt posted (%s); retrying later", row_id, text)
        if self._transition(row_id, "sending", "pending", note=UNKNOWN_NOTE + text):
            return Outcome("pending", attempts, error=text, unknown=True, first_unknown=first, code=error.code)
        return Outcome("lost", attempts, error=text, code=error.code)

    # ---- the caller's decisions --------------------------------------------------------------

    def skip(self, row_id: int, note: str) -> bool:
        """pending -> skipped (too late, or nothing to post); True for the one caller that did it."""
        return self._transition(row_id, "pending", "skipped", note=note)

    def give_up(self, row_id: int, note: str) -> bool:
        """pending -> failed without another attempt (e.g. a retry that is now past its grace)."""
        return self._transition(row_id, "pending", "failed", note=note)

    def release_stuck(self, kinds: Iterable[str]) -> int:
        """Rows of these kinds claimed over STUCK_AFTER ago and never marked go back to pending."""
        with self.db.session() as s:
            result = s.execute(update(Delivery).where(
                Delivery.status == "sending", Delivery.kind.in_(tuple(kinds)),
                Delivery.claimed_at < self.clock.now() - self.stuck_after,
            ).values(status="pending", note="released: the process posting it stopped mid-post"))
            return result.rowcount

    def _transition(self, row_id: int, old: str, new: str, note: str | None = None) -> bool:
        with self.db.session() as s:
            result = s.execute(update(Delivery).where(Delivery.id == row_id, Delivery.status == old)
                               .values(status=new, note=note))
            return result.rowcount == 1
