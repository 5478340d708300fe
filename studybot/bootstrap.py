"""Wiring: settings -> database -> domain services, shared by every process (web, clock, shell)."""

from __future__ import annotations

from dataclasses import dataclass

from studybot.time_source import Clock
from studybot.commands import CommandHandler
from studybot.config import Settings
from studybot.db.engine import Database
from studybot.ports import Chat
from studybot.reply_cache import ReplyCache
from studybot.services.accommodations import Accommodations
from studybot.services.buddies import Buddies
from studybot.services.cohorts import Cohorts
from studybot.services.deliveries import Deliveries
from studybot.services.digests import Digests
from studybot.services.lesson_threads import LessonThreads
from studybot.queue import JobQueue
from studybot.services.exports import Exports
from studybot.services.feedback import Feedback
from studybot.services.intake import Intake
from studybot.services.leaderboards import Leaderboards
from studybot.services.moderation import Moderation
from studybot.services.posting import ExactlyOncePoster
from studybot.services.processed_events import ProcessedEvents
from studybot.services.progress import Progress
from studybot.services.review import Review
from studybot.services.submissions import Submissions
from studybot.services.verification import Verification
from studybot.services.weekly_boards import WeeklyBoards
from studybot.teams import Team, serve_single_team


@dataclass
class Services:
    db: Database
    chat: Chat
    clock: Clock
    cohorts: Cohorts
    poster: ExactlyOncePoster  # every post that must go out exactly once (services/posting.py)
    deliveries: Deliveries
    leaderboards: Leaderboards
    weekly_boards: WeeklyBoards
    moderation: Moderation
    review: Review
    verification: Verification
    exports: Exports
    queue: JobQueue
    submissions: Submissions
    feedback: Feedback
    commands: CommandHandler
    reply_cache: ReplyCache
    intake: Intake
    processed_events: ProcessedEvents
    buddies: Buddies
    accommodations: Accommodations
    lesson_threads: LessonThreads  # the question thread of each lesson post, and its replies
    digests: Digests  # the organizers' weekly digest, and `/study cohort report`
    progress: Progress  # learners' streaks and standing


def build_services(settings: Settings, db: Database, chat: Chat, clock: Clock) -> Services:
    # One workspace (token mode, the shell): everything is its team's. Many (OAuth): each request and
    # each sweep names its own (studybot/teams.py), and nothing else is allowed to touch a row.
    serve_single_team(None if settings.multi_workspace else Team(settings.default_team_id))
    cohorts = Cohorts(db, chat, clock, curricula_dir=settings.curricula_dir, reminder_lead=settings.reminder_lead)
    poster = ExactlyOncePoster(db, chat, clock)
    buddies = Buddies(db, chat, clock, cohorts, poster, late_grace=settings.late_grace,
                      curricula_dir=settings.curricula_dir)
    leaderboards = Leaderboards(db, cohorts, curricula_dir=settings.curricula_dir)
    queue = JobQueue(db, clock)
    verification = Verification(db, clock, queue)
    weekly_boards = WeeklyBoards(db, clock, cohorts, leaderboards, poster, late_grace=settings.late_grace,
                                 verification=verification)
    submissions = Submissions(db, clock, queue, daily_quota=settings.daily_quota, curricula_dir=settings.curricula_dir)
    accommodations = Accommodations(db, chat, clock, cohorts, submissions, curricula_dir=settings.curricula_dir)
    deliveries = Deliveries(db, chat, clock, cohorts, poster, late_grace=settings.late_grace,
                            curricula_dir=settings.curricula_dir, accommodations=accommodations, buddies=buddies)
    moderation = Moderation(db, chat, clock, cohorts, leaderboards, submissions)
    exports = Exports(db, chat, clock, cohorts, leaderboards)
    feedback = Feedback(db, chat, clock, submissions, leaderboards, poster, verification)
    review = Review(db, chat, clock, cohorts, leaderboards, moderation, feedback)
    lesson_threads = LessonThreads(db, clock, cohorts, poster, curricula_dir=settings.curricula_dir)
    digests = Digests(db, chat, clock, cohorts, lesson_threads, poster, late_grace=settings.late_grace)
    progress = Progress(db, clock, cohorts)
    commands = CommandHandler(cohorts, submissions=submissions, leaderboards=leaderboards,
                              weekly_boards=weekly_boards, moderation=moderation, exports=exports, review=review,
                              buddies=buddies, accommodations=accommodations,
                              digests=digests, progress=progress)
    return Services(db=db, chat=chat, clock=clock, cohorts=cohorts, poster=poster, deliveries=deliveries,
                    leaderboards=leaderboards, weekly_boards=weekly_boards, moderation=moderation, review=review,
                    verification=verification, exports=exports,
                    queue=queue, submissions=submissions, feedback=feedback,
                    commands=commands, reply_cache=ReplyCache(db, commands),
                    intake=Intake(chat, submissions, feedback), processed_events=ProcessedEvents(db, clock),
                    buddies=buddies, accommodations=accommodations,
                    lesson_threads=lesson_threads, digests=digests, progress=progress)
