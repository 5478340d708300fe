"""Study buddies: each week, at the lesson post, the opted-in members of a cohort are put in pairs (a
triple when the count is odd), each group in a group DM with a prompt about the week's lesson.

Who: current members (never one who left) who opted in (`/study buddies on`), are not snoozed, in a
cohort whose organizers have not turned buddies off. How (``form_groups``), in this order of priority:
1. pairs that met before are avoided while fresh ones exist (the fewest repeats, the least-met first);
2. nobody is the third of a triple two weeks running (the odd one out rotates);
3. people with close UTC offsets go together (the workspace's users.info tz_offset), where the first
   two leave a choice.

Exactly once, across two clocks and crashes, through services/posting.py: the week's pairing is a row
of deliveries (kind 'buddies', keyed by the lesson) whose INSERT is the claim, and the groups are
written in one transaction with it marked after; each group's DM is a row of its own (kind
'buddy_group'), claimed, looked up by its tag after a failed attempt, and marked. Members are checked
again just before their group's DM: someone who left or opted out in between is never messaged."""

from __future__ import annotations

import itertools
import logging
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Iterable
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from studybot.curricula import get_curriculum
from studybot.db.engine import Database
from studybot.db.models import BuddyGroup, BuddyPreference, BuddySetting, Cohort, Delivery, Membership
from studybot.errors import ChatError, Conflict, NotFound
from studybot.messages import render
from studybot.ports import Chat
from studybot.services.accommodations import weeks
from studybot.services.cohorts import Cohorts, CohortView
from studybot.services.posting import ExactlyOncePoster, next_attempt_at
from studybot.time_source import Clock

log = logging.getLogger(__name__)

ROUND_KIND, GROUP_KIND = "buddies", "buddy_group"  # deliveries kinds: the week's pairing, one group's DM
KINDS = (ROUND_KIND, GROUP_KIND)
MAX_SNOOZE_WEEKS = 12
SEARCH_BUDGET = 4000  # groupings tried per pairing: exhaustive for a study group, greedy-first beyond
ALL_TRIPLES_UP_TO = 13  # members left: up to this, every triple is tried; above, the best few
TRIPLES_TRIED = 12  # the triples tried first when there are more members left than that
MAX_GROUP_DM = 8  # Slack's multi-person DMs hold 8 people besides the bot; buddy groups are 2-3


@dataclass(frozen=True)
class BuddyStatus:
    cohort: CohortView
    opted_in: bool
    snoozed_until: datetime | None
    enabled: bool
    opted_in_count: int  # members opted in now (snoozed ones included)

    @property
    def snoozed_local(self) -> datetime | None:
        return self.snoozed_until.astimezone(ZoneInfo(self.cohort.timezone)) if self.snoozed_until else None


@dataclass(frozen=True)
class Cost:
    """How good a grouping is, compared as a tuple: repeats first, then triples again, then time zones."""

    repeats: int = 0  # sum over the groups' pairs of how often that pair met before
    triple_again: int = 0  # members put in a triple who were in one last week
    tz_spread: float = 0.0  # hours between the earliest and latest known offset in each group, summed

    def __add__(self, other: "Cost") -> "Cost":
        return Cost(self.repeats + other.repeats, self.triple_again + other.triple_again,
                    self.tz_spread + other.tz_spread)

    def key(self) -> tuple:
        return (self.repeats, self.triple_again, round(self.tz_spread, 6))


def group_cost(group: tuple[str, ...], met: Counter, last_triple: set[str], offsets: dict[str, int | None]) -> Cost:
    repeats = sum(met[frozenset(pair)] for pair in itertools.combinations(group, 2))
    again = sum(member in last_triple for member in group) if len(group) == 3 else 0
    known = [offsets[m] for m in group if offsets.get(m) is not None]
    spread = (max(known) - min(known)) / 3600 if len(known) > 1 else 0.0
    return Cost(repeats, again, spread)


