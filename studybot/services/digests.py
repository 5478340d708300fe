"""The weekly progress digest for a cohort's organizers, and the same report on demand.

`/study cohort digest NAME --weekday mon --time 09:00 [--channel #organizers]` (``set_schedule``; `--off`
stops it): at that slot, in the cohort's timezone, each named organizer gets the digest in a DM, or, when
the cohort names a private channel, it is posted there once. `/study cohort report NAME` shows it now, to
the organizer who asks (``report``), with the picture uploaded to their DM (the shell writes the file and
says where).

What it says, for the week that ends at the slot (``build``):
- per posted lesson with an exercise: the current members who submitted it and who passed it (passing as
  services/progress.py counts it), and its question thread's replies and the members who wrote them;
- who was active in the week (a submission, a `/study check` run or a thread reply), who went quiet (a
  member since before the week, with nothing in it) and since when (their last activity), who joined and
  who left;
- the trend: the week's submissions, passes and active members against the week before;
- a PNG (services/digest_plot.py): submissions and passes per week, and the completion funnel.

Exactly once: each post is a deliveries row (kind 'digest'; lesson_key the ISO week, '2027-W03', for the
channel post, or '2027-W03@17' for the DM to the named organizer whose cohort_organizers row is 17), made
when it falls due with ``ExactlyOncePoster.claim_new`` (so one ticker owns it), posted and marked by the
poster like the weekly boards. The picture follows its post as an upload into the same conversation, at
most once (a 'digest_plot' row with the same key is claimed before the upload; a failed upload is not
repeated, since a file that may have landed cannot be looked up by a tag). A slot found later than the
grace is not posted late; nothing goes out before a lesson was posted, once the course is over, or for a
cohort without members (the row is skipped, saying why)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import and_, case, select, update
from sqlalchemy.orm import Session

from studybot.db.engine import Database
from studybot.db.models import Cohort, CohortDigest, CohortOrganizer, Delivery, Membership, Submission
from studybot.errors import ChatError, FieldError
from studybot.messages import limits, render
from studybot.ports import Chat
from studybot.services import validation, weekly_slots
from studybot.services.cohorts import CohortView, Cohorts
from studybot.services.digest_plot import FunnelBar, WeekBar, digest_png
from studybot.services.lesson_threads import LessonThreads
from studybot.services.posting import ExactlyOncePoster
from studybot.services.progress import passing
from studybot.services.workspaces import for_each_team
from studybot.time_source import Clock

log = logging.getLogger(__name__)

KIND = "digest"  # deliveries.kind of a digest post
PLOT_KIND = "digest_plot"  # deliveries.kind of the upload of its picture (at most once)
WEEK = timedelta(days=7)  # the period a digest covers, and the trend's unit
PLOT_WEEKS = 8  # weeks shown in the picture's left panel, at most
AFTER_COURSE = timedelta(days=14)  # digests stop this long after the last lesson was posted


@dataclass(frozen=True)
class LessonLine:
    key: str
    title: str
    exercise: str | None
    submitted: tuple[str, ...]  # user ids of current members
    passed: tuple[str, ...]
    replies: int  # in the lesson post's thread
    participants: int  # members (anyone, in fact) who wrote them


@dataclass(frozen=True)
class QuietMember:
    user_id: str
    since: datetime | None  # their last activity; None: nothing since they joined
    joined: datetime


@dataclass(frozen=True)
class WeekCount:
    start: datetime
    submissions: int
    passes: int
    active: int


@dataclass(frozen=True)
class Digest:
    cohort: CohortView
    start: datetime  # the week reported on, cohort-local: [start, end)
    end: datetime
    members: int
    lessons: tuple[LessonLine, ...]
    active: tuple[str, ...]
    quiet: tuple[QuietMember, ...]
    joined: tuple[str, ...]
    left: tuple[str, ...]
    this_week: WeekCount
    last_week: WeekCount
    weeks: tuple[WeekCount, ...]  # oldest first, ending with this_week
    names: dict[str, str] = field(default_factory=dict)  # user id -> display name (never a mention)

    def delta(self, what: str) -> int:
        return getattr(self.this_week, what) - getattr(self.last_week, what)


class Digests:
    def __init__(self, db: Database, chat: Chat, clock: Clock, cohorts: Cohorts, threads: LessonThreads,
                 poster: ExactlyOncePoster, late_grace: timedelta = timedelta(hours=12)) -> None:
        self.db, self.chat, self.clock, self.cohorts, self.threads = db, chat, clock, cohorts, threads
        self.poster, self.late_grace = poster, late_grace

    # ---- organizer commands ----------------------------------------------------------------

    def set_schedule(self, user_id: str, cohort_name: str, *, weekday: str | None = None, at: str | None = None,
                     channel: str | None = None, off: bool = False) -> dict[str, Any]:
        """`/study cohort digest NAME --weekday mon --time 09:00 [--channel #private] | --off`."""
        day, when = validation.weekly_slot(
            weekday, at, off=off, also_given=bool(channel),
            usage="/study cohort digest NAME --weekday mon --time 09:00 [--channel #organizers]")
        with self.db.session() as s:
            cohort = self.cohorts.get(s, cohort_name)
            self.cohorts.require_organizer(user_id, cohort, "schedule the organizers' digest")
            cohort_channel = cohort.channel_id
        target = None
        if channel and not off:
            target = self.chat.resolve_channel(channel)
            if target.id == cohort_channel:
                raise FieldError("channel", f"#{target.name} is the cohort's own channel: the digest names who went "
                                 "quiet, so it goes to organizers only. Name a private channel, or leave "
                                 "--channel out for a DM to each organizer.", value=channel)
            if not target.is_private:
                raise FieldError("channel", f"#{target.name} is public: the digest names who went quiet, so it goes "
                                 "to organizers only. Name a private channel, or leave --channel out for a DM to "
                                 "each organizer.", value=channel)
            self.cohorts.require_postable(target, raw=channel)
        with self.db.session() as s:
            cohort = self.cohorts.get(s, cohort_name)
            row = s.get(CohortDigest, cohort.id)
            if off:
                if row is not None:
                    s.delete(row)
                return self._schedule_view(cohort, None)
            if row is None:
                row = CohortDigest(cohort_id=cohort.id)
                s.add(row)
            row.weekday = day
            row.post_time = when.strftime("%H:%M") if when else cohort.post_time
            row.channel_id, row.channel_name = (target.id, target.name) if target else (None, None)
            row.set_by, row.set_at = user_id, self.clock.now()
            s.flush()
            return self._schedule_view(cohort, row)

    def report(self, user_id: str, cohort_name: str) -> dict[str, Any]:
        """`/study cohort report NAME`: the digest of the last seven days, now; its picture to the caller's DM."""
        with self.db.session() as s:
            cohort = self.cohorts.get(s, cohort_name)
            self.cohorts.require_organizer(user_id, cohort, "see the cohort's report")
            cohort_id = cohort.id
        digest = self.build(cohort_id, self.clock.now())
        if digest.members == 0:
            raise FieldError("name", f"{digest.cohort.name} has no members yet, so there is nothing to report. "
                             f"Learners join with `/study join {digest.cohort.name}`.", value=cohort_name)
        try:
            plot = self.chat.upload_file(user_id, self.plot_filename(digest), self.plot(digest), self.plot_title(digest))
        except ChatError as error:
            log.warning("the report's picture for %s could not be sent: %s", user_id, error.message)
            plot = None
        return {"digest": digest, "plot": plot, "report": True}

    # ---- the numbers -----------------------------------------------------------------------

    def build(self, cohort_id: int, end: datetime) -> Digest:
        """The digest of the week [end - 7 days, end), as of ``end``."""
        with self.db.session() as s:
            cohort = s.get(Cohort, cohort_id)
            view = self.cohorts.view(cohort.created_by, cohort.name)
            memberships = list(s.scalars(select(Membership).where(Membership.cohort_id == cohort_id)))
        zone = ZoneInfo(view.timezone)
        end = end.astimezone(zone)
        start = end - WEEK
        current = sorted(m.user_id for m in memberships if m.left_at is None)
        everyone = sorted({m.user_id for m in memberships})
        posted = [slot for slot in view.lessons if slot.status == "sent" and slot.local < end]
        exercises = {slot.exercise for slot in posted if slot.exercise}
        with self.db.session() as s:
            rows = s.execute(select(Submission.user_id, Submission.exercise_id, Submission.created_at,
                                    Submission.lane, *_passed_column()).where(
                Submission.user_id.in_(everyone or [""]), Submission.lane.in_(("ranked", "check")),
                Submission.exercise_id.in_(sorted(exercises) or [""]), Submission.created_at < end)).all()
        threads = self.threads.counts(cohort_id, until=end)
        lessons = []
        members = set(current)
        for slot in posted:
            if not slot.exercise:
                continue
            ranked = [r for r in rows if r.exercise_id == slot.exercise and r.lane == "ranked" and r.user_id in members]
            counts = threads.get(slot.key)
            lessons.append(LessonLine(
                slot.key, slot.title, slot.exercise,
                submitted=tuple(sorted({r.user_id for r in ranked})),
                passed=tuple(sorted({r.user_id for r in ranked if r.passed})),
                replies=counts.replies if counts else 0, participants=len(counts.participants) if counts else 0))
        activity: dict[str, list[datetime]] = {}
        for row in rows:
            activity.setdefault(row.user_id, []).append(row.created_at)
        for user_id, at in self.threads.reply_times(cohort_id, since=end - WEEK * (PLOT_WEEKS + 1)):
            if at < end:
                activity.setdefault(user_id, []).append(at)
        last_replies = self.threads.last_replies(cohort_id)

        def week(week_start: datetime) -> WeekCount:
            week_end = week_start + WEEK
            in_week = [r for r in rows if week_start <= r.created_at < week_end and r.lane == "ranked"]
            active = {user for user in current if any(week_start <= at < week_end for at in activity.get(user, []))}
            return WeekCount(week_start, len(in_week), sum(1 for r in in_week if r.passed), len(active))

        first_post = min((slot.local for slot in posted), default=start)
        shown = max(1, min(PLOT_WEEKS, -(-(end - first_post) // WEEK)))
        weeks = tuple(week(end - WEEK * (i + 1)) for i in reversed(range(shown)))
        this_week, last_week = weeks[-1], week(start - WEEK)
        active = tuple(u for u in current if any(start <= at < end for at in activity.get(u, [])))
        joined_at = {m.user_id: m.joined_at for m in memberships}
        quiet = []
        for user in current:
            if user in active or joined_at[user] >= start:
                continue
            earlier = [at for at in activity.get(user, []) if at < start]
            if user in last_replies and last_replies[user] < start:
                earlier.append(last_replies[user])
            quiet.append(QuietMember(user, max(earlier).astimezone(zone) if earlier else None,
                                     joined_at[user].astimezone(zone)))
        quiet.sort(key=lambda q: (q.since is not None, q.since or q.joined, q.user_id))  # the longest quiet first
        joined = tuple(sorted(m.user_id for m in memberships if m.left_at is None and start <= m.joined_at < end))
        left = tuple(sorted(m.user_id for m in memberships if m.left_at is not None and start <= m.left_at < end))
        digest = Digest(view, start, end, len(current), tuple(lessons), active, tuple(quiet), joined, left,
                        this_week, last_week, weeks)
        digest.names.update(self._names(digest))
        return digest

    def _names(self, digest: Digest) -> dict[str, str]:
        """Display names of the people the digest shows (an organizer reads names; nobody is pinged)."""
        shown = set(digest.active[:limits.DIGEST_NAMES_SHOWN]) | {q.user_id for q in digest.quiet[:limits.DIGEST_NAMES_SHOWN]}
        shown |= set(digest.joined[:limits.DIGEST_NAMES_SHOWN]) | set(digest.left[:limits.DIGEST_NAMES_SHOWN])
        for line in digest.lessons:
            shown |= set(line.passed[:limits.DIGEST_NAMES_SHOWN]) | set(line.submitted[:limits.DIGEST_NAMES_SHOWN])
        return {user_id: self.chat.display_name(user_id) for user_id in sorted(shown)}

    def plot(self, digest: Digest) -> bytes:
        weeks = [WeekBar(w.start.strftime("%d %b"), w.submissions, w.passes) for w in digest.weeks]
        funnel = [FunnelBar(line.key, len(line.submitted), len(line.passed)) for line in digest.lessons]
        return digest_png(self.plot_title(digest), weeks, funnel, digest.members)

    @staticmethod
    def plot_title(digest: Digest) -> str:
        return (f"{digest.cohort.name}: week of {digest.start:%a %d %b %Y} to {digest.end:%a %d %b %Y}, "
                f"{digest.members} members")

    @staticmethod
    def plot_filename(digest: Digest) -> str:
        return f"digest-{digest.cohort.name}-{digest.end:%Y-%m-%d}.png"

    # ---- the weekly post -------------------------------------------------------------------

    def tick(self) -> list[str]:
        """Post each due digest once; returns "cohort:2027-W03" (or "...@organizer") keys posted by this call."""
        return [key for keys in for_each_team(self.db, self._tick, "organizer digests") for key in keys]

    def next_slot(self, after: datetime) -> datetime | None:
        """The first digest slot of any active cohort strictly after ``after`` (the shell steps its clock to it)."""
        slots = for_each_team(self.db, lambda: self._next_slot(after), "next digest slot")
        return min(filter(None, slots), default=None)

    def _next_slot(self, after: datetime) -> datetime | None:
        with self.db.session() as s:
            rows = s.execute(select(CohortDigest.weekday, CohortDigest.post_time, Cohort.timezone).join(
                Cohort, Cohort.id == CohortDigest.cohort_id).where(Cohort.status == "active")).all()
        found = []
        for weekday, post_time, tz in rows:
            zone = ZoneInfo(tz)
            today = after.astimezone(zone).date()
            monday = today - timedelta(days=today.weekday())
            for week_start in (monday, monday + weekly_slots.WEEK):
                due = weekly_slots.local_to_utc(week_start + timedelta(days=weekday), _hhmm(post_time), zone)
                if due > after:
                    found.append(due)
                    break
        return min(found, default=None)

    def _tick(self) -> list[str]:
        now = self.clock.now()
        self.poster.release_stuck((KIND,))
        with self.db.session() as s:
            cohort_ids = list(s.scalars(select(CohortDigest.cohort_id).join(
                Cohort, Cohort.id == CohortDigest.cohort_id).where(Cohort.status == "active").order_by(Cohort.id)))
        posted = []
        for cohort_id in cohort_ids:
            try:
                posted += self._tick_cohort(cohort_id, now)
            except Exception:  # one cohort's trouble must not stop the others; its rows stay retryable
                log.exception("digest of cohort %s failed", cohort_id)
        return posted

    def _tick_cohort(self, cohort_id: int, now: datetime) -> list[str]:
        with self.db.session() as s:
            cohort, schedule = s.get(Cohort, cohort_id), s.get(CohortDigest, cohort_id)
            zone = ZoneInfo(cohort.timezone)
            today = now.astimezone(zone).date()
            monday = today - timedelta(days=today.weekday())
            posted = []
            for week_start in (monday - weekly_slots.WEEK, monday):  # last week's slot may still be within grace
                day = week_start + timedelta(days=schedule.weekday)
                due = weekly_slots.local_to_utc(day, _hhmm(schedule.post_time), zone)
                if due > now:
                    continue
                digest: list[Digest] = []  # built once per slot, for however many recipients need it

                def built(due=due) -> Digest:
                    if not digest:
                        digest.append(self.build(cohort_id, due))
                    return digest[0]

                for key, channel_of in self._recipients(s, cohort, schedule, _week_key(day)):
                    label = f"{cohort.name}:{key}"
                    if self._post_one(s, cohort, key, due, now, channel_of, built):
                        posted.append(label)
            return posted

    @staticmethod
    def _recipients(s: Session, cohort: Cohort, schedule: CohortDigest, week: str):
        """(delivery key, a function giving the conversation to post in) per recipient of the week's digest."""
        if schedule.channel_id:
            return [(week, lambda chat, channel=schedule.channel_id: channel)]
        organizers = s.scalars(select(CohortOrganizer).where(CohortOrganizer.cohort_id == cohort.id)
                               .order_by(CohortOrganizer.id))
        return [(f"{week}@{o.id}", lambda chat, user=o.user_id: chat.open_dm(user)) for o in organizers]

    def _post_one(self, s: Session, cohort: Cohort, key: str, due: datetime, now: datetime, channel_of, built) -> bool:
        row = s.scalar(select(Delivery).where(Delivery.cohort_id == cohort.id, Delivery.lesson_key == key,
                                              Delivery.kind == KIND))
        if row is None:
            if now - due > self.late_grace:
                return False  # missed (the bot was down past the grace): no late digest
            why_not = self._nothing_to_post(s, cohort, due)
            if why_not:
                self.poster.skip_new(cohort_id=cohort.id, kind=KIND, key=key, due_at=due, note=why_not)
                return False
            try:
                channel_id = channel_of(self.chat)  # before the claim: a DM that cannot be opened is retried later
            except ChatError as error:
                log.warning("digest %s:%s: no conversation to post in (%s)", cohort.name, key, error.message)
                return False
            row_id = self.poster.claim_new(cohort_id=cohort.id, kind=KIND, key=key, due_at=due)
            if row_id is None:
                return False  # another ticker owns it
        elif row.status == "pending":  # an earlier attempt failed
            if now - row.due_at > self.late_grace:
                self.poster.give_up(row.id, note="still not posted after the grace")
                return False
            try:
                channel_id = channel_of(self.chat)
            except ChatError:
                return False
            if not self.poster.claim(row.id):
                return False
            row_id = row.id
        else:
            return False
        outcome = self.poster.post(row_id, channel_id, lambda: render("digest", digest=built(), plot=None, report=False))
        if outcome.status != "sent":
            log.warning("digest %s:%s: %s (%s)", cohort.name, key, outcome.error, outcome.status)
            return False
        self._upload_plot(cohort.id, key, due, channel_id, built)
        return True

    def _upload_plot(self, cohort_id: int, key: str, due: datetime, channel_id: str, built) -> None:
        row_id = self.poster.claim_new(cohort_id=cohort_id, kind=PLOT_KIND, key=key, due_at=due)
        if row_id is None:
            return  # uploaded (or tried) already
        digest = built()
        try:
            self.chat.upload_to_channel(channel_id, self.plot_filename(digest), self.plot(digest),
                                        self.plot_title(digest))
        except ChatError as error:
            log.warning("digest picture %s could not be uploaded: %s", key, error.message)
            with self.db.session() as s:  # at most once: it may have landed, and a file has no tag to look for
                s.execute(update(Delivery).where(Delivery.id == row_id).values(
                    status="failed", note=f"upload failed, not repeated: {error.message}"))
            return
        self.poster.mark_sent(row_id)

    def _nothing_to_post(self, s: Session, cohort: Cohort, due: datetime) -> str | None:
        lessons = list(s.scalars(select(Delivery).where(Delivery.cohort_id == cohort.id, Delivery.kind == "lesson")))
        sent = [d for d in lessons if d.status == "sent"]
        if not sent:
            return "no lesson posted yet"
        if all(d.status not in ("pending", "sending") for d in lessons):
            if due - max(d.sent_at or d.due_at for d in sent) > AFTER_COURSE:
                return "the course is over"
        members = s.scalar(select(Membership.id).where(Membership.cohort_id == cohort.id,
                                                       Membership.left_at.is_(None)).limit(1))
        if members is None:
            return "the cohort has no members"
        return None

    @staticmethod
    def _schedule_view(cohort: Cohort, row: CohortDigest | None) -> dict[str, Any]:
        return {"name": cohort.name, "timezone": cohort.timezone,
                "weekday": validation.weekday_name(row.weekday) if row else None,
                "time": row.post_time if row else None,
                "channel_id": row.channel_id if row else None, "channel_name": row.channel_name if row else None}


def _passed_column():
    return (case((and_(*passing()), True), else_=False).label("passed"),)


def _week_key(day: date) -> str:
    year, week, _ = day.isocalendar()
    return f"{year}-W{week:02d}"


def _hhmm(value: str) -> time:
    hours, minutes = value.split(":")
    return time(int(hours), int(minutes))
