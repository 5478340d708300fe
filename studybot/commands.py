"""`/study` commands: parse the text a person typed, call the domain, say which template answers.

Transport-neutral: Slack (studybot/slack/commands) and the shell both call ``handle()`` and render
the Reply the same way. Errors come back as Replies too, so every entry point shows the same words."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from typing import Any

from studybot.errors import FieldError, InputError, StudybotError
from studybot.services.cohorts import Cohorts


@dataclass(frozen=True)
class Reply:
    template: str
    context: dict[str, Any] = field(default_factory=dict)
    public: bool = False  # True: everyone in the channel sees it; False: only the caller (ephemeral)
    modal: str | None = None  # open this view template instead of replying (Slack only; the shell explains)


@dataclass(frozen=True)
class Parsed:
    positional: list[str]
    options: dict[str, list[str]]

    def one(self, name: str) -> str | None:
        values = self.options.get(name)
        return values[-1] if values else None


COHORT_CREATE_OPTIONS = {"channel", "start", "time", "tz", "weekday", "curriculum", "organizer"}
RESCHEDULE_OPTIONS = {"weekday", "time", "tz", "start"}
USAGE = {
    "cohort create": "/study cohort create NAME --channel #channel --start YYYY-MM-DD --time HH:MM --tz Area/City "
                     "[--weekday mon..sun] [--curriculum ID] [--organizer @user]",
    "cohort reschedule": "/study cohort reschedule NAME [--weekday mon..sun] [--time HH:MM] [--tz Area/City] "
                         "[--start YYYY-MM-DD]",
    "cohort leaderboard": "/study cohort leaderboard NAME --weekday mon..sun [--time HH:MM] | --off",
    "cohort digest": "/study cohort digest NAME --weekday mon..sun [--time HH:MM] [--channel #private] | --off",
    "cohort report": "/study cohort report NAME",
    "leaderboard": "/study leaderboard EXERCISE [COHORT] [--public], "
                   "or /study leaderboard optout|anonymous|named [COHORT]",
    "export": "/study export EXERCISE [COHORT]",
    "disqualify": '/study disqualify SUBMISSION_ID --reason "..."',
    "review": "/study review [EXERCISE] [COHORT], or /study review SUBMISSION_ID",
    "approve": "/study approve SUBMISSION_ID",
    "buddies": "/study buddies on|off [COHORT], or /study buddies snooze N [COHORT] (N weeks)",
    "cohort buddies": "/study cohort buddies NAME on|off",
    "extend": "/study extend @user LESSON --until YYYY-MM-DD [COHORT]",
    "quota": "/study quota @user +N [EXERCISE] [COHORT]",
    "pause": "/study pause N (weeks), /study unpause",
}
LEADERBOARD_VERBS = frozenset({"leaderboard", "export", "disqualify", "requalify", "regrade", "review", "approve"})


# Phones and some keyboards turn typed quotes into typographic ones, which shlex does not know.
DOUBLE_QUOTES = str.maketrans({"“": '"', "”": '"', "„": '"', "‟": '"', "″": '"', "«": '"', "»": '"'})
SINGLE_QUOTED = re.compile(r"[‘‚‛]([^‘’‚‛]*)’")  # ‘x’: a quoted word; a lone ’ is an apostrophe (don’t)


def normalise_quotes(text: str) -> str:
    """“x” and ‘x’ as "x" and 'x', so that shlex reads them as quotes; ’ inside a word stays as typed."""
    return SINGLE_QUOTED.sub(r"'\1'", text.translate(DOUBLE_QUOTES))


def parse(tokens: list[str], allowed: set[str]) -> Parsed:
    positional, options = [], {}
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if token.startswith("--"):
            name, eq, value = token[2:].partition("=")
            if name not in allowed:
                raise FieldError(name or "option", f"Unknown option --{name}. Options here: "
                                 + ", ".join(f"--{o}" for o in sorted(allowed)) + ".")
            if not eq:
                if i + 1 >= len(tokens) or tokens[i + 1].startswith("--"):
                    raise FieldError(name, f"--{name} needs a value.")
                i += 1
                value = tokens[i]
            options.setdefault(name, []).append(value)
        else:
            positional.append(token)
        i += 1
    return Parsed(positional, options)


def user_id_from(raw: str) -> str:
    """<@U123|ada> or <@U123> (Slack's escaped mention), or @ada / ada (the shell)."""
    match = re.fullmatch(r"<@([A-Z0-9]+)(?:\|[^>]*)?>", raw.strip())
    if match:
        return match.group(1)
    return raw.strip().lstrip("@")


# Commands answered from the database alone, fast enough to answer inside Slack's ack. The others may
# call the Slack Web API (admin checks, channel lookups) and answer afterwards, through response_url.
READ_ONLY_VERBS = frozenset({"lesson", "schedule", "status", "join", "leave"})


class CommandHandler:
    def __init__(self, cohorts: Cohorts, submissions=None, leaderboards=None, weekly_boards=None, moderation=None,
                 exports=None, review=None, buddies=None, accommodations=None,
                 digests=None, progress=None) -> None:
        self.digests = digests  # services.digests.Digests
        self.progress = progress  # services.progress.Progress
        self.review = review  # services.review.Review
        self.buddies = buddies  # services.buddies.Buddies
        self.accommodations = accommodations  # services.accommodations.Accommodations
        self.cohorts = cohorts
        self.leaderboards = leaderboards  # services.leaderboards.Leaderboards
        self.weekly_boards = weekly_boards  # services.weekly_boards.WeeklyBoards
        self.moderation = moderation  # services.moderation.Moderation
        self.exports = exports  # services.exports.Exports
        self.submissions = submissions  # services.submissions.Submissions

    @staticmethod
    def answers_from_database(text: str) -> bool:
        words = (text or "").split(maxsplit=1)
        return bool(words) and words[0].lower() in READ_ONLY_VERBS

    def handle(self, text: str, user_id: str) -> Reply:
        try:
            return self._dispatch(text, user_id)
        except StudybotError as error:
            return Reply("error", {"error": error, "kind": type(error).__name__,
                                   "field": getattr(error, "field", None)})

    def _dispatch(self, text: str, user_id: str) -> Reply:
        try:
            tokens = shlex.split(normalise_quotes(text or ""))
        except ValueError as error:
            raise InputError(f"I could not read that command ({error}). Check your quotes.") from None
        if not tokens or tokens[0] in ("help", "-h", "--help"):
            return Reply("help", {"unknown": None, "organizer": self.cohorts.is_any_organizer(user_id)})
        verb, rest = tokens[0].lower(), tokens[1:]
        if verb == "cohort":
            return self._cohort(rest, user_id)
        if verb == "join":
            return Reply("joined", {"cohort": self.cohorts.join(user_id, self._name(rest, "join"))})
        if verb == "leave":
            return Reply("left", {"cohort": self.cohorts.leave(user_id, rest[0] if rest else None)})
        if verb == "lesson":
            cohort = self.cohorts.view(user_id, rest[0] if rest else None)
            return Reply("lesson", {"cohort": cohort, "slot": cohort.current or cohort.upcoming})
        if verb == "schedule":
            return Reply("schedule", {"cohort": self.cohorts.view(user_id, rest[0] if rest else None)})
        if verb in ("submit", "check"):
            if len(rest) != 1:
                raise FieldError("exercise", f"Name the exercise: `/study {verb} EXERCISE`, then send me the notebook.")
            lane = "check" if verb == "check" else "ranked"
            exercise = self.submissions.intend(user_id, rest[0], lane=lane)
            return Reply("submit_ready", {"exercise": exercise, "check": lane == "check",
                                          "quota_left": self.submissions.quota_left(user_id, exercise, lane),
                                          "daily_quota": self.submissions.quota_of(lane)})
        if verb == "status":
            context = {"cohorts": self.cohorts.cohorts_of(user_id), "submitted": self.cohorts.submitted_exercises(user_id),
                       "progress": self.progress.of(user_id) if self.progress else {},
                       "best": self.submissions.best(user_id) if self.submissions else []}
            if self.accommodations is not None:
                context.update(extensions=self.accommodations.extensions_of(user_id),
                               paused_until=self.accommodations.paused_until(user_id))
            return Reply("status", context)
        if verb in ("buddies", "extend", "quota", "pause", "unpause"):
            return self._accommodate(verb, rest, user_id)
        if verb in LEADERBOARD_VERBS:
            return self._leaderboard(verb, rest, user_id)
        return Reply("help", {"unknown": tokens[0], "organizer": self.cohorts.is_any_organizer(user_id)})

    def _cohort(self, tokens: list[str], user_id: str) -> Reply:
        action = tokens[0].lower() if tokens else "help"
        rest = tokens[1:]
        if action == "create":
            if not rest:
                # Permission first: a learner should not get a form they cannot submit.
                self.cohorts.require_can_create(user_id)
                return Reply("cohort_modal_opening", modal="cohort_modal")
            args = parse(rest, COHORT_CREATE_OPTIONS)
            if len(args.positional) != 1:
                raise FieldError("name", f"Give exactly one cohort name. Usage: `{USAGE['cohort create']}`")
            for required in ("channel", "start", "time", "tz"):
                if not args.one(required):
                    raise FieldError(required, f"--{required} is missing. Usage: `{USAGE['cohort create']}`")
            cohort = self.cohorts.create(
                user_id, name=args.positional[0], channel=args.one("channel"), start=args.one("start"),
                at=args.one("time"), tz=args.one("tz"), weekday=args.one("weekday"), curriculum=args.one("curriculum"),
                organizers=[user_id_from(o) for o in args.options.get("organizer", [])],
            )
            return Reply("cohort_created", {"cohort": cohort})
        if action == "list":
            return Reply("cohort_list", {"cohorts": self.cohorts.list(user_id)})
        if action in ("pause", "resume", "skip"):
            name = self._name(rest, f"cohort {action}")
            method = {"pause": self.cohorts.pause, "resume": self.cohorts.resume, "skip": self.cohorts.skip_week}[action]
            return Reply("cohort_changed", {"cohort": method(user_id, name), "action": action})
        if action == "reschedule":
            args = parse(rest, RESCHEDULE_OPTIONS)
            if len(args.positional) != 1:
                raise FieldError("name", f"Give exactly one cohort name. Usage: `{USAGE['cohort reschedule']}`")
            cohort = self.cohorts.reschedule(user_id, args.positional[0], weekday=args.one("weekday"),
                                             at=args.one("time"), tz=args.one("tz"), start=args.one("start"))
            return Reply("cohort_changed", {"cohort": cohort, "action": "reschedule"})
        if action == "buddies":
            if len(rest) != 2 or rest[1].lower() not in ("on", "off"):
                raise FieldError("name", f"Usage: `{USAGE['cohort buddies']}`.")
            status = self.buddies.set_enabled(user_id, rest[0], rest[1].lower() == "on")
            return Reply("buddies", {"status": status, "action": "cohort_" + rest[1].lower()})
        if action == "leaderboard":
            off = "--off" in rest
            args = parse([t for t in rest if t != "--off"], {"weekday", "time"})
            if len(args.positional) != 1:
                raise FieldError("name", f"Give exactly one cohort name. Usage: `{USAGE['cohort leaderboard']}`")
            return Reply("leaderboard_schedule", {"cohort": self.weekly_boards.set_schedule(
                user_id, args.positional[0], weekday=args.one("weekday"), at=args.one("time"), off=off)})
        if action == "digest":
            off = "--off" in rest
            args = parse([t for t in rest if t != "--off"], {"weekday", "time", "channel"})
            if len(args.positional) != 1:
                raise FieldError("name", f"Give exactly one cohort name. Usage: `{USAGE['cohort digest']}`")
            return Reply("digest_schedule", {"cohort": self.digests.set_schedule(
                user_id, args.positional[0], weekday=args.one("weekday"), at=args.one("time"),
                channel=args.one("channel"), off=off)})
        if action == "report":
            args = parse(rest, set())
            if len(args.positional) != 1:
                raise FieldError("name", f"Give exactly one cohort name. Usage: `{USAGE['cohort report']}`")
            return Reply("digest", self.digests.report(user_id, args.positional[0]))
        return Reply("help", {"unknown": f"cohort {action}", "organizer": self.cohorts.is_any_organizer(user_id)})

    @staticmethod
    def _name(tokens: list[str], command: str) -> str:
        if len(tokens) != 1:
            raise FieldError("name", f"Name one cohort: `/study {command} NAME`.")
        return tokens[0]

    def _leaderboard(self, verb: str, tokens: list[str], user_id: str) -> Reply:
        """leaderboard (services/leaderboards.py), export (services/exports.py), disqualify, requalify and
        regrade (services/moderation.py), review and approve (services/review.py)."""
        from studybot.services.exports import CSV_COLUMNS
        from studybot.services.leaderboards import MODES

        boards = self.leaderboards
        if verb == "leaderboard":
            public = "--public" in tokens
            args = parse([t for t in tokens if t != "--public"], set())
            if not args.positional or len(args.positional) > 2:
                raise FieldError("exercise", f"Name the exercise: `{USAGE['leaderboard']}`.")
            first, cohort = args.positional[0], (args.positional[1] if len(args.positional) > 1 else None)
            if first.lower() in MODES:
                return Reply("leaderboard_mode", boards.set_mode(user_id, first, cohort))
            return Reply("leaderboard", {"board": boards.board(user_id, first, cohort, public=public)}, public=public)
        if verb == "export":
            args = parse(tokens, set())
            if not args.positional or len(args.positional) > 2:
                raise FieldError("exercise", f"Name the exercise: `{USAGE['export']}`.")
            export = self.exports.send_export(user_id, args.positional[0],
                                              args.positional[1] if len(args.positional) > 1 else None)
            return Reply("export_ready", {"export": export, "columns": CSV_COLUMNS})
        if verb == "disqualify":
            args = parse(tokens, {"reason"})
            if len(args.positional) != 1:
                raise FieldError("submission", f"Name one submission: `{USAGE['disqualify']}`.")
            info = self.moderation.disqualify(user_id, args.positional[0], args.one("reason") or "")
            return Reply("disqualified", {"info": info, "action": "disqualified", "to_learner": False})
        if verb == "review":
            args = parse(tokens, set())
            if len(args.positional) > 2:
                raise FieldError("exercise", f"Too many words. Usage: `{USAGE['review']}`.")
            first = args.positional[0] if args.positional else None
            if first is not None and first.lstrip("#").isdigit():
                if len(args.positional) != 1:
                    raise FieldError("submission", f"Name one submission: `{USAGE['review']}`.")
                return Reply("review_evidence", {"evidence": self.review.evidence(user_id, first)})
            return Reply("review_list", self.review.flagged(
                user_id, first, args.positional[1] if len(args.positional) > 1 else None))
        args = parse(tokens, set())
        if len(args.positional) != 1:
            raise FieldError("submission", f"Name one submission: `/study {verb} SUBMISSION_ID`.")
        if verb == "approve":
            return Reply("approved", self.review.approve(user_id, args.positional[0]))
        if verb == "requalify":
            info = self.moderation.requalify(user_id, args.positional[0])
            return Reply("disqualified", {"info": info, "action": "requalified", "to_learner": False})
        return Reply("regrade_queued", {"info": self.moderation.regrade(user_id, args.positional[0])})

    def _accommodate(self, verb: str, tokens: list[str], user_id: str) -> Reply:
        """Study buddies (services/buddies.py) and accommodations (services/accommodations.py)."""
        if verb == "buddies":
            choice = tokens[0].lower() if tokens else None
            if choice in ("on", "off") and len(tokens) <= 2:
                status = self.buddies.opt(user_id, choice == "on", tokens[1] if len(tokens) > 1 else None)
                return Reply("buddies", {"status": status, "action": choice})
            if choice == "snooze" and 2 <= len(tokens) <= 3:
                status = self.buddies.snooze(user_id, tokens[1], tokens[2] if len(tokens) > 2 else None)
                return Reply("buddies", {"status": status, "action": "snooze"})
            raise FieldError("buddies", f"Usage: `{USAGE['buddies']}`.")
        if verb == "pause":
            if len(tokens) != 1:
                raise FieldError("weeks", f"Say for how many weeks: `{USAGE['pause']}`.")
            return Reply("accommodation", {"action": "pause", "until": self.accommodations.pause(user_id, tokens[0])})
        if verb == "unpause":
            self.accommodations.unpause(user_id)
            return Reply("accommodation", {"action": "unpause"})
        if verb == "extend":
            args = parse(tokens, {"until"})
            if len(args.positional) not in (2, 3):
                raise FieldError("lesson", f"Name the learner and the lesson: `{USAGE['extend']}`.")
            extension = self.accommodations.extend(
                user_id, user_id_from(args.positional[0]), args.positional[1], args.one("until"),
                args.positional[2] if len(args.positional) > 2 else None)
            return Reply("accommodation", {"action": "extend", "extension": extension})
        args = parse(tokens, set())  # quota
        words = args.positional
        if len(words) not in (2, 3, 4):
            raise FieldError("amount", f"Name the learner and the raise: `{USAGE['quota']}`.")
        exercise, cohort = None, None
        if len(words) == 4:
            exercise, cohort = words[2], words[3]
        elif len(words) == 3:  # one word more: an exercise if it is one, else the cohort
            known = words[2].lower() in self._exercise_ids()
            exercise, cohort = (words[2], None) if known else (None, words[2])
        grant = self.accommodations.raise_quota(user_id, user_id_from(words[0]), words[1], exercise, cohort)
        return Reply("accommodation", {"action": "quota", "grant": grant,
                                       "daily_quota": self.submissions.quota_of("ranked")})

    def _exercise_ids(self) -> set[str]:
        from studybot.services.submissions import known_exercises

        return set(known_exercises(self.submissions.curricula_dir))
