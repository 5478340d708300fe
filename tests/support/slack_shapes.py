"""Payloads and answers the way Slack really sends them, for the cases our happy-path fixtures miss.

Written for this project from Slack's API reference (docs.slack.dev/reference: the file object,
files.info, conversations.info/join/history, message events and their subtypes, member_joined_channel,
slash commands' escaping rules) and the field sets the public Slack SDKs record in their test
fixtures. Only the fields that matter to studybot are kept, with their real names and types; each
function returns a fresh dict so a test may change it freely.
"""

from __future__ import annotations

from tests.support.fake_slack import BOT_ID, BOT_USER_ID, TEAM_ID


# ---------------------------------------------------------------------------- files.info: file objects
def external_file(file_id: str = "FEXT1", name: str = "solution.ipynb", user: str = "U1") -> dict:
    """A file "shared" as a link to Google Drive (or Dropbox, Box…): Slack stores only the link.

    The file object says ``mode: "external"`` and ``is_external: true``; ``url_private`` points at the
    other service and there is no ``url_private_download`` at all: nothing to download with our token."""
    return {
        "id": file_id, "created": 1700000000, "timestamp": 1700000000, "name": name, "title": name,
        "mimetype": "application/vnd.google-apps.document", "filetype": "gdoc", "pretty_type": "Google Doc",
        "user": user, "user_team": TEAM_ID, "editable": False, "size": 0, "mode": "external",
        "is_external": True, "external_type": "gdrive", "external_id": "1a2b3c4d5e6f",
        "external_url": f"https://drive.google.com/file/d/1a2b3c4d5e6f/view?name={name}",
        "is_public": False, "public_url_shared": False, "display_as_bot": False, "username": "",
        "url_private": f"https://drive.google.com/file/d/1a2b3c4d5e6f/view?name={name}",
        "permalink": f"https://studygroup.slack.com/files/{user}/{file_id}/{name}",
        "has_rich_preview": False, "file_access": "visible", "channels": [], "groups": [], "ims": [], "shares": {},
    }


def hidden_by_limit_file(file_id: str = "FHID1") -> dict:
    """A file on a free workspace past its storage/history limit: Slack hides everything but the id."""
    return {"id": file_id, "mode": "hidden_by_limit"}


def tombstone_file(file_id: str = "FDEL1") -> dict:
    """A deleted file still referenced by a message: a tombstone with no name and no URLs."""
    return {"id": file_id, "mode": "tombstone"}


# ---------------------------------------------------------------------------- error answers
def api_error(error: str, **extra) -> dict:
    """Slack's failure answer: HTTP 200 with ``ok: false`` and an ``error`` code (some add fields)."""
    return {"ok": False, "error": error, **extra}


FILE_NOT_FOUND = "file_not_found"  # files.info of an id that never existed (or the bot cannot see)
FILE_DELETED = "file_deleted"  # files.info of a file deleted between the event and our call
NOT_IN_CHANNEL = "not_in_channel"  # conversations.history of a channel the bot is not a member of
IS_ARCHIVED = "is_archived"  # chat.postMessage / conversations.join in an archived channel
CHANNEL_NOT_FOUND = "channel_not_found"
ACCOUNT_INACTIVE = "account_inactive"  # the token's user (the bot) was deactivated, or the DM's user was
INVALID_BLOCKS = "invalid_blocks"  # Block Kit over a limit or malformed: the same post never succeeds
MISSING_SCOPE = "missing_scope"  # e.g. conversations.join without channels:join


def missing_scope(needed: str, provided: str = "commands,chat:write,chat:write.public,channels:read") -> dict:
    return api_error(MISSING_SCOPE, needed=needed, provided=provided)


