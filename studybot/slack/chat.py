"""Chat and directory on the Slack Web API: posting with per-channel pacing, retries on 429/5xx."""

from __future__ import annotations

import contextlib
import logging
import random
import re
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Iterator

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.http_retry.builtin_handlers import ConnectionErrorRetryHandler, RateLimitErrorRetryHandler, ServerErrorRetryHandler
from slack_sdk.http_retry.builtin_interval_calculators import BackoffRetryIntervalCalculator
from slack_sdk.http_retry.jitter import Jitter

from studybot.errors import ChatError, FieldError, HistoryUnreadable
from studybot.ports import Channel, Message

log = logging.getLogger(__name__)

ADMIN_CACHE_SECONDS = 600  # how long a users.info answer (admin/owner flags) is trusted
NAME_CACHE_SECONDS = 3600  # how long a display name (or timezone) from users.info is reused (they change rarely)
HISTORY_PAGES = 5  # conversations.history pages searched when reconciling a post (200 messages each)
# A post's idempotency tag travels as Slack message metadata of this type: {"tag": "..."} as its payload.
# Posts made before tags existed named their deliveries row as {"delivery_id": "17"}, under this type or
# "studybot_leaderboard"; find_post still recognises those as the tag "delivery:17".
METADATA_TYPE = "studybot_delivery"
LEGACY_METADATA_TYPES = (METADATA_TYPE, "studybot_leaderboard")

# Slack error codes after which the same call fails again until a person fixes something: retrying
# them only burns attempts and hides the reason. Every caller reads ChatError.permanent, decided here.
PERMANENT_ERRORS = frozenset({
    "invalid_blocks", "invalid_blocks_format", "msg_too_long",  # our message: a bug, it never goes out
    "channel_not_found", "is_archived", "not_in_channel",  # the channel: deleted, archived, bot removed
    "account_inactive", "invalid_auth", "token_revoked", "not_authed",  # the bot (or the DM's user) is gone
    "restricted_action", "cannot_dm_bot", "user_not_found",
})


def tag_metadata(tag: str | None) -> dict[str, Any] | None:
    """The message metadata that carries ``tag`` (None: no metadata)."""
    return None if tag is None else {"event_type": METADATA_TYPE, "event_payload": {"tag": tag}}


def tag_of(metadata: dict[str, Any] | None) -> str | None:
    """The idempotency tag a message's metadata carries, if it is one of ours."""
    if not metadata or metadata.get("event_type") not in LEGACY_METADATA_TYPES:
        return None
    payload = metadata.get("event_payload") or {}
    if payload.get("tag") is not None:
        return str(payload["tag"])
    if payload.get("delivery_id") is not None:
        return f"delivery:{payload['delivery_id']}"
    return None


@dataclass(frozen=True)
class RetryPolicy:
    """How the Web API client retries. Production honours Slack's own numbers; tests shrink the waits."""

    connection_retries: int = 2
    rate_limit_retries: int = 5
    server_error_retries: int = 3
    retry_after_scale: float = 1.0  # x the seconds in Slack's Retry-After header (429)
    server_error_backoff_seconds: float = 0.5  # the first wait after a 500/503, doubling on each retry


class RetryAfterHandler(RateLimitErrorRetryHandler):
    """A 429 waits Retry-After seconds (times the policy's scale) plus up to a second of jitter, scaled too."""

    def __init__(self, max_retry_count: int, scale: float) -> None:
        super().__init__(max_retry_count=max_retry_count)
        self.scale = scale

    def prepare_for_next_attempt(self, *, state, request, response=None, error=None) -> None:
        if response is None:
            raise error
        state.next_attempt_requested = True
        header = next((values for name, values in response.headers.items() if name.lower() == "retry-after"), None)
        seconds = int(header[0]) if header else 1
        time.sleep((seconds + random.random()) * self.scale)
        state.increment_current_attempt()


