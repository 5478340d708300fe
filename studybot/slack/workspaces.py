"""Many workspaces: bolt's OAuth install on our database, the team of each request, the token of each team.

- ``oauth_stores`` / ``oauth_settings``: slack_sdk's SQLAlchemy installation and OAuth state stores on
  our engine (their tables come from migration 0008, never create_all), behind bolt's OAuthSettings
  (the install page /slack/install, the redirect /slack/oauth_redirect).
- ``team_of`` and ``WorkspaceApp``: the Slack layer reads the team (and Enterprise Grid organisation)
  from the payload, as bolt's request context has it, and the work of the request acts for it
  (studybot/teams.py). ``ContextCopyingExecutor`` carries it into bolt's listener threads.
- ``InstallationChat``: the Chat port for many workspaces. The clock and the feedback loop post outside
  any request, so no bolt ``context.client`` exists there: each call looks up the bot token of the team
  in scope in the installation store (an org-wide install serves every workspace of its organisation)."""

from __future__ import annotations

import contextvars
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from slack_bolt import App, BoltContext, BoltRequest, BoltResponse
from slack_bolt.oauth.oauth_settings import OAuthSettings
from slack_sdk.oauth.installation_store.models.bot import Bot
from slack_sdk.oauth.installation_store.sqlalchemy import SQLAlchemyInstallationStore
from slack_sdk.oauth.state_store.sqlalchemy import SQLAlchemyOAuthStateStore

from studybot.config import Settings
from studybot.errors import ChatError
from studybot.ports import Channel, Message
from studybot.slack.chat import ChannelPacer, RetryPolicy, SlackChat, make_web_client
from studybot.teams import Team, acting_for, current_team, single_team

log = logging.getLogger(__name__)

INSTALL_PATH = "/slack/install"
REDIRECT_PATH = "/slack/oauth_redirect"


@dataclass(frozen=True)
class OAuthStores:
    installations: SQLAlchemyInstallationStore
    states: SQLAlchemyOAuthStateStore


def oauth_stores(settings: Settings, engine) -> OAuthStores:
    """The stores on our database's engine (Database.engine): the tables are migration 0008's."""
    return OAuthStores(SQLAlchemyInstallationStore(client_id=settings.slack_client_id, engine=engine),
                       SQLAlchemyOAuthStateStore(expiration_seconds=settings.oauth_state_seconds, engine=engine))


# slack_sdk logs every response body at DEBUG, and oauth.v2.access answers with the new bot token: with OAuth
# installs, that logger stays at INFO whatever STUDYBOT_LOG_LEVEL says (it redacts the Authorization header only).
TOKEN_BEARING_LOGGER = "slack_sdk.web.base_client"


def oauth_settings(settings: Settings, stores: OAuthStores) -> OAuthSettings:
    sdk_log = logging.getLogger(TOKEN_BEARING_LOGGER)
    sdk_log.setLevel(max(sdk_log.getEffectiveLevel(), logging.INFO))
    return OAuthSettings(
        client_id=settings.slack_client_id, client_secret=settings.slack_client_secret,
        scopes=list(settings.slack_scopes), install_path=INSTALL_PATH, redirect_uri_path=REDIRECT_PATH,
        installation_store=stores.installations, installation_store_bot_only=True, state_store=stores.states,
        state_expiration_seconds=settings.oauth_state_seconds,
        # Slack's authorize page lives beside the Web API; a test points both at the fake.
        authorization_url=settings.slack_api_url.removesuffix("api/") + "oauth/v2/authorize",
    )


def slack_chat(settings: Settings, engine) -> SlackChat | InstallationChat:
    """Token mode: one SlackChat on SLACK_BOT_TOKEN. OAuth: an InstallationChat whose ``oauth`` is the
    OAuthSettings for build_app (slack/app.py)."""
    if not settings.multi_workspace:
        return SlackChat(make_web_client(settings.slack_bot_token, settings.slack_api_url),
                         post_interval=settings.channel_post_interval)
    stores = oauth_stores(settings, engine)
    chat = InstallationChat(stores.installations, settings.slack_api_url, post_interval=settings.channel_post_interval)
    chat.oauth = oauth_settings(settings, stores)
    return chat


def team_of(context: BoltContext | dict) -> Team | None:
    """The workspace a request came from, as bolt read it from the payload (team_id / team.id /
    authorizations; enterprise_id / enterprise.id; is_enterprise_install). An org-level payload of an
    org-wide install may name no workspace: the organisation then stands for it."""
    team_id, enterprise_id = context.get("team_id"), context.get("enterprise_id")
    if not (team_id or enterprise_id):
        return None
    return Team(team_id or enterprise_id, enterprise_id, bool(context.get("is_enterprise_install")))


class WorkspaceApp(App):
    """bolt's App, whose every request acts for its team (token mode: the one team it serves).

    At dispatch rather than in a middleware: bolt runs its middlewares one after another, not nested, so
    only dispatch spans the whole request. The team is read from the payload (BoltRequest's context) before
    the signature is checked, but an unsigned request never reaches a listener."""

    def dispatch(self, req: BoltRequest) -> BoltResponse:
        team = single_team() or team_of(req.context)
        if team is None:  # url_verification, ssl_check: no team, and they touch no rows
            return super().dispatch(req)
        with acting_for(team):
            return super().dispatch(req)


