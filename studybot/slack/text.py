"""Text as Slack sends it, turned back into what the person typed, once, at the transport boundary.

Slack escapes exactly three characters in a slash command's and a message's ``text``: ``&`` as
``&amp;``, ``<`` as ``&lt;``, ``>`` as ``&gt;`` (api.slack.com: "Formatting text", escaping). Real
mentions and channel links arrive unescaped, as markup: ``<@U123|ada>``, ``<#C123|fastai>``. The
domain works on what was typed; the templates escape it again for display (``mrkdwn``), so undoing
Slack's escaping here is what keeps ``fr&ob`` from coming back as ``fr&amp;amp;ob``."""

from __future__ import annotations


def unescape(text: str | None) -> str:
    """Slack's three entities back to characters; ``&amp;`` last, so ``&amp;lt;`` stays ``&lt;``."""
    return (text or "").replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
