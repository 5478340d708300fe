"""A Chat that prints to the terminal and remembers what it posted, with each post's tag (for find_post)."""

from __future__ import annotations

import itertools
import os
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Callable, TextIO

from studybot.time_source import Clock
from studybot.errors import FieldError
from studybot.ports import Channel, Message

CHANNEL_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,79}$")


EMOJI = {"warning": "⚠️", "no_entry": "⛔", "white_check_mark": "✅", "wave": "👋", "books": "📚", "trophy": "🏆",
         "alarm_clock": "⏰", "x": "❌", "hourglass_flowing_sand": "⏳", "spiral_calendar_pad": "🗓️",
         "heavy_minus_sign": "➖", "speech_balloon": "💬", "fire": "🔥", "chart_with_upwards_trend": "📈"}


def to_plain(text: str) -> str:
    """Slack markup to terminal text: <!date^..|fallback>, <@U1>, <#C1|name>, <url|label>, :emoji:, &amp;."""
    text = re.sub(r":([a-z_]+):", lambda m: EMOJI.get(m.group(1), m.group(0)), text)
    text = re.sub(r"<!date\^[^|>]*\|([^>]*)>", r"\1", text)
    text = re.sub(r"<@([^>|]+)(?:\|[^>]*)?>", r"@\1", text)
    text = re.sub(r"<#[^>|]+\|([^>]*)>", r"#\1", text)
    text = re.sub(r"<(https?://[^>|]+)\|([^>]*)>", r"\2 (\1)", text)
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def _where(channel_id: str) -> str:
    """How a post's place is shown: a channel, a DM ("@ada") or a group DM ("@ada, @bob")."""
    if not channel_id.startswith("@"):
        return f"#{channel_id}"
    return f"group DM to {channel_id}" if "," in channel_id else f"DM to {channel_id}"


@dataclass(frozen=True)
class Posted:
    id: str
    channel_id: str
    message: Message
    tag: str | None  # the idempotency tag the post was made with (see ports.Chat.post)
    at: datetime


class ShellChat:
    def __init__(self, out: TextIO, clock: Clock, admins: Callable[[str], bool], files_dir: Path | None = None) -> None:
        self.out, self.clock, self._is_admin = out, clock, admins
        self.files_dir = files_dir  # where upload_file writes; default $STUDYBOT_DATA_DIR/files (./data/files)
        self.posted: list[Posted] = []
        self._ids = itertools.count(1)

    def _record(self, channel_id: str, message: Message, tag: str | None) -> str:
        posted = Posted(f"m{next(self._ids)}", channel_id, message, tag, self.clock.now())
        self.posted.append(posted)
        return posted.id

    def post(self, channel_id: str, message: Message, *, tag: str | None = None) -> str:
        stamp = self.clock.now().strftime("%a %d %b %Y %H:%M UTC")
        where = _where(channel_id)
        self.out.write(f"\n── {where} · {stamp} ──\n{to_plain(message.text)}\n")
        return self._record(channel_id, message, tag)

    def dm(self, user_id: str, message: Message) -> str:
        return self.post(self.open_dm(user_id), message)

    def open_dm(self, user_id: str) -> str:
        return f"@{user_id}"

    def open_group_dm(self, user_ids: list[str]) -> str:
        return ", ".join(f"@{user_id}" for user_id in sorted(user_ids))

    def tz_offset(self, user_id: str) -> int | None:
        return None  # the terminal's people have no timezone of their own

    def update(self, channel_id: str, message_id: str, message: Message) -> None:
        stamp = self.clock.now().strftime("%a %d %b %Y %H:%M UTC")
        where = _where(channel_id)
        self.out.write(f"\n── {where} · {stamp} (updated) ──\n{to_plain(message.text)}\n")

    def find_post(self, channel_id: str, *, since: datetime, tag: str, thread_id: str | None = None) -> str | None:
        for posted in self.posted:  # the shell keeps thread replies with the rest: one list to search
            if posted.channel_id == channel_id and posted.at >= since and posted.tag == tag:
                return posted.id
        return None

    def upload_file(self, user_id: str, filename: str, content: bytes, title: str) -> str:
        """Write the file under the data dir (``files_dir``) and print where it is."""
        return self._write_file(user_id, filename, content, title, f"file for @{user_id}")

    def upload_to_channel(self, channel_id: str, filename: str, content: bytes, title: str) -> str:
        """Like ``upload_file``: written under the data dir, in a folder named after the channel (or @user)."""
        where = f"file in the DM to {channel_id}" if channel_id.startswith("@") else f"file in #{channel_id}"
        return self._write_file(channel_id, filename, content, title, where)

    def _write_file(self, folder_name: str, filename: str, content: bytes, title: str, where: str) -> str:
        root = Path(self.files_dir or Path(os.environ.get("STUDYBOT_DATA_DIR") or "data") / "files")
        folder = root / re.sub(r"[^A-Za-z0-9_.-]", "_", folder_name)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / Path(filename).name
        path.write_bytes(content)
        stamp = self.clock.now().strftime("%a %d %b %Y %H:%M UTC")
        self.out.write(f"\n── {where} · {stamp} ──\n{title}: {path} ({len(content)} bytes)\n")
        return str(path)

    def is_workspace_admin(self, user_id: str) -> bool:
        return self._is_admin(user_id)

    def display_name(self, user_id: str) -> str:
        return user_id  # shell users are their names already

    def resolve_channel(self, raw: str) -> Channel:
        name = (raw or "").strip().lstrip("#")
        if not CHANNEL_NAME.match(name):
            raise FieldError("channel", f"Channel {raw!r} is not a channel name: use #name, lowercase, e.g. #fastai-study.",
                             value=raw)
        # Private: only whoever sits at this terminal reads the shell's channels (an organizers' channel is fine).
        return Channel(id=name, name=name, is_private=True)

    def join_channel(self, channel_id: str) -> bool:
        return True  # the shell's channels are only names: the bot is in every one

    def post_ephemeral(self, channel_id: str, user_id: str, message: Message) -> None:
        """Printed like a post, marked as seen by one member only; not remembered (it cannot be found later)."""
        stamp = self.clock.now().strftime("%a %d %b %Y %H:%M UTC")
        self.out.write(f"\n── #{channel_id} · {stamp} · only @{user_id} sees this ──\n{to_plain(message.text)}\n")

    def reply_in_thread(self, channel_id: str, thread_id: str, message: Message, *, tag: str | None = None) -> str:
        stamp = self.clock.now().strftime("%a %d %b %Y %H:%M UTC")
        self.out.write(f"\n── #{channel_id} · {stamp} · in the thread of {thread_id} ──\n{to_plain(message.text)}\n")
        return self._record(channel_id, message, tag)

    def publish_home(self, user_id: str, view: dict[str, Any]) -> None:
        """Only says that it changed: the terminal shows a home as text, on `:home` (studybot/home.py)."""
        stamp = self.clock.now().strftime("%a %d %b %Y %H:%M UTC")
        self.out.write(f"\n── App Home of @{user_id} · {stamp} (updated; :home shows it) ──\n")
