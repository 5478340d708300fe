"""Every user-facing message is a Jinja2 template here: one file per kind of message.

A message template defines two blocks: ``text`` (the plain fallback, also what the shell prints)
and ``blocks`` (a JSON list of Block Kit blocks). A view template (modal, App Home) defines ``view``.
Wording lives in the templates; code only chooses the template and passes facts.

Slack's size limits live in studybot/messages/limits.py. Templates cut their lists with them (the
``limits`` global, the ``chunks`` and ``clip`` filters, an explicit "…and N more"); ``render`` and
``render_view`` then enforce them on whatever a template produced, so nothing Slack would refuse
(``invalid_blocks``) ever leaves here."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined

from studybot.messages import limits
from studybot.ports import Message


def when(value: datetime) -> str:
    """A cohort-local datetime as people read it: Mon 12 Jan 2027, 18:00 CET."""
    return value.strftime("%a %d %b %Y, %H:%M %Z")


def slack_date(value: datetime) -> str:
    """Slack shows this in each reader's own timezone; the fallback is the cohort's local time."""
    return f"<!date^{int(value.timestamp())}^{{date_short_pretty}} at {{time}}|{when(value)}>"


def duration(value: timedelta) -> str:
    """timedelta(days=7, hours=2) -> '7 days 2 hours': what an organizer reads, not 7 days, 2:00:00."""
    minutes = int(value.total_seconds() // 60)
    days, hours, mins = minutes // 1440, minutes % 1440 // 60, minutes % 60
    parts = [(days, "day"), (hours, "hour"), (mins, "minute")]
    words = [f"{n} {unit}{'s' if n != 1 else ''}" for n, unit in parts if n]
    return " ".join(words[:2]) or "less than a minute"


def escape_mrkdwn(value: Any) -> str:
    """Slack's three control characters; user-typed text must not become mentions or links."""
    return str(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


USER_MENTION = re.compile(r"(<@[UW][A-Z0-9]+(?:\|[^<>&]*)?>)")  # <@U123> or <@U123|ada>, as Slack sends them


def escape_keeping_mentions(value: Any) -> str:
    """Like ``escape_mrkdwn``, but a user mention stays a mention: for text a person wrote in Slack
    where a mention is meant (a disqualification's --reason naming who it was copied from).
    Everything else stays inert: ``<!channel>``, ``<!here>``, links and channel links included."""
    parts = USER_MENTION.split(str(value))
    return "".join(part if i % 2 else escape_mrkdwn(part) for i, part in enumerate(parts))


@lru_cache(maxsize=1)
def environment() -> Environment:
    env = Environment(
        loader=PackageLoader("studybot", "messages"),
        undefined=StrictUndefined,  # a missing fact is a bug, not an empty string in a learner's DM
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )
    env.filters["mrkdwn"] = escape_mrkdwn
    env.filters["mrkdwn_mentions"] = escape_keeping_mentions
    env.filters["when"] = when
    env.filters["slackdate"] = slack_date
    env.filters["duration"] = duration
    env.filters["mention"] = lambda user_id: f"<@{user_id}>"
    env.filters["json"] = lambda value: json.dumps(value, ensure_ascii=False)
    env.filters["md"] = lambda value: json.dumps(escape_mrkdwn(value), ensure_ascii=False)[1:-1]
    env.filters["clip"] = limits.clip
    env.filters["chunks"] = limits.chunks
    env.globals["limits"] = limits
    env.globals["more"] = limits.more
    return env


def _render_block(kind: str, block: str, context: dict[str, Any]) -> str:
    template = environment().get_template(f"{kind}.j2")
    if block not in template.blocks:
        raise KeyError(f"template {kind}.j2 has no block {block!r}")
    return "".join(template.blocks[block](template.new_context(context))).strip()


def render(kind: str, /, **context: Any) -> Message:
    """Render message template ``kind`` into text and Block Kit blocks."""
    text = _render_block(kind, "text", context)
    raw_blocks = _render_block(kind, "blocks", context)
    try:
        blocks = json.loads(raw_blocks)
    except json.JSONDecodeError as error:  # a template bug: fail loudly, with the offending JSON
        raise ValueError(f"template {kind}.j2 rendered invalid Block Kit JSON: {error}\n{raw_blocks}") from None
    return Message(text=limits.fit_text(text), blocks=limits.fit_blocks(blocks, limits.MESSAGE_BLOCKS_MAX, f"{kind}.j2"))


def render_view(kind: str, /, **context: Any) -> dict[str, Any]:
    """Render a view template (modal or App Home) into a Block Kit view object."""
    raw = _render_block(kind, "view", context)
    try:
        view = json.loads(raw)
    except json.JSONDecodeError as error:
        raise ValueError(f"template {kind}.j2 rendered an invalid view: {error}\n{raw}") from None
    return limits.fit_view(view, f"{kind}.j2")


def render_text(kind: str, /, **context: Any) -> str:
    """The plain text of a template: for views, the ``text`` block that the shell shows."""
    return _render_block(kind, "text", context)