class ProportionalJitter(Jitter):
    """Up to as much again as the backoff (slack_sdk's default adds up to a whole second, whatever the backoff)."""

    def recalculate(self, duration: float) -> float:
        return duration * (1 + random.random())


def make_web_client(token: str | None, base_url: str, timeout: int = 30, retry: RetryPolicy = RetryPolicy()) -> WebClient:
    # slack_sdk retries only connection errors by default: 429 (after Retry-After) and 5xx are ours to add.
    return WebClient(
        token=token,
        base_url=base_url,
        timeout=timeout,
        retry_handlers=[
            ConnectionErrorRetryHandler(max_retry_count=retry.connection_retries),
            RetryAfterHandler(retry.rate_limit_retries, retry.retry_after_scale),
            ServerErrorRetryHandler(max_retry_count=retry.server_error_retries,
                                    interval_calculator=BackoffRetryIntervalCalculator(
                                        backoff_factor=retry.server_error_backoff_seconds,
                                        jitter=ProportionalJitter())),
        ],
    )


class ChannelPacer:
    """At most one post per ``interval`` seconds per channel: Slack allows about one a second."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._locks: dict[str, threading.Lock] = defaultdict(threading.Lock)
        self._guard = threading.Lock()
        self._last: dict[str, float] = {}

    @contextlib.contextmanager
    def slot(self, channel: str) -> Iterator[None]:
        """Hold the channel for one post; the next may start ``interval`` after this one finished."""
        with self._guard:
            lock = self._locks[channel]
        with lock:
            delay = self._last.get(channel, 0.0) + self.interval - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            try:
                yield
            finally:
                self._last[channel] = time.monotonic()


def _channel(info: dict[str, Any], fallback_name: str) -> Channel:
    """A conversations.info / conversations.list channel object as the domain's Channel."""
    return Channel(info.get("id", ""), info.get("name") or fallback_name, is_member=bool(info.get("is_member", True)),
                   is_archived=bool(info.get("is_archived")),
                   is_private=bool(info.get("is_private") or info.get("is_group")))