def form_groups(members: Iterable[str], met: Counter, last_triple: set[str] = frozenset(),
                offsets: dict[str, int | None] | None = None, budget: int = SEARCH_BUDGET) -> list[tuple[str, ...]]:
    """Pairs of ``members`` (one triple when their number is odd) at the lowest Cost: a depth-first
    search, best candidate first (so its first answer is the greedy one), pruned by the best so far,
    stopped after ``budget`` nodes. Deterministic: ties go to the order of the ids."""
    people = sorted(set(members))
    offsets = offsets or {}
    if len(people) < 2:
        return [tuple(people)] if people else []
    best: list = [None, None]  # cost key, groups
    nodes = [0]

    def search(left: list[str], cost: Cost, groups: list[tuple[str, ...]], triple_open: bool) -> None:
        if best[0] is not None and cost.key() >= best[0]:
            return
        if not left:
            best[0], best[1] = cost.key(), list(groups)
            return
        nodes[0] += 1
        if nodes[0] > budget and best[0] is not None:
            return
        first, rest = left[0], left[1:]
        candidates = [(first, other) for other in rest] if len(left) != 3 or not triple_open else []
        if triple_open and len(left) % 2 == 1:
            triples = [(first, a, b) for a, b in itertools.combinations(rest, 2)]
            if len(left) > ALL_TRIPLES_UP_TO:
                triples = sorted(triples, key=lambda g: group_cost(g, met, last_triple, offsets).key())[:TRIPLES_TRIED]
            candidates += triples
        scored = sorted(((group_cost(g, met, last_triple, offsets), g) for g in candidates), key=lambda c: c[0].key())
        for group_cost_, group in scored:
            remaining = [m for m in rest if m not in group]
            if len(remaining) == 1:  # a lone member left over: only a triple can take them, elsewhere
                continue
            search(remaining, cost + group_cost_, groups + [group], triple_open and len(group) == 2)

    search(people, Cost(), [], len(people) % 2 == 1)
    return best[1]


