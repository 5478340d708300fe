"""build_app(): the bolt App with every listener registered. Thin on purpose."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

from slack_bolt import App, BoltResponse
from slack_bolt.listener.builtins import TokenRevocationListeners
from slack_bolt.oauth.oauth_settings import OAuthSettings

from studybot.bootstrap import Services
from studybot.slack import actions, commands, events, views
from studybot.slack.chat import SlackChat
from studybot.slack.workspaces import ContextCopyingExecutor, InstallationChat, WorkspaceApp, team_of

log = logging.getLogger(__name__)

LISTENER_THREADS = 16  # bolt's default is 5; slash commands, events and home refreshes share these


def build_app(services: Services, chat: SlackChat | InstallationChat, signing_secret: str | None,
              oauth: OAuthSettings | None = None, listener_executor: ThreadPoolExecutor | None = None) -> App:
    """One workspace on chat's token; or, with ``oauth`` (and an InstallationChat), every workspace that
    installed the app, each request authorized by its team's installation (bolt's authorize).
    ``listener_executor``: the pool bolt runs listeners in, for a caller that waits for it on shutdown."""
    app = WorkspaceApp(  # each request acts for its team (slack/workspaces.py)
        client=chat.client,
        signing_secret=signing_secret,
        # Socket Mode has no signing secret; HTTP always verifies signatures (401 otherwise).
        request_verification_enabled=signing_secret is not None,
        token_verification_enabled=False,  # no auth.test on start-up: start fast, fail on first use
        oauth_settings=oauth,
        # The team in scope (a context variable) follows each request into its listener thread.
        listener_executor=listener_executor or listener_pool(),
    )
    app.use(_dedupe_events(services))
    commands.register(app, services)
    events.register(app, services, on_revoked=_revocations(oauth, chat) if oauth is not None else None)
    views.register(app, services)
    actions.register(app, services)
    return app


def _revocations(oauth: OAuthSettings, chat: InstallationChat):
    """app_uninstalled and tokens_revoked delete the team's tokens from the installation store (bolt's own
    handlers) and drop the clients kept for it, so nothing posts there again until it is reinstalled."""
    builtin = TokenRevocationListeners(oauth.installation_store)

    def revoked(event: dict, context) -> None:
        if event.get("type") == "app_uninstalled":
            builtin.handle_app_uninstalled_events(context)
        else:
            builtin.handle_tokens_revoked_events(event, context)
        team = team_of(context)
        if team is not None:
            chat.forget(team)

    return revoked


def listener_pool() -> ThreadPoolExecutor:
    """bolt's listener threads; each copies the submitting thread's context, so the team in scope
    (a context variable) follows a request into its listener."""
    return ContextCopyingExecutor(max_workers=LISTENER_THREADS, thread_name_prefix="listener")


def _dedupe_events(services: Services):
    """Slack redelivers an event it thinks we missed (X-Slack-Retry-Num); handle each event_id once."""

    def dedupe(body, next):  # noqa: A002 - bolt's argument name
        event_id = body.get("event_id") if body.get("type") == "event_callback" else None
        if event_id and not services.processed_events.first_time(event_id):
            log.info("event %s already handled; ignoring the retry", event_id)
            return BoltResponse(status=200, body="")
        return next()

    return dedupe
