"""build_app(): the bolt App with every listener registered. Thin on purpose."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

from slack_bolt import App, BoltResponse

from studybot.bootstrap import Services
from studybot.slack import actions, commands, events, views
from studybot.slack.chat import SlackChat

log = logging.getLogger(__name__)

LISTENER_THREADS = 16  # bolt's default is 5; slash commands, events and home refreshes share these


def build_app(services: Services, chat: SlackChat, signing_secret: str | None,
              listener_executor: ThreadPoolExecutor | None = None) -> App:
    """``listener_executor``: the pool bolt runs listeners in, for a caller that waits for it on shutdown."""
    app = App(
        client=chat.client,
        signing_secret=signing_secret,
        # Socket Mode has no signing secret; HTTP always verifies signatures (401 otherwise).
        request_verification_enabled=signing_secret is not None,
        token_verification_enabled=False,  # no auth.test on start-up: start fast, fail on first use
        listener_executor=listener_executor or listener_pool(),
    )
    app.use(_dedupe_events(services))
    commands.register(app, services)
    events.register(app, services)
    views.register(app, services)
    actions.register(app, services)
    return app


def listener_pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=LISTENER_THREADS, thread_name_prefix="listener")


def _dedupe_events(services: Services):
    """Slack redelivers an event it thinks we missed (X-Slack-Retry-Num); handle each event_id once."""

    def dedupe(body, next):  # noqa: A002 - bolt's argument name
        event_id = body.get("event_id") if body.get("type") == "event_callback" else None
        if event_id and not services.processed_events.first_time(event_id):
            log.info("event %s already handled; ignoring the retry", event_id)
            return BoltResponse(status=200, body="")
        return next()

    return dedupe