class Buddies:
    def __init__(self, db: Database, chat: Chat, clock: Clock, cohorts: Cohorts, poster: ExactlyOncePoster,
                 late_grace: timedelta = timedelta(hours=12), curricula_dir: Path | None = None) -> None:
        self.db, self.chat, self.clock, self.cohorts, self.poster = db, chat, clock, cohorts, poster
        self.late_grace, self.curricula_dir = late_grace, curricula_dir

    # ---- learners --------------------------------------------------------------------------

    def opt(self, user_id: str, on: bool, name: str | None) -> BuddyStatus:
        with self.db.session() as s:
            cohort = self._member_cohort(s, user_id, name)
            pref = self._preference(s, cohort.id, user_id)
            if on and not self._enabled(s, cohort.id):
                raise Conflict(f"The organizers of {cohort.name} have turned study buddies off.")
            pref.opted_in, pref.snoozed_until, pref.changed_at = on, None, self.clock.now()
            return self._status(s, cohort, pref)

    def snooze(self, user_id: str, weeks_raw: str | None, name: str | None) -> BuddyStatus:
        count = weeks(weeks_raw or "", "weeks", MAX_SNOOZE_WEEKS)
        with self.db.session() as s:
            cohort = self._member_cohort(s, user_id, name)
            pref = self._preference(s, cohort.id, user_id)
            if not pref.opted_in:
                raise Conflict(f"You are not in study buddies in {cohort.name}: `/study buddies on` joins them.")
            pref.snoozed_until, pref.changed_at = self.clock.now() + timedelta(weeks=count), self.clock.now()
            return self._status(s, cohort, pref)

    # ---- organizers ------------------------------------------------------------------------

    def set_enabled(self, user_id: str, name: str, on: bool) -> BuddyStatus:
        with self.db.session() as s:
            cohort = self.cohorts.get(s, name)
            self.cohorts.require_organizer(user_id, cohort, "turn study buddies on or off")
            setting = s.get(BuddySetting, cohort.id) or BuddySetting(cohort_id=cohort.id)
            setting.enabled, setting.changed_by, setting.changed_at = on, user_id, self.clock.now()
            s.add(setting)
            s.flush()
            return self._status(s, cohort, None)

    # ---- the weekly pairing (called by services/deliveries.py each tick, for the team in scope) -----

    def next_due(self) -> datetime | None:
        with self.db.session() as s:
            rows = s.execute(select(Delivery.due_at, Delivery.claimed_at, Delivery.attempts).join(Cohort).where(
                Delivery.status == "pending", Delivery.kind.in_(KINDS), Cohort.status == "active")).all()
        return min((next_attempt_at(*row) for row in rows), default=None)

    def tick(self, now: datetime) -> list[str]:
        """Pair the cohorts whose lesson just posted, then send the groups' DMs that are due.
        Returns "cohort:lesson:user,user" for each group DM sent."""
        self.poster.release_stuck(KINDS)
        for cohort_id, lesson_key, sent_at in self._lessons_to_pair(now):
            row_id = self.poster.claim_new(cohort_id=cohort_id, kind=ROUND_KIND, key=lesson_key, due_at=sent_at)
            if row_id is not None:  # this process won the week's pairing
                self._pair(row_id)
        with self.db.session() as s:
            released = list(s.scalars(select(Delivery.id).join(Cohort).where(
                Delivery.kind == ROUND_KIND, Delivery.status == "pending")))
        for row_id in released:  # a pairing whose process died before it was written
            if self.poster.claim(row_id):
                self._pair(row_id)
        sent = []
        for row_id in self._groups_due(now):
            try:
                key = self._send_group(row_id, now)
            except Exception:  # one bad group must not stop the others; the row stays retryable
                log.exception("buddy group %s failed", row_id)
                continue
            if key:
                sent.append(key)
        return sent

    def _lessons_to_pair(self, now: datetime) -> list[tuple[int, str, datetime]]:
        """Each active cohort's latest lesson, when it posted within the grace and has no pairing yet."""
        with self.db.session() as s:
            lessons = s.execute(select(Delivery.cohort_id, Delivery.lesson_key, Delivery.sent_at, Delivery.position)
                                .join(Cohort).where(Delivery.kind == "lesson", Delivery.status == "sent",
                                                    Cohort.status == "active")).all()
            paired = set(s.execute(select(Delivery.cohort_id, Delivery.lesson_key).join(Cohort).where(
                Delivery.kind == ROUND_KIND)).all())
            disabled = set(s.scalars(select(BuddySetting.cohort_id).join(Cohort).where(BuddySetting.enabled.is_(False))))
        latest: dict[int, tuple] = {}
        for cohort_id, key, sent_at, position in lessons:
            if cohort_id not in latest or position > latest[cohort_id][3]:
                latest[cohort_id] = (cohort_id, key, sent_at, position)
        return [(cohort_id, key, sent_at) for cohort_id, key, sent_at, _ in latest.values()
                if (cohort_id, key) not in paired and cohort_id not in disabled
                and sent_at is not None and now - sent_at <= self.late_grace]

    def _pair(self, round_id: int) -> None:
        """Form and store the week's groups for a claimed pairing row (once: its groups are written together)."""
        with self.db.session() as s:
            pairing = s.get(Delivery, round_id)
            cohort_id, lesson_key, position = pairing.cohort_id, pairing.lesson_key, pairing.position
            done = s.scalar(select(BuddyGroup.id).where(BuddyGroup.cohort_id == cohort_id,
                                                        BuddyGroup.lesson_key == lesson_key).limit(1)) is not None
            eligible = sorted(self._eligible(s, cohort_id, self.clock.now()))
            met, last_triple = self._history(s, cohort_id)
        if not done:  # a pairing whose process died after writing its groups only needs marking
            offsets = {user: self._offset(user) for user in eligible}  # Slack calls: outside the transaction
            groups = form_groups(eligible, met, last_triple, offsets)
            with self.db.session() as s:
                for index, group in enumerate(groups):
                    row = Delivery(cohort_id=cohort_id, lesson_key=f"{lesson_key}#{index}", position=position,
                                   kind=GROUP_KIND, due_at=self.clock.now(), status="pending", attempts=0)
                    s.add(row)
                    s.flush()
                    s.add(BuddyGroup(cohort_id=cohort_id, lesson_key=lesson_key, delivery_id=row.id,
                                     user_ids=",".join(group), created_at=self.clock.now()))
            log.info("buddies for cohort %s lesson %s: %d groups of %d members", cohort_id, lesson_key, len(groups),
                     len(eligible))
        self.poster.mark_sent(round_id)

    def _offset(self, user_id: str) -> int | None:
        try:
            return self.chat.tz_offset(user_id)
        except ChatError:
            return None

    def _groups_due(self, now: datetime) -> list[int]:
        with self.db.session() as s:
            rows = s.execute(select(Delivery.id, Delivery.due_at, Delivery.claimed_at, Delivery.attempts)
                             .join(Cohort).where(Delivery.kind == GROUP_KIND, Delivery.status == "pending",
                                                 Cohort.status == "active")).all()
        timed = sorted((next_attempt_at(due, claimed, attempts), row_id) for row_id, due, claimed, attempts in rows)
        return [row_id for at, row_id in timed if at <= now]

    def _send_group(self, row_id: int, now: datetime) -> str | None:
        with self.db.session() as s:
            delivery = s.get(Delivery, row_id)
            cohort = delivery.cohort
            group = s.scalar(select(BuddyGroup).where(BuddyGroup.delivery_id == row_id))
            planned = group.user_ids.split(",")
            lesson_key = group.lesson_key
            if now - delivery.due_at > self.late_grace:
                self.poster.skip(row_id, note="buddy group not sent: too late")
                return None
            # Checked again now: whoever left, opted out or snoozed since the pairing is never messaged.
            still = [user for user in planned if user in self._eligible(s, cohort.id, now)]
            enabled = self._enabled(s, cohort.id)
            name, channel_name = cohort.name, cohort.channel_name
        if not enabled or not still or (len(planned) > 1 and len(still) < 2):
            self.poster.skip(row_id, note=f"buddy group not sent: {len(still)} of {len(planned)} still opted in"
                                          + ("" if enabled else ", buddies turned off"))
            return None
        try:
            channel = self.chat.open_group_dm(still) if len(still) > 1 else self.chat.open_dm(still[0])
        except ChatError as error:
            if error.permanent:
                self.poster.skip(row_id, note=f"buddy group not sent: {error.message}")
            log.warning("could not open the group DM of %s for %s: %s", ",".join(still), name, error.message)
            return None
        if not self.poster.claim(row_id):
            return None
        view = self.cohorts.view(still[0], name)
        slot = next(slot for slot in view.lessons if slot.key == lesson_key)
        outcome = self.poster.post(row_id, channel, lambda: render(
            "buddy_intro", cohort=view, slot=slot, lesson=slot.lesson, members=still, alone=len(still) == 1))
        if outcome.status != "sent":
            log.warning("buddy group DM for %s lesson %s: %s (%s)", name, lesson_key, outcome.status, outcome.error)
            return None
        return f"{name}:{lesson_key}:{','.join(still)}"

    # ---- who, and who met whom -------------------------------------------------------------

    @staticmethod
    def _eligible(s: Session, cohort_id: int, now: datetime) -> set[str]:
        """Current members who opted in and are not snoozed at ``now``."""
        rows = s.execute(select(BuddyPreference.user_id, BuddyPreference.snoozed_until).join(
            Membership, (Membership.cohort_id == BuddyPreference.cohort_id) & (Membership.user_id == BuddyPreference.user_id)
        ).join(Cohort, Cohort.id == BuddyPreference.cohort_id).where(
            BuddyPreference.cohort_id == cohort_id, BuddyPreference.opted_in.is_(True),
            Membership.left_at.is_(None))).all()
        return {user for user, snoozed in rows if snoozed is None or snoozed <= now}

    @staticmethod
    def _history(s: Session, cohort_id: int) -> tuple[Counter, set[str]]:
        """How often each pair met in a group DM that went out, and who was in last week's triple."""
        rows = s.execute(select(BuddyGroup.lesson_key, BuddyGroup.user_ids, BuddyGroup.created_at)
                         .join(Delivery, Delivery.id == BuddyGroup.delivery_id).join(Cohort, Cohort.id == BuddyGroup.cohort_id)
                         .where(BuddyGroup.cohort_id == cohort_id, Delivery.status == "sent")
                         .order_by(BuddyGroup.created_at, BuddyGroup.id)).all()
        met: Counter = Counter()
        for _, users, _ in rows:
            for pair in itertools.combinations(users.split(","), 2):
                met[frozenset(pair)] += 1
        last_key = rows[-1][0] if rows else None
        last_triple = {user for key, users, _ in rows if key == last_key and len(users.split(",")) == 3
                       for user in users.split(",")}
        return met, last_triple

    def groups_of(self, cohort_name: str, lesson_key: str) -> list[tuple[str, ...]]:
        """The groups whose DM went out for a lesson (tests, the shell, the digest)."""
        with self.db.session() as s:
            cohort = self.cohorts.get(s, cohort_name)
            rows = s.scalars(select(BuddyGroup.user_ids).join(Delivery, Delivery.id == BuddyGroup.delivery_id).where(
                BuddyGroup.cohort_id == cohort.id, BuddyGroup.lesson_key == lesson_key, Delivery.status == "sent")
                .order_by(BuddyGroup.id))
            return [tuple(users.split(",")) for users in rows]

    # ---- internals -------------------------------------------------------------------------

    def _member_cohort(self, s: Session, user_id: str, name: str | None) -> Cohort:
        cohort = self.cohorts.get(s, name) if name else self.cohorts.only_cohort_of(s, user_id)
        member = s.scalar(select(Membership.id).where(Membership.cohort_id == cohort.id, Membership.user_id == user_id,
                                                      Membership.left_at.is_(None)))
        if member is None:
            raise NotFound(f"You are not in {cohort.name}: `/study join {cohort.name}` first.")
        return cohort

    def _preference(self, s: Session, cohort_id: int, user_id: str) -> BuddyPreference:
        pref = s.scalar(select(BuddyPreference).where(BuddyPreference.cohort_id == cohort_id,
                                                      BuddyPreference.user_id == user_id))
        if pref is None:
            pref = BuddyPreference(cohort_id=cohort_id, user_id=user_id, opted_in=False, changed_at=self.clock.now())
            s.add(pref)
        return pref

    @staticmethod
    def _enabled(s: Session, cohort_id: int) -> bool:
        setting = s.get(BuddySetting, cohort_id)
        return setting is None or setting.enabled

    def _status(self, s: Session, cohort: Cohort, pref: BuddyPreference | None) -> BuddyStatus:
        s.flush()
        count = len(set(s.scalars(select(BuddyPreference.user_id).join(
            Membership, (Membership.cohort_id == BuddyPreference.cohort_id) & (Membership.user_id == BuddyPreference.user_id)
        ).where(BuddyPreference.cohort_id == cohort.id, BuddyPreference.opted_in.is_(True),
                Membership.left_at.is_(None)))))
        return BuddyStatus(self.cohorts._view(s, cohort), bool(pref and pref.opted_in),
                           pref.snoozed_until if pref else None, self._enabled(s, cohort.id), count)

