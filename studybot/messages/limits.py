"""Slack's size limits, in one place: templates read them (the ``limits`` global), and ``fit_blocks``
and ``fit_text`` enforce them on every rendered message and view, so no template can exceed them.

Slack refuses a whole message or view over any of these (``invalid_blocks``), and a refused post is
lost for good: a list that grows (cohorts, lessons) must be cut with an explicit "…and N more",
never silently. Numbers from Slack's Block Kit reference (docs.slack.dev/reference/block-kit)."""

from __future__ import annotations

import copy
import logging
from typing import Any

log = logging.getLogger(__name__)

# ---- counts
MESSAGE_BLOCKS_MAX = 50  # blocks in one message (chat.postMessage, chat.update, a response_url answer)
VIEW_BLOCKS_MAX = 100  # blocks in a modal or the App Home tab
SECTION_FIELDS_MAX = 10  # fields in one section block
CONTEXT_ELEMENTS_MAX = 10  # elements in one context block
ACTIONS_ELEMENTS_MAX = 25  # elements in one actions block
SELECT_OPTIONS_MAX = 100  # options in one static select
DIGEST_NAMES_SHOWN = 40  # people named per list in an organizers' digest (active, quiet, passed); the rest counted
HOME_COHORTS_SHOWN = 20  # a learner's own cohorts on the App Home (2 blocks each); the rest: /study status

# ---- characters
SECTION_TEXT_MAX = 3000  # a section's text
LOG_TAIL_MAX = 1500  # characters of a learner's log tail shown in the result DM, after escaping (fits a section with room)
FIELD_TEXT_MAX = 2000  # one section field
CONTEXT_TEXT_MAX = 3000  # one context element's text
HEADER_TEXT_MAX = 150  # a header block's plain text
BUTTON_TEXT_MAX = 75  # a button's plain text
BUTTON_VALUE_MAX = 2000  # a button's value
OPTION_TEXT_MAX = 75  # an option's plain text in a select
OPTION_VALUE_MAX = 150  # an option's value
MODAL_TITLE_MAX = 24  # a modal's title (and its submit and close buttons)
MESSAGE_TEXT_MAX = 40000  # chat.postMessage's text: Slack truncates beyond this
FALLBACK_TEXT_MAX = 4000  # what we allow the plain fallback (notifications, the shell): Slack advises ~4000

ELLIPSIS = "…"


def more(count: int) -> str:
    """The words that end a list cut short: '…and 12 more'."""
    return f"{ELLIPSIS}and {count} more"


def clip(value: Any, limit: int) -> str:
    """``value`` as text of at most ``limit`` characters, ending in … when it was cut."""
    text = str(value)
    return text if len(text) <= limit else text[: max(limit - 1, 0)] + ELLIPSIS


def chunks(text: str, max_chunks: int, limit: int = SECTION_TEXT_MAX, sep: str = "\n") -> list[str]:
    """Split ``text`` at ``sep`` into at most ``max_chunks`` pieces of at most ``limit`` characters.

    Items (the pieces between separators: one cohort, one lesson) are never split across two pieces;
    an item longer than a piece is clipped. Items that do not fit are counted in a last line,
    "…and N more", inside the last piece."""
    items = [item for item in text.split(sep) if item.strip()] if text.strip() else []
    pieces: list[str] = []
    current = ""
    shown = 0
    for item in items:
        item = clip(item, limit)
        joined = f"{current}{sep}{item}" if current else item
        if len(joined) <= limit:
            current = joined
            shown += 1
            continue
        if len(pieces) + 1 >= max_chunks:
            break
        pieces.append(current)
        current = item
        shown += 1
    omitted = len(items) - shown
    if omitted:
        tail = more(omitted)
        while current and len(current) + len(sep) + len(tail) > limit:  # make room for the tail
            current, _, _ = current.rpartition(sep)
            omitted += 1
            tail = more(omitted)
        current = f"{current}{sep}{tail}" if current else tail
    if current or not pieces:
        pieces.append(current)
    return pieces