# ---------------------------------------------------------------------------- conversations.info
def public_channel(channel_id: str = "CPUB1", name: str = "fastai-open", *, is_member: bool = False,
                   is_archived: bool = False) -> dict:
    """conversations.info's ``channel`` for a public channel; ``is_member`` says whether the bot is in it."""
    return {
        "id": channel_id, "name": name, "name_normalized": name, "is_channel": True, "is_group": False,
        "is_im": False, "is_mpim": False, "is_private": False, "is_archived": is_archived, "is_general": False,
        "is_shared": False, "is_ext_shared": False, "is_org_shared": False, "is_member": is_member,
        "created": 1700000000, "creator": "UADMIN", "unlinked": 0, "context_team_id": TEAM_ID,
        "topic": {"value": "", "creator": "", "last_set": 0}, "purpose": {"value": "", "creator": "", "last_set": 0},
        "previous_names": [],
    }


def archived_channel(channel_id: str = "CARCH1", name: str = "fastai-2023") -> dict:
    """An archived channel: conversations.info still answers, ``is_archived: true``; posts fail."""
    return public_channel(channel_id, name, is_member=True, is_archived=True)


# ---------------------------------------------------------------------------- events
def bot_mention(channel: str = "CSTUDY", bot_id: str = "BOTHER", text: str = f"<@{BOT_USER_ID}> help") -> dict:
    """An app_mention posted by another app: it carries ``bot_id`` (and ``bot_profile``), and a
    classic bot's post also ``subtype: bot_message`` with ``username`` instead of ``user``."""
    return {
        "type": "app_mention", "subtype": "bot_message", "text": text, "ts": "1700000100.000100",
        "channel": channel, "event_ts": "1700000100.000100", "bot_id": bot_id, "username": "otherbot",
        "bot_profile": {"id": bot_id, "app_id": "AOTHER", "name": "otherbot", "deleted": False, "team_id": TEAM_ID},
    }


def bot_app_mention_with_user(channel: str = "CSTUDY", bot_id: str = "BOTHER", user: str = "UOTHERBOT") -> dict:
    """A modern app's post: it has a ``user`` (the app's bot user) *and* a ``bot_id``, no subtype."""
    return {
        "type": "app_mention", "user": user, "text": f"<@{BOT_USER_ID}> hello", "ts": "1700000101.000100",
        "channel": channel, "event_ts": "1700000101.000100", "bot_id": bot_id, "app_id": "AOTHER",
        "bot_profile": {"id": bot_id, "app_id": "AOTHER", "name": "otherbot", "deleted": False, "team_id": TEAM_ID},
    }


def bot_message_in_dm(user: str = "U1", bot_id: str = "BOTHER") -> dict:
    """message.im from another app in the DM it shares with a learner (a classic bot: subtype
    bot_message, ``username``, no ``user``)."""
    return {"type": "message", "subtype": "bot_message", "channel": f"D{user}", "channel_type": "im",
            "text": "digits", "ts": "1700000400.000400", "bot_id": bot_id, "username": "otherbot",
            "bot_profile": {"id": bot_id, "app_id": "AOTHER", "name": "otherbot", "deleted": False, "team_id": TEAM_ID}}


def member_joined_channel(user: str, channel: str = "CSTUDY", inviter: str | None = "UADMIN") -> dict:
    """member_joined_channel; when ``user`` is the bot's own user id, it is the bot being added."""
    event = {"type": "member_joined_channel", "user": user, "channel": channel, "channel_type": "C",
             "team": TEAM_ID, "event_ts": "1700000200.000200"}
    if inviter:
        event["inviter"] = inviter
    return event


def file_share_message(file: dict, user: str = "U1", text: str = "digits") -> dict:
    """A DM with an attachment: subtype file_share, ``files[]`` with the file's (possibly partial) object."""
    return {"type": "message", "subtype": "file_share", "channel": f"D{user}", "channel_type": "im", "user": user,
            "text": text, "ts": "1700000300.000300", "upload": False, "display_as_bot": False,
            "files": [file]}


# ---------------------------------------------------------------------------- escaped text
def escaped(text: str) -> str:
    """What Slack puts in a slash command's or message's ``text`` for what the person typed:
    ``&``, ``<`` and ``>`` become ``&amp;``, ``&lt;`` and ``&gt;`` (and nothing else is escaped).
    Real mentions and channel links arrive as markup, e.g. ``<@U123|ada>`` and ``<#C123|fastai>``."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


SELF = {"user_id": BOT_USER_ID, "bot_id": BOT_ID}
