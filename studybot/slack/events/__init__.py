"""Events. Every subscribed event has a handler, even a quiet one: bolt answers 404 otherwise and
Slack keeps retrying (see ../shared/reference/slack.md, pitfall 11)."""

from __future__ import annotations

import logging
import time

from slack_bolt import App
from sqlalchemy import select

from studybot.bootstrap import Services
from studybot.db.models import Cohort
from studybot.messages import render
from studybot.slack.home import publish_home
from studybot.slack.uploads import take_upload

log = logging.getLogger(__name__)

FILE_SHARED_GRACE_SECONDS = 2.0  # how long file_shared waits for the richer message event


def register(app: App, services: Services) -> None:
    def app_home_opened(event, client):
        if event.get("tab", "home") == "home":
            publish_home(client, services, event["user"])

    def direct_message(event, client):
        if event.get("bot_id") or event.get("subtype") not in (None, "file_share"):
            return  # our own posts, edits and joins are not requests
        if event.get("channel_type") != "im":
            return
        if event.get("files"):
            for shared in event["files"]:
                take_upload(services, client, event["user"], shared["id"], event.get("text"))
            return
        message = render("dm_help")
        client.chat_postMessage(channel=event["channel"], text=message.text, blocks=message.blocks)

    def app_mention(event, say):
        message = render("help", unknown=None, organizer=False)
        say(text=message.text, blocks=message.blocks, thread_ts=event.get("thread_ts") or event.get("ts"))

    def member_joined_channel(event, client):
        with services.db.session() as s:
            cohort = s.scalar(select(Cohort).where(Cohort.channel_id == event.get("channel")))
            name = cohort.name if cohort else None
        if name is None or event.get("user") is None:
            return
        message = render("channel_welcome", cohort_name=name)
        client.chat_postEphemeral(channel=event["channel"], user=event["user"], text=message.text, blocks=message.blocks)

    def file_shared(event, client):
        # Slack also sends a `message` event (with the exercise id as its text) for the same upload.
        # Give that one a head start; whichever comes second finds the file taken (UNIQUE file id).
        if event.get("channel_type", "im") != "im" and not str(event.get("channel_id", "")).startswith("D"):
            return
        time.sleep(FILE_SHARED_GRACE_SECONDS)
        take_upload(services, client, event["user_id"], event["file_id"], None)

    def uninstalled(event):
        log.warning("Slack says %s: the bot token no longer works until the app is reinstalled", event.get("type"))

    app.event("app_home_opened")(app_home_opened)
    app.event("message")(direct_message)
    app.event("app_mention")(app_mention)
    app.event("member_joined_channel")(member_joined_channel)
    app.event("file_shared")(file_shared)
    app.event("tokens_revoked")(uninstalled)
    app.event("app_uninstalled")(uninstalled)
