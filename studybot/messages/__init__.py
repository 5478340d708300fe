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


def escaped_tail(value: Any, limit: int) -> str:
    """The end of a log, escaped FIRST and then cut to ``limit`` characters (cutting first let every
    & < > grow into an entity afterwards, past Slack's section limit): from a line break when one is
    in the kept part, else from the first whole character (never half of an ``&amp;``)."""
    text = escape_mrkdwn(value).rstrip("\n")
    if len(text) <= limit:
        return text
    tail = text[-limit:]
    newline = tail.find("\n")
    if 0 <= newline < len(tail) - 1:
        return tail[newline + 1:]
    semicolon, ampersand = tail.find(";"), tail.find("&")
    if 0 <= semicolon < 5 and (ampersand == -1 or semicolon < ampersand):  # we cut inside an entity
        return tail[semicolon + 1:]
    return tail


def escape_keeping_mentions(value: Any) -> str:
    """Like ``escape_mrkdwn``, but a user mention stays a mention: for text a person wrote in Slack
    where a mention is meant (a disqualification's --reason naming who it was copied from).
    Everything else stays inert: ``<!channel>``, ``<!here>``, links and channel links included."""
    parts = USER_MENTION.split(str(value))
    return "".join(part if i % 2 else escape_mrkdwn(part) for i, part in enumerate(parts))


# How the bot names and shows the grader's metrics (grader/metrics.py; the bot never imports the
# grader): fractions as percentages, the others as plain numbers with three decimals.
METRIC_NAMES = {"accuracy": "accuracy", "error_rate": "error rate", "rmse": "RMSE", "mae": "MAE",
                "pearson": "Pearson r"}
FRACTION_METRICS = ("accuracy", "error_rate")


def metric_name(metric: str | None) -> str:
    return METRIC_NAMES.get(metric or "accuracy", str(metric))


def score_value(value: float | None, metric: str | None = "accuracy", decimals: int | None = None) -> str:
    """0.981 -> '98.10%' for accuracy-type metrics; 0.912 -> '0.912' for the others; '–' for none."""
    if value is None:
        return "–"
    if (metric or "accuracy") in FRACTION_METRICS:
        return f"{100 * value:.{2 if decimals is None else decimals}f}%"
    return f"{value:.{3 if decimals is None else decimals}f}"


def target_value(value: float | None, metric: str | None = "accuracy", higher_is_better: bool | None = True) -> str:
    """The target as the learner must read it: '97.00%' (at least), '≤ 0.950' (at most)."""
    text = score_value(value, metric)
    return text if higher_is_better is not False else f"≤ {text}"


def score_phrase(metric: str | None, higher_is_better: bool | None, score: float | None,
                 target: float | None) -> str:
    """'98.10% accuracy (target 97.00%)' or 'RMSE 0.912 (target ≤ 0.950)'."""
    metric = metric or "accuracy"
    goal = f" (target {target_value(target, metric, higher_is_better)})" if target is not None else ""
    if metric == "accuracy":
        return f"{score_value(score, metric)} accuracy{goal}"
    return f"{metric_name(metric)} {score_value(score, metric)}{goal}"


def short_score(metric: str | None, score: float | None, decimals: int | None = None) -> str:
    """'98.10%' for accuracy (as boards always showed it), 'RMSE 0.912' for the other metrics."""
    metric = metric or "accuracy"
    value = score_value(score, metric, decimals)
    return value if metric == "accuracy" else f"{metric_name(metric)} {value}"


def submission_score(submission) -> str | None:
    """A submission row's score in its metric, or None when it has none (rows before 0007: accuracy)."""
    score = submission.score if submission.score is not None else submission.accuracy
    return None if score is None else short_score(submission.metric, score)


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
    env.filters["mrkdwn_tail"] = escaped_tail
    env.filters["when"] = when
    env.filters["slackdate"] = slack_date
    env.filters["duration"] = duration
    env.filters["mention"] = lambda user_id: f"<@{user_id}>"
    env.filters["json"] = lambda value: json.dumps(value, ensure_ascii=False)
    env.filters["score"] = score_value
    env.filters["metric_name"] = metric_name
    env.globals["score_phrase"] = score_phrase
    env.globals["short_score"] = short_score
    env.globals["submission_score"] = submission_score
    env.globals["target_value"] = target_value
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
