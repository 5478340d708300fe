"""Settings from the environment, read and checked once at start-up; nothing else reads os.environ.

A missing or malformed variable raises ConfigError naming it, so the process stops
with a message an operator can act on.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Mapping

from studybot.errors import ConfigError
from studybot.teams import LOCAL_TEAM_ID

SLACK_API_DEFAULT = "https://slack.com/api/"
# The bot scopes an OAuth install asks for (SLACK_SCOPES overrides): the manifest's oauth_config.scopes.bot.
DEFAULT_SLACK_SCOPES = ("commands", "chat:write", "chat:write.public", "im:write", "im:history", "files:read",
                        "files:write", "app_mentions:read", "channels:read", "channels:join", "groups:read",
                        "users:read", "channels:history", "groups:history")


@dataclass(frozen=True)
class Settings:
    database_url: str
    data_dir: Path
    slack_bot_token: str | None = None
    slack_signing_secret: str | None = None
    slack_app_token: str | None = None  # Socket Mode only
    slack_api_url: str = SLACK_API_DEFAULT
    curricula_dir: Path | None = None  # extra organizer curricula (*.toml)
    late_grace: timedelta = timedelta(hours=12)  # a lesson this late still posts; later, it is skipped
    reminder_lead: timedelta = timedelta(hours=24)  # reminder DM this long before a lesson's deadline
    tick_seconds: int = 20  # scheduler poll interval; posts go out within this of their due time
    channel_post_interval: float = 1.1  # seconds between posts to one channel (Slack allows ~1/s)
    daily_quota: int = 5  # ranked submissions per learner per exercise per UTC day, as on Kaggle
    # Many workspaces (OAuth installs): all three set; else one workspace, on SLACK_BOT_TOKEN.
    slack_client_id: str | None = None
    slack_client_secret: str | None = None
    slack_scopes: tuple[str, ...] = DEFAULT_SLACK_SCOPES
    oauth_state_seconds: int = 600  # how long an install link stays valid (bolt's default)
    # The one workspace of token mode (and of rows from before workspaces, migration 0008): its Slack id
    # (auth.test's team_id), or "local" when unset, which serves one workspace just as well.
    default_team_id: str = LOCAL_TEAM_ID

    @property
    def has_slack(self) -> bool:
        return bool(self.slack_bot_token) or self.multi_workspace

    @property
    def multi_workspace(self) -> bool:
        return bool(self.slack_client_id and self.slack_client_secret)

    def __repr__(self) -> str:  # never print secrets
        return (
            f"Settings(database_url={redact_url(self.database_url)!r}, data_dir={str(self.data_dir)!r}, "
            f"slack={('oauth' if self.multi_workspace else 'token') if self.has_slack else 'absent'}, "
            f"slack_api_url={self.slack_api_url!r})"
        )


def redact_url(url: str) -> str:
    """postgresql://user:secret@host/db -> postgresql://user:***@host/db"""
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)


def _duration(name: str, raw: str) -> timedelta:
    match = re.fullmatch(r"\s*(\d+)\s*([smhd])\s*", raw)
    if not match:
        raise ConfigError(f"{name} must be a duration such as 90s, 30m, 12h or 2d (got {raw!r})", variable=name)
    units = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
    return timedelta(**{units[match.group(2)]: int(match.group(1))})


