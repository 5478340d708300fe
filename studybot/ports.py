"""The small interface the domain talks to. Slack (studybot/slack/chat.py) and the terminal shell
(studybot/shell/chat.py) implement it; the domain never knows which one it has."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol


@dataclass(frozen=True)
class Message:
    """A rendered message: Block Kit blocks plus the plain-text fallback (notifications, the shell)."""

    text: str
    blocks: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class Channel:
    id: str
    name: str
    is_member: bool = True  # the bot is in it (it can read it; posting to a public one works regardless)
    is_archived: bool = False  # nothing can be posted there
    is_private: bool = False  # the bot cannot join it on its own: someone must invite it


class Chat(Protocol):
    def post(self, channel_id: str, message: Message, *, tag: str | None = None) -> str:
        """Post to a channel; returns the message id (Slack's ts). Raises ChatError after retries.

        ``tag`` is an idempotency tag the post carries (Slack: message metadata), so that
        ``find_post`` can later tell whether a post whose fate is unknown did land."""

    def dm(self, user_id: str, message: Message) -> str:
        """Send a direct message to one user; returns the message id."""

    def open_dm(self, user_id: str) -> str:
        """The id of the direct-message channel with one user (to post there and edit later)."""

    def open_group_dm(self, user_ids: list[str]) -> str:
        """The id of the group direct message between the bot and these users (a study-buddy group;
        Slack: one multi-person DM for the same set of people, however often it is opened)."""

    def tz_offset(self, user_id: str) -> int | None:
        """The user's offset from UTC in seconds, where the workspace gives one (Slack: users.info
        tz_offset); None when unknown. Study buddies are paired with close offsets."""

    def update(self, channel_id: str, message_id: str, message: Message) -> None:
        """Replace a message the bot posted (progress that moves along: queued, running, result)."""

    def find_post(self, channel_id: str, *, since: datetime, tag: str, thread_id: str | None = None) -> str | None:
        """The id of a post made to the channel since ``since`` that carries ``tag``, if any; with
        ``thread_id``, among the replies in that message's thread (a channel's history leaves them out).

        How a post whose fate is unknown (a crash between post and mark) is reconciled."""

    def is_workspace_admin(self, user_id: str) -> bool:
        """Workspace admins and owners are organizers of every cohort."""

    def display_name(self, user_id: str) -> str:
        """How a user is shown without notifying them (a weekly board names many people; an
        @-mention would ping each one). Falls back to the id when the name cannot be had."""

    def resolve_channel(self, raw: str) -> Channel:
        """Turn what a user typed (#name, <#C123|name>, C123) into a channel; FieldError('channel') if none."""

    def join_channel(self, channel_id: str) -> bool:
        """Join a public channel; False when the transport cannot (a private channel, a missing scope)."""

    def upload_file(self, user_id: str, filename: str, content: bytes, title: str) -> str:
        """Send a file to one user in a direct message (an organizer's CSV export); returns the file's id
        (Slack) or where it was written (the shell). Raises ChatError after retries."""

    def upload_to_channel(self, channel_id: str, filename: str, content: bytes, title: str) -> str:
        """Share a file in a channel or a DM channel (the digest's plot, after the digest); returns the file's
        id (Slack) or where it was written (the shell). Raises ChatError after retries."""

    def post_ephemeral(self, channel_id: str, user_id: str, message: Message) -> None:
        """Show a message in a channel to one member only: a one-shot hint, it cannot be edited later.
        Raises ChatError after retries."""

    def reply_in_thread(self, channel_id: str, thread_id: str, message: Message, *, tag: str | None = None) -> str:
        """Answer in the thread of message ``thread_id`` (an @-mention of the bot, a lesson's question thread);
        returns the reply's id. ``tag`` as for ``post`` (found again by ``find_post(thread_id=...)``).
        Raises ChatError after retries."""

    def publish_home(self, user_id: str, view: dict[str, Any]) -> None:
        """Show one user their App Home (the view rendered from messages/home.j2, see studybot/home.py).
        Raises ChatError after retries."""