def fit_text(text: str, limit: int = FALLBACK_TEXT_MAX) -> str:
    """The fallback text cut at a line break to fit ``limit``, saying how many lines were left out."""
    if len(text) <= limit:
        return text
    lines = text.split("\n")
    kept: list[str] = []
    size = 0
    reserve = len(more(len(lines))) + 1
    for line in lines:
        if size + len(line) + 1 > limit - reserve:
            break
        kept.append(line)
        size += len(line) + 1
    if not kept:  # one huge line
        return clip(text, limit)
    return "\n".join(kept + [more(len(lines) - len(kept)) + " lines"])


def fit_blocks(blocks: list[dict[str, Any]], max_blocks: int, where: str) -> list[dict[str, Any]]:
    """Blocks within Slack's limits; the last line of defence (templates should cut lists themselves):
    over-long texts are clipped, and blocks past ``max_blocks`` become one "…and N more" context."""
    fitted = [_fit_block(copy.deepcopy(block)) for block in blocks]
    if fitted != blocks:
        log.warning("%s: rendered blocks were over Slack's limits and were clipped", where)
    if len(fitted) > max_blocks:
        log.warning("%s: %d blocks, over Slack's %d; the rest is cut", where, len(fitted), max_blocks)
        omitted = len(fitted) - (max_blocks - 1)
        fitted = fitted[: max_blocks - 1] + [
            {"type": "context", "elements": [{"type": "mrkdwn", "text": more(omitted) + " not shown"}]}]
    return fitted


def _fit_text_object(obj: Any, limit: int) -> None:
    if isinstance(obj, dict) and isinstance(obj.get("text"), str):
        obj["text"] = clip(obj["text"], limit)


def _fit_block(block: dict[str, Any]) -> dict[str, Any]:
    kind = block.get("type")
    if kind == "section":
        _fit_text_object(block.get("text"), SECTION_TEXT_MAX)
        if isinstance(block.get("fields"), list):
            block["fields"] = block["fields"][:SECTION_FIELDS_MAX]
            for field in block["fields"]:
                _fit_text_object(field, FIELD_TEXT_MAX)
        _fit_element(block.get("accessory"))
    elif kind == "header":
        _fit_text_object(block.get("text"), HEADER_TEXT_MAX)
    elif kind == "context" and isinstance(block.get("elements"), list):
        elements = block["elements"]
        if len(elements) > CONTEXT_ELEMENTS_MAX:
            elements = elements[: CONTEXT_ELEMENTS_MAX - 1] + [
                {"type": "mrkdwn", "text": more(len(elements) - CONTEXT_ELEMENTS_MAX + 1)}]
        for element in elements:
            _fit_text_object(element, CONTEXT_TEXT_MAX)
        block["elements"] = elements
    elif kind == "actions" and isinstance(block.get("elements"), list):
        block["elements"] = block["elements"][:ACTIONS_ELEMENTS_MAX]
        for element in block["elements"]:
            _fit_element(element)
    elif kind == "input":
        _fit_element(block.get("element"))
    return block


def _fit_element(element: Any) -> None:
    if not isinstance(element, dict):
        return
    if element.get("type") == "button":
        _fit_text_object(element.get("text"), BUTTON_TEXT_MAX)
    if isinstance(element.get("options"), list):
        element["options"] = element["options"][:SELECT_OPTIONS_MAX]
        for option in element["options"]:
            _fit_text_object(option.get("text"), OPTION_TEXT_MAX)
    if isinstance(element.get("initial_option"), dict):
        _fit_text_object(element["initial_option"].get("text"), OPTION_TEXT_MAX)


def fit_view(view: dict[str, Any], where: str) -> dict[str, Any]:
    """A modal or App Home view within Slack's limits (blocks, title and its buttons)."""
    view = dict(view)
    view["blocks"] = fit_blocks(view.get("blocks", []), VIEW_BLOCKS_MAX, where)
    if view.get("type") == "modal":
        for key in ("title", "submit", "close"):
            if isinstance(view.get(key), dict):
                view[key] = dict(view[key])
                _fit_text_object(view[key], MODAL_TITLE_MAX)
    return view