class SlackChat:
    def __init__(self, client: WebClient, post_interval: float = 1.1, pacer: ChannelPacer | None = None) -> None:
        self.client = client
        self.pacer = pacer or ChannelPacer(post_interval)  # shared by the workspaces of one process
        self._admins: dict[str, tuple[float, bool]] = {}
        self._names: dict[str, tuple[float, str]] = {}
        self._offsets: dict[str, tuple[float, int | None]] = {}  # users.info tz_offset, cached like names

    def _call(self, method: str, **kwargs: Any) -> Any:
        try:
            return getattr(self.client, method)(**kwargs)
        except SlackApiError as error:
            code = error.response.get("error")
            # An answer with an error code (HTTP 200 ok:false, or a 429 after the retries) is a refusal:
            # nothing happened. A 5xx may have been carried out before the server failed.
            refused = code is not None and error.response.status_code < 500
            raise ChatError(f"Slack refused {method}: {code or 'unknown error'}", code=code,
                            permanent=code in PERMANENT_ERRORS, may_have_posted=not refused,
                            slack_error=code) from None
        except SlackClientError as error:
            raise ChatError(f"Slack could not be reached for {method}: {type(error).__name__}") from None

    def post(self, channel_id: str, message: Message, *, tag: str | None = None) -> str:
        with self.pacer.slot(channel_id):
            response = self._call("chat_postMessage", channel=channel_id, text=message.text,
                                  blocks=message.blocks or None, metadata=tag_metadata(tag), unfurl_links=False,
                                  unfurl_media=False)
        return response["ts"]

    def update(self, channel_id: str, ts: str, message: Message) -> None:
        self._call("chat_update", channel=channel_id, ts=ts, text=message.text, blocks=message.blocks or None)

    def dm(self, user_id: str, message: Message) -> str:
        return self.post(self.open_dm(user_id), message)

    def open_dm(self, user_id: str) -> str:
        return self._call("conversations_open", users=user_id)["channel"]["id"]

    def open_group_dm(self, user_ids: list[str]) -> str:
        # conversations.open with 2-8 users (besides the bot) opens, or reopens, their multi-person DM.
        return self._call("conversations_open", users=",".join(sorted(user_ids)))["channel"]["id"]

    def tz_offset(self, user_id: str) -> int | None:
        cached = self._offsets.get(user_id)
        if cached and time.monotonic() - cached[0] < NAME_CACHE_SECONDS:
            return cached[1]
        try:
            user = self._call("users_info", user=user_id)["user"]
        except ChatError as error:
            log.warning("users.info failed for %s: %s; timezone unknown", user_id, error.message)
            return None
        offset = user.get("tz_offset")
        offset = int(offset) if isinstance(offset, (int, float)) else None
        self._offsets[user_id] = (time.monotonic(), offset)
        return offset

    def find_post(self, channel_id: str, *, since: datetime, tag: str, thread_id: str | None = None) -> str | None:
        """HistoryUnreadable when the bot cannot read the channel and cannot join it either.

        A bot posts to a public channel it is not in (chat:write.public) but cannot read it
        (not_in_channel): it joins it (channels:join) and reads again; a private channel needs an invite."""
        try:
            return self._find_post(channel_id, since=since, tag=tag, thread_id=thread_id)
        except ChatError as error:
            if error.code != "not_in_channel":
                raise
        try:
            self._call("conversations_join", channel=channel_id)
            log.info("joined %s to read its history", channel_id)
            return self._find_post(channel_id, since=since, tag=tag, thread_id=thread_id)
        except ChatError as error:
            raise HistoryUnreadable(f"Slack will not let me read the channel ({error.code or error.message}); "
                                    "invite me there: /invite @studybot", code=error.code, permanent=True,
                                    may_have_posted=False) from None

    def _find_post(self, channel_id: str, *, since: datetime, tag: str, thread_id: str | None = None) -> str | None:
        cursor = None
        for _ in range(HISTORY_PAGES):
            # A thread's replies are not in the channel's history: conversations.replies lists them.
            method, where = (("conversations_history", {}) if thread_id is None else
                             ("conversations_replies", {"ts": thread_id}))
            page = self._call(method, channel=channel_id, oldest=f"{since.timestamp():.6f}",
                              include_all_metadata=True, limit=200, cursor=cursor, **where)
            for message in page.get("messages", []):
                if tag_of(message.get("metadata")) == tag:
                    return message["ts"]
            cursor = (page.get("response_metadata") or {}).get("next_cursor")
            if not cursor:
                break
        return None

    def upload_file(self, user_id: str, filename: str, content: bytes, title: str) -> str:
        # files_upload_v2 (getUploadURLExternal, upload, completeUploadExternal) into the DM: a D… id passed
        # as channel= (a U… id, channel_id= or a string channels= all fail: slack_sdk#1426, #1608, #1465).
        dm = self._call("conversations_open", users=user_id)["channel"]["id"]
        response = self._call("files_upload_v2", channel=dm, filename=filename, content=content, title=title)
        uploaded = response.get("file") or (response.get("files") or [{}])[0]
        return uploaded.get("id", "")

    def upload_to_channel(self, channel_id: str, filename: str, content: bytes, title: str) -> str:
        # The same files_upload_v2 flow, shared straight into a channel (a C…/G… id) or a DM (D…).
        response = self._call("files_upload_v2", channel=channel_id, filename=filename, content=content, title=title)
        uploaded = response.get("file") or (response.get("files") or [{}])[0]
        return uploaded.get("id", "")

    def is_workspace_admin(self, user_id: str) -> bool:
        cached = self._admins.get(user_id)
        if cached and time.monotonic() - cached[0] < ADMIN_CACHE_SECONDS:
            return cached[1]
        try:
            user = self._call("users_info", user=user_id)["user"]
        except ChatError as error:
            log.warning("users.info failed for %s: %s; treating as not an admin", user_id, error.message)
            return False
        is_admin = bool(user.get("is_admin") or user.get("is_owner") or user.get("is_primary_owner"))
        self._admins[user_id] = (time.monotonic(), is_admin)
        return is_admin

    def display_name(self, user_id: str) -> str:
        """users.info's profile.display_name, else real_name, else the handle (Slack leaves
        display_name empty for many users); the id itself when users.info fails."""
        cached = self._names.get(user_id)
        if cached and time.monotonic() - cached[0] < NAME_CACHE_SECONDS:
            return cached[1]
        try:
            user = self._call("users_info", user=user_id)["user"]
        except ChatError as error:
            log.warning("users.info failed for %s: %s; showing the id", user_id, error.message)
            return user_id
        profile = user.get("profile") or {}
        name = (profile.get("display_name") or profile.get("real_name") or user.get("real_name")
                or user.get("name") or user_id)
        self._names[user_id] = (time.monotonic(), name)
        return name

    def resolve_channel(self, raw: str) -> Channel:
        """The channel with the bot's membership and whether it is archived, for the domain to judge."""
        raw = (raw or "").strip()
        escaped = re.fullmatch(r"<#([CG][A-Z0-9]+)(?:\|([^>]*))?>", raw)
        channel_id = escaped.group(1) if escaped else (raw if re.fullmatch(r"[CG][A-Z0-9]{2,}", raw) else None)
        if channel_id:
            try:
                info = self._call("conversations_info", channel=channel_id)["channel"]
            except ChatError:
                raise FieldError("channel", f"I cannot see channel {raw}. Invite me there first (`/invite @studybot`).",
                                 value=raw) from None
            return _channel(info, fallback_name=(escaped.group(2) if escaped else None) or channel_id)
        name = raw.lstrip("#")
        if not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,79}", name):
            raise FieldError("channel", f"Channel {raw!r} is not a channel: use #name, e.g. #fastai-study.", value=raw)
        cursor = None
        while True:
            # Archived channels too, so that one is refused for what it is rather than "not found".
            page = self._call("conversations_list", types="public_channel,private_channel", exclude_archived=False,
                              limit=1000, cursor=cursor)
            for channel in page.get("channels", []):
                if channel.get("name") == name:
                    return _channel(channel, fallback_name=name)
            cursor = (page.get("response_metadata") or {}).get("next_cursor")
            if not cursor:
                raise FieldError("channel", f"I cannot find #{name}. Check the name; for a private channel, invite me first.",
                                 value=raw)

    def join_channel(self, channel_id: str) -> bool:
        try:
            self._call("conversations_join", channel=channel_id)  # needs channels:join; public channels only
            return True
        except ChatError as error:
            log.info("could not join %s: %s", channel_id, error.code or error.message)
            return False

    def post_ephemeral(self, channel_id: str, user_id: str, message: Message) -> None:
        # Not queued behind the channel's pacer: Slack's one-a-second-per-channel limit is chat.postMessage's
        # (chat.postEphemeral has its own, higher tier), and a welcome waiting for its slot would hold a
        # listener thread: a burst of people joining a channel would hold them all. The client retries 429s.
        self._call("chat_postEphemeral", channel=channel_id, user=user_id, text=message.text,
                   blocks=message.blocks or None)

    def reply_in_thread(self, channel_id: str, thread_id: str, message: Message, *, tag: str | None = None) -> str:
        with self.pacer.slot(channel_id):  # a thread reply is a chat.postMessage in the channel: same pace
            response = self._call("chat_postMessage", channel=channel_id, thread_ts=thread_id, text=message.text,
                                  blocks=message.blocks or None, metadata=tag_metadata(tag), unfurl_links=False,
                                  unfurl_media=False)
        return response["ts"]

    def publish_home(self, user_id: str, view: dict[str, Any]) -> None:
        # views.publish posts to no channel, so there is no channel pace to keep.
        self._call("views_publish", user_id=user_id, view=view)
