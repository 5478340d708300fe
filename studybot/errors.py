"""The one exception hierarchy of studybot. Callers catch ``StudybotError``.

    StudybotError
    ├── ConfigError          a missing or malformed environment variable; stops start-up
    ├── CurriculumError      a curriculum file that cannot be read or is incomplete
    ├── InputError           bad user input (a slash command, a modal, a shell line)
    │   └── FieldError       ... naming one field: ``field`` says which
    ├── NotFound             a cohort, lesson or member that does not exist
    ├── Conflict             a duplicate (cohort name, membership)
    ├── PermissionDenied     an organizer command from a non-organizer
    └── ChatError            the chat transport failed after its retries
        └── HistoryUnreadable  ... to read a channel's history (the bot is not in it)

Every user-facing error carries ``template`` and ``context`` so transports can
render it through the same Jinja2 templates as any other message.
"""

from __future__ import annotations


class StudybotError(Exception):
    """Base class for every error studybot raises on purpose."""

    template = "error"

    def __init__(self, message: str, **context: object) -> None:
        super().__init__(message)
        self.message = message
        self.context = context


class ConfigError(StudybotError):
    """An environment variable is missing or malformed."""


class CurriculumError(StudybotError):
    """A curriculum file cannot be read, or lacks a required field."""


class InputError(StudybotError):
    """The user typed something studybot cannot act on."""


class FieldError(InputError):
    """One named field of a command or form is invalid."""

    def __init__(self, field: str, message: str, **context: object) -> None:
        super().__init__(message, field=field, **context)
        self.field = field


class NotFound(StudybotError):
    """A cohort, lesson or membership that does not exist."""


class Conflict(StudybotError):
    """Something with that name or key already exists."""


class PermissionDenied(StudybotError):
    """The caller is not an organizer of this cohort or workspace."""


class ChatError(StudybotError):
    """The chat transport failed after its own retries.

    The transport decides what the failure means, so every caller can act on it alike:
    ``code``: the transport's error code (Slack's ``error``), if it answered one;
    ``permanent``: the same call will fail again until a person fixes something (the bot was removed
    from the channel, the channel is archived, the blocks are invalid): do not retry it;
    ``may_have_posted``: the request may have been carried out although it failed (a timeout, a 5xx);
    False when the transport answered a refusal, so nothing was posted."""

    def __init__(self, message: str, *, code: str | None = None, permanent: bool = False,
                 may_have_posted: bool = True, **context: object) -> None:
        super().__init__(message, **context)
        self.code, self.permanent, self.may_have_posted = code, permanent, may_have_posted


class HistoryUnreadable(ChatError):
    """The channel's history cannot be read (Slack: not_in_channel), so whether an earlier post
    landed there cannot be checked. Posting may still work (Slack's chat:write.public)."""
