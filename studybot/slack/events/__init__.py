"""Events. Every subscribed event has a handler, even a quiet one: bolt answers 404 otherwise and
Slack keeps retrying (see ../shared/reference/slack.md, pitfall 11)."""

from __future__ import annotations

import logging
import time

from slack_bolt import App

from studybot.bootstrap import Services
from studybot.messages import render
from studybot.slack.home import publish_home
from studybot.slack.listener_errors import chat_errors_logged
from studybot.slack.text import unescape
from studybot.slack.uploads import take_upload

log = logging.getLogger(__name__)

FILE_SHARED_GRACE_SECONDS = 2.0  # how long file_shared waits for the richer message event
THREAD_REPLY_SUBTYPES = (None, "thread_broadcast", "file_share")  # a person's reply (also sent to the channel, with a file)


def is_from_a_bot(event: dict) -> bool:
    """A post by an app: classic bots have subtype bot_message, modern ones a bot_id (and bot_profile)."""
    return bool(event.get("bot_id") or event.get("bot_profile") or event.get("subtype") == "bot_message")


def own_user_ids(body: dict, context) -> set[str]:
    """The bot's own user id: bolt learns it from auth.test once (context.bot_user_id); the event's
    ``authorizations`` name it too, so it is known even before that."""
    ids = {a.get("user_id") for a in body.get("authorizations") or [] if a.get("is_bot")}
    if context.get("bot_user_id"):
        ids.add(context["bot_user_id"])
    return ids - {None}


def register(app: App, services: Services, on_revoked=None) -> None:
    """``on_revoked(event, context)``: what app_uninstalled and tokens_revoked do beyond logging (OAuth
    installs: delete the team's tokens, slack/app.py); token mode has nothing to delete."""

    def app_home_opened(event):
        if event.get("tab", "home") == "home":
            publish_home(services, event["user"])

    def direct_message(event, client):
        if event.get("channel_type") in ("channel", "group"):  # message.channels, message.groups
            thread_reply(event)
            return
        if is_from_a_bot(event) or event.get("subtype") not in (None, "file_share"):
            # Our own posts and other bots', edits and joins are not requests (answering a bot risks a loop).
            log.debug("not a request: message %s (subtype %s, bot %s)", event.get("ts"), event.get("subtype"),
                      event.get("bot_id"))
            return
        if event.get("channel_type") != "im":
            return
        if event.get("files"):
            for shared in event["files"]:
                with chat_errors_logged(f"answer the upload {shared['id']} of {event['user']}"):
                    take_upload(services, client, event["user"], shared["id"], unescape(event.get("text")))
            return
        with chat_errors_logged(f"point {event.get('user')} at the commands"):
            services.chat.post(event["channel"], render("dm_help"))

    def thread_reply(event):
        """A reply in a channel's thread: counted when the thread is a lesson post's (services/lesson_threads.py).
        Every other channel message is none of the bot's business: nothing is answered, nothing stored."""
        thread_ts, ts = event.get("thread_ts"), event.get("ts")
        if (not thread_ts or thread_ts == ts or not event.get("user") or is_from_a_bot(event)
                or event.get("subtype") not in THREAD_REPLY_SUBTYPES):
            return
        recorded = services.lesson_threads.record_reply(event["channel"], thread_ts, event["user"], ts)
        if recorded is not None:
            log.debug("thread reply %s in %s lesson %s (counted: %s)", ts, recorded.cohort, recorded.lesson_key,
                      recorded.counted)

    def app_mention(event):
        if is_from_a_bot(event):
            # Another app mentioning us (a digest, a bridge, a bot that answers mentions): answering
            # could start a loop of bots answering each other. People are answered below.
            log.info("ignoring a mention by the bot %s", event.get("bot_id") or event.get("username"))
            return
        # Through the Chat port rather than bolt's say(): the reply lands in a cohort channel, where it
        # must keep the channel's pace with the lesson posts.
        with chat_errors_logged(f"answer a mention in {event.get('channel')}"):
            services.chat.reply_in_thread(event["channel"], event.get("thread_ts") or event.get("ts"),
                                          render("help", unknown=None, organizer=False))

    def member_joined_channel(event, body, context):
        if event.get("user") in own_user_ids(body, context):
            log.info("the bot itself joined %s: nobody to welcome", event.get("channel"))
            return
        cohort = services.cohorts.cohort_in_channel(event.get("channel") or "")
        if cohort is None or event.get("user") is None:
            return
        with chat_errors_logged(f"welcome {event['user']} to {cohort.name}"):
            services.chat.post_ephemeral(event["channel"], event["user"],
                                         render("channel_welcome", cohort_name=cohort.name))

    def file_shared(event, client):
        # Slack also sends a `message` event (with the exercise id as its text) for the same upload.
        # Give that one a head start; whichever comes second finds the file taken (UNIQUE file id).
        if event.get("channel_type", "im") != "im" and not str(event.get("channel_id", "")).startswith("D"):
            return
        time.sleep(FILE_SHARED_GRACE_SECONDS)
        with chat_errors_logged(f"answer the upload {event['file_id']} of {event['user_id']}"):
            take_upload(services, client, event["user_id"], event["file_id"], None)

    def uninstalled(event, context):
        log.warning("Slack says %s for team %s: its bot token no longer works until the app is reinstalled",
                    event.get("type"), context.get("team_id") or context.get("enterprise_id"))
        if on_revoked is not None:
            on_revoked(event, context)

    app.event("app_home_opened")(app_home_opened)
    app.event("message")(direct_message)
    app.event("app_mention")(app_mention)
    app.event("member_joined_channel")(member_joined_channel)
    app.event("file_shared")(file_shared)
    app.event("tokens_revoked")(uninstalled)
    app.event("app_uninstalled")(uninstalled)
