"""/study: ack at once, then answer through the response_url (or open the cohort form)."""

from __future__ import annotations

import logging

from slack_bolt import App

from studybot.bootstrap import Services
from studybot.curricula import load_curricula
from studybot.messages import render_view
from studybot.slack.reply import respond_with
from studybot.slack.text import unescape

log = logging.getLogger(__name__)


def register(app: App, services: Services) -> None:
    def study(ack, command, respond, client):
        text = unescape(command.get("text", ""))  # Slack's &amp; &lt; &gt;: the domain sees what was typed
        if services.commands.answers_from_database(text):
            # A few milliseconds of database work: answer in the ack itself, no second round trip.
            message = services.reply_cache.answer(text, command["user_id"])
            ack(text=message.text, blocks=message.blocks, response_type="ephemeral")
            return
        ack()  # within Slack's 3 s, before any Slack API call
        reply = services.commands.handle(text, command["user_id"])
        if reply.modal:
            # Bolt's own client: views.open answers this command (its trigger_id is valid for 3 seconds
            # and only here); ack() and respond() answer the request itself. None of them is a post.
            client.views_open(trigger_id=command["trigger_id"], view=render_view(
                reply.modal, curricula=list(load_curricula(services.cohorts.curricula_dir).values()),
                default_tz=_user_tz(client, command["user_id"])))
            return
        respond_with(respond, reply)

    app.command("/study")(study)


def _user_tz(client, user_id: str) -> str:
    try:
        return client.users_info(user=user_id)["user"].get("tz") or "UTC"
    except Exception:  # a default timezone is only a convenience in the form
        log.info("no timezone for %s; the form defaults to UTC", user_id)
        return "UTC"
