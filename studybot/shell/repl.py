"""`studybot shell`: talk to the bot in a terminal, on the embedded database, with a clock you can move.

Lines that start with /study (or study) are the slash command; lines that start with ':' talk to the
shell itself. After every line the scheduler ticks, so posts appear as they fall due."""

from __future__ import annotations

import re
import shlex
from datetime import datetime, timedelta
from typing import TextIO

from studybot.bootstrap import Services
from studybot.home import home_text
from studybot.time_source import ManualClock
from studybot.messages import render
from studybot.shell.chat import to_plain

SHELL_HELP = """Shell commands:
  /study ...            the slash command, e.g. /study help
  /study submit EXERCISE PATH   grade a notebook here, on the CPU (e.g. exercises/digits/reference.ipynb)
  /study check EXERCISE PATH    one quick unranked run on the public split: does it even run?
  :as NAME [admin]      speak as another user (admin: a workspace admin)
  :advance DURATION     move the clock forward, e.g. :advance 1w, 3d, 12h, 30m; due posts appear
  :now                  show the clock
  :home                 show your App Home
  :dm TEXT              send the bot a direct message
  :reply COHORT LESSON TEXT   reply in the question thread of a lesson post (counted in the digest)
  :help                 this help
  :quit                 leave (Ctrl-D works too)"""

MAX_STEPS = 10_000  # due posts one :advance may step through
DURATION = re.compile(r"^(\d+)([wdhm])$")


def parse_duration(raw: str) -> timedelta:
    match = DURATION.match(raw.strip().lower())
    if not match:
        raise ValueError(f"{raw!r} is not a duration: use 1w, 3d, 12h or 30m")
    units = {"w": "weeks", "d": "days", "h": "hours", "m": "minutes"}
    return timedelta(**{units[match.group(2)]: int(match.group(1))})


class Shell:
    def __init__(self, services: Services, clock: ManualClock, out: TextIO, admins: set[str],
                 user: str = "you") -> None:
        self.services, self.clock, self.out, self.admins = services, clock, out, admins
        self.user = user
        self._replies = 0  # shell thread replies, numbered: each is a message of its own

    @property
    def prompt(self) -> str:
        return f"{self.user}> "

    def say(self, text: str) -> None:
        self.out.write(text.rstrip() + "\n")

    def handle(self, line: str) -> bool:
        """Run one line; False means the user asked to quit."""
        line = line.strip()
        if not line or line.startswith("#"):
            return True
        if line.startswith(":"):
            keep_going = self._meta(line[1:])
        elif re.match(r"^/?study\b", line):
            self._study(re.sub(r"^/?study\s*", "", line))
            keep_going = True
        else:
            self.say("Type /study help for the bot's commands, :help for the shell's.")
            keep_going = True
        self._tick()
        return keep_going

    def _study(self, text: str) -> None:
        words = text.split()
        if len(words) == 3 and words[0].lower() in ("submit", "check"):  # the shell's form: submit EXERCISE PATH
            from studybot.shell.grading import submit_and_grade

            lane = "check" if words[0].lower() == "check" else "ranked"
            submit_and_grade(self.services, self.user, words[1], words[2], self.say, lane=lane)
            return
        reply = self.services.commands.handle(text, self.user)
        self.say(to_plain(render(reply.template, **reply.context).text))

    def _meta(self, line: str) -> bool:
        try:
            words = shlex.split(line)
        except ValueError as error:
            self.say(f"Could not read that: {error}")
            return True
        verb, args = (words[0].lower(), words[1:]) if words else ("help", [])
        if verb in ("quit", "exit", "q"):
            return False
        if verb == "as" and args:
            self.user = args[0].lstrip("@")
            if "admin" in args[1:]:
                self.admins.add(self.user)
            role = "a workspace admin" if self.user in self.admins else "a member"
            self.say(f"You are now @{self.user}, {role}.")
        elif verb == "advance" and args:
            try:
                self.advance(parse_duration(args[0]))
            except ValueError as error:
                self.say(str(error))
        elif verb == "now":
            self.say(f"It is {self.clock.now():%a %d %b %Y %H:%M} UTC.")
        elif verb == "home":
            self.say(to_plain(home_text(self.services, self.user)))
        elif verb == "reply" and len(args) >= 3:
            self._reply(args[0], args[1], " ".join(args[2:]))
        elif verb == "dm":
            self.say(to_plain(render("dm_help").text))
        else:
            self.say(SHELL_HELP)
        return True

    def _reply(self, cohort: str, lesson_key: str, text: str) -> None:
        """A member's reply in a lesson post's thread: what Slack's message event with its thread_ts is."""
        from studybot.errors import StudybotError

        try:
            channel_id, thread_id = self.services.lesson_threads.lesson_thread(cohort, lesson_key)
        except StudybotError as error:
            self.say(to_plain(render("error", error=error, kind=type(error).__name__,
                                     field=getattr(error, "field", None)).text))
            return
        self._replies += 1
        message_ts = f"r{self._replies}@{self.clock.now().timestamp():.0f}"
        self.services.lesson_threads.record_reply(channel_id, thread_id, self.user, message_ts)
        self.say(f"── #{channel_id} · {self.clock.now():%a %d %b %Y %H:%M} UTC · in the thread of {thread_id} ──\n"
                 f"@{self.user}: {text}")

    def advance(self, delta: timedelta) -> None:
        """Jump from one due post to the next, so each one is posted at its own time."""
        target = self.clock.now() + delta
        for _ in range(MAX_STEPS):
            due = self.services.deliveries.next_due()
            digest = self.services.digests.next_slot(self.clock.now())  # digests fall due between posts
            if digest is not None and (due is None or digest < due):
                due = digest
            if due is None or due > target:
                break
            # A post that keeps failing stays pending; step past it rather than spin on it.
            self.clock.set(max(due, self.clock.now() + timedelta(minutes=1) if due <= self.clock.now() else due))
            self._tick()
        self.clock.set(target)
        self.say(f"The clock is now {target:%a %d %b %Y %H:%M} UTC.")

    def _tick(self) -> None:
        self.services.deliveries.tick()
        self.services.weekly_boards.tick()
        self.services.feedback.tick()
        self.services.lesson_threads.tick()
        self.services.digests.tick()


def start_clock() -> ManualClock:
    return ManualClock(datetime.now().astimezone())
