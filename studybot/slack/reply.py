"""Turning a domain Reply into Slack calls: a response_url answer, or a modal."""

from __future__ import annotations

from studybot.commands import Reply
from studybot.messages import render


def respond_with(respond, reply: Reply) -> None:
    message = render(reply.template, **reply.context)
    respond(text=message.text, blocks=message.blocks, response_type="in_channel" if reply.public else "ephemeral",
            replace_original=False)