def _positive_number(name: str, raw: str, kind: type) -> float | int:
    try:
        value = kind(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a positive number (got {raw!r})", variable=name) from None
    if value <= 0:
        raise ConfigError(f"{name} must be a positive number (got {raw!r})", variable=name)
    return value


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    env = dict(os.environ if environ is None else environ)
    get = lambda name: (env.get(name) or "").strip() or None  # noqa: E731 - empty means unset

    data_dir = Path(get("STUDYBOT_DATA_DIR") or Path.cwd() / "data").expanduser()
    database_url = get("DATABASE_URL") or f"sqlite:///{data_dir / 'studybot.sqlite3'}"
    if database_url.startswith("postgres://"):  # Heroku-style scheme; SQLAlchemy wants the dialect name
        database_url = "postgresql+psycopg://" + database_url[len("postgres://"):]
    elif database_url.startswith("postgresql://"):
        database_url = "postgresql+psycopg://" + database_url[len("postgresql://"):]
    if not re.match(r"^(sqlite|postgresql\+psycopg)://", database_url):
        raise ConfigError(
            "DATABASE_URL must be a sqlite:/// or postgresql:// URL "
            f"(got {redact_url(database_url)!r})",
            variable="DATABASE_URL",
        )

    bot_token, signing_secret, app_token = get("SLACK_BOT_TOKEN"), get("SLACK_SIGNING_SECRET"), get("SLACK_APP_TOKEN")
    if bot_token and not bot_token.startswith("xoxb-"):
        raise ConfigError("SLACK_BOT_TOKEN must be a bot token starting with xoxb-", variable="SLACK_BOT_TOKEN")
    if app_token and not app_token.startswith("xapp-"):
        raise ConfigError("SLACK_APP_TOKEN must be an app-level token starting with xapp-", variable="SLACK_APP_TOKEN")
    client_id, client_secret = get("SLACK_CLIENT_ID"), get("SLACK_CLIENT_SECRET")
    if bool(client_id) != bool(client_secret):
        missing = "SLACK_CLIENT_SECRET" if client_id else "SLACK_CLIENT_ID"
        raise ConfigError(f"{missing} is missing: OAuth installs need both SLACK_CLIENT_ID and SLACK_CLIENT_SECRET",
                          variable=missing)
    if client_id and not signing_secret:
        raise ConfigError("SLACK_SIGNING_SECRET is missing: OAuth installs are served over HTTP",
                          variable="SLACK_SIGNING_SECRET")
    if (signing_secret or app_token) and not bot_token and not client_id:
        raise ConfigError("SLACK_BOT_TOKEN is missing (the other Slack variables are set)", variable="SLACK_BOT_TOKEN")
    if bot_token and not (signing_secret or app_token):
        raise ConfigError(
            "SLACK_SIGNING_SECRET is missing: set it for HTTP mode, or SLACK_APP_TOKEN for Socket Mode",
            variable="SLACK_SIGNING_SECRET",
        )

    api_url = get("SLACK_API_URL") or SLACK_API_DEFAULT
    if not re.match(r"^https?://[^/\s]+", api_url):
        raise ConfigError(f"SLACK_API_URL must be an http(s) URL (got {api_url!r})", variable="SLACK_API_URL")
    if not api_url.endswith("/"):
        api_url += "/"

    curricula_dir = get("STUDYBOT_CURRICULA_DIR")
    if curricula_dir and not Path(curricula_dir).is_dir():
        raise ConfigError(f"STUDYBOT_CURRICULA_DIR is not a directory: {curricula_dir}", variable="STUDYBOT_CURRICULA_DIR")

    optional = {}
    if raw := get("SLACK_SCOPES"):
        scopes = tuple(scope for scope in re.split(r"[\s,]+", raw) if scope)
        if not scopes or not all(re.fullmatch(r"[a-z_]+(:[a-z_.]+)*", scope) for scope in scopes):
            raise ConfigError(f"SLACK_SCOPES must be comma-separated bot scopes such as chat:write (got {raw!r})",
                              variable="SLACK_SCOPES")
        optional["slack_scopes"] = scopes
    if raw := get("STUDYBOT_DEFAULT_TEAM_ID"):
        if not re.fullmatch(r"[A-Z0-9]{2,32}", raw):
            raise ConfigError(f"STUDYBOT_DEFAULT_TEAM_ID must be a Slack team id such as T012AB3CD (got {raw!r})",
                              variable="STUDYBOT_DEFAULT_TEAM_ID")
        optional["default_team_id"] = raw
    if raw := get("STUDYBOT_LATE_GRACE"):
        optional["late_grace"] = _duration("STUDYBOT_LATE_GRACE", raw)
    if raw := get("STUDYBOT_REMINDER_LEAD"):
        optional["reminder_lead"] = _duration("STUDYBOT_REMINDER_LEAD", raw)
    if raw := get("STUDYBOT_TICK_SECONDS"):
        optional["tick_seconds"] = int(_positive_number("STUDYBOT_TICK_SECONDS", raw, int))
    if raw := get("STUDYBOT_DAILY_QUOTA"):
        optional["daily_quota"] = int(_positive_number("STUDYBOT_DAILY_QUOTA", raw, int))
    if raw := get("STUDYBOT_CHANNEL_POST_INTERVAL"):
        optional["channel_post_interval"] = float(_positive_number("STUDYBOT_CHANNEL_POST_INTERVAL", raw, float))

    return Settings(
        database_url=database_url,
        data_dir=data_dir,
        slack_bot_token=bot_token,
        slack_signing_secret=signing_secret,
        slack_app_token=app_token,
        slack_api_url=api_url,
        slack_client_id=client_id,
        slack_client_secret=client_secret,
        curricula_dir=Path(curricula_dir) if curricula_dir else None,
        **optional,
    )