class ContextCopyingExecutor(ThreadPoolExecutor):
    """bolt runs listeners in its executor; the team in scope (a context variable) goes with them."""

    def submit(self, fn, /, *args, **kwargs):
        return super().submit(contextvars.copy_context().run, fn, *args, **kwargs)


def find_bot(store: SQLAlchemyInstallationStore, team: Team) -> Bot | None:
    """The bot installed in ``team``: its own install, else its organisation's org-wide one."""
    if not team.enterprise_install:
        bot = store.find_bot(enterprise_id=team.enterprise_id, team_id=team.team_id)
        if bot is not None or team.enterprise_id is None:
            return bot
    return store.find_bot(enterprise_id=team.enterprise_id, team_id=None, is_enterprise_install=True)


class InstallationChat:
    """The Chat port with the bot token of the team in scope, from the installation store.

    One SlackChat per (team, token): its admin cache is that workspace's, a new token (a reinstall)
    gets a fresh one, and an uninstalled team gets a permanent ChatError. The channel pacer is shared:
    channel ids are unique across workspaces, and the pace is per channel."""

    def __init__(self, store: SQLAlchemyInstallationStore, base_url: str, retry: RetryPolicy = RetryPolicy(),
                 post_interval: float = 1.1, timeout: int = 30) -> None:
        self.store, self.base_url, self.retry, self.timeout = store, base_url, retry, timeout
        self.post_interval = post_interval
        self.pacer = ChannelPacer(post_interval)
        # A client without a token, for bolt: it makes each request's context.client with that team's token.
        self.client = make_web_client(None, base_url, timeout=timeout, retry=retry)
        self.oauth: OAuthSettings | None = None  # the install flow on the same store (slack_chat sets it)
        self._chats: dict[Team, tuple[str, SlackChat]] = {}
        self._lock = threading.Lock()

    def for_team(self, team: Team) -> SlackChat:
        bot = find_bot(self.store, team)
        if bot is None or not bot.bot_token:
            raise ChatError(f"studybot is not installed in the Slack workspace {team}", code="not_installed",
                            permanent=True, may_have_posted=False)
        with self._lock:
            cached = self._chats.get(team)
            if cached is None or cached[0] != bot.bot_token:
                client = make_web_client(bot.bot_token, self.base_url, timeout=self.timeout, retry=self.retry)
                cached = (bot.bot_token, SlackChat(client, self.post_interval, pacer=self.pacer))
                self._chats[team] = cached
            return cached[1]

    def forget(self, team: Team) -> None:
        """Drop what is kept for a team whose tokens were revoked (the next call looks them up again)."""
        with self._lock:
            for known in [t for t in self._chats if t.team_id == team.team_id or
                          (team.enterprise_install and t.enterprise_id == team.enterprise_id)]:
                del self._chats[known]

    def _chat(self) -> SlackChat:
        return self.for_team(current_team())

    # ---- the Chat port (studybot/ports.py), each call for the team in scope ----------------------

    def post(self, channel_id: str, message: Message, *, tag: str | None = None) -> str:
        return self._chat().post(channel_id, message, tag=tag)

    def dm(self, user_id: str, message: Message) -> str:
        return self._chat().dm(user_id, message)

    def open_dm(self, user_id: str) -> str:
        return self._chat().open_dm(user_id)

    def open_group_dm(self, user_ids: list[str]) -> str:
        return self._chat().open_group_dm(user_ids)

    def tz_offset(self, user_id: str) -> int | None:
        return self._chat().tz_offset(user_id)

    def update(self, channel_id: str, message_id: str, message: Message) -> None:
        self._chat().update(channel_id, message_id, message)

    def find_post(self, channel_id: str, **kwargs: Any) -> str | None:
        return self._chat().find_post(channel_id, **kwargs)

    def is_workspace_admin(self, user_id: str) -> bool:
        return self._chat().is_workspace_admin(user_id)

    def display_name(self, user_id: str) -> str:
        return self._chat().display_name(user_id)

    def resolve_channel(self, raw: str) -> Channel:
        return self._chat().resolve_channel(raw)

    def join_channel(self, channel_id: str) -> bool:
        return self._chat().join_channel(channel_id)

    def upload_file(self, user_id: str, filename: str, content: bytes, title: str) -> str:
        return self._chat().upload_file(user_id, filename, content, title)

    def post_ephemeral(self, channel_id: str, user_id: str, message: Message) -> None:
        self._chat().post_ephemeral(channel_id, user_id, message)

    def upload_to_channel(self, channel_id: str, filename: str, content: bytes, title: str) -> str:
        return self._chat().upload_to_channel(channel_id, filename, content, title)

    def reply_in_thread(self, channel_id: str, thread_id: str, message: Message, *, tag: str | None = None) -> str:
        return self._chat().reply_in_thread(channel_id, thread_id, message, tag=tag)

    def publish_home(self, user_id: str, view: dict[str, Any]) -> None:
        self._chat().publish_home(user_id, view)
