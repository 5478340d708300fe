"""Rendered answers to the read-only commands, cached until the database changes.

"What is this week's lesson?" is asked by a whole cohort right after each post. The answer only
changes when something is written, and every write bumps state_version (db/engine.py), so one
primary-key read tells whether a cached answer is still true, across every process."""

from __future__ import annotations

import threading
from collections import OrderedDict

from studybot.commands import CommandHandler
from studybot.db.engine import Database
from studybot.messages import render
from studybot.ports import Message
from studybot.teams import Team, current_team

CACHE_ENTRIES = 10_000  # (team, user, command) answers kept; oldest dropped first
PURE_READS = frozenset({"lesson", "schedule", "status"})  # join and leave write: never served from cache


class ReplyCache:
    def __init__(self, db: Database, commands: CommandHandler) -> None:
        self.db, self.commands = db, commands
        self._cache: OrderedDict[tuple[Team, str, str], tuple[int, Message]] = OrderedDict()
        self._lock = threading.Lock()

    def answer(self, text: str, user_id: str) -> Message:
        """The rendered reply to a read-only command (``CommandHandler.answers_from_database``)."""
        # The team too: user ids are not unique across workspaces (Enterprise Grid shares them).
        key = (current_team(), user_id, " ".join((text or "").split()).lower())
        if key[2].split(" ", 1)[0] not in PURE_READS:
            reply = self.commands.handle(text, user_id)
            return render(reply.template, **reply.context)
        version = self.db.state_version()
        with self._lock:
            cached = self._cache.get(key)
            if cached and cached[0] == version:
                self._cache.move_to_end(key)
                return cached[1]
        reply = self.commands.handle(text, user_id)
        message = render(reply.template, **reply.context)
        with self._lock:
            self._cache[key] = (version, message)
            self._cache.move_to_end(key)
            while len(self._cache) > CACHE_ENTRIES:
                self._cache.popitem(last=False)
        return message
