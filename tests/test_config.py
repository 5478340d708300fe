"""Configuration: defaults, and a clear message naming any missing or malformed variable."""

from __future__ import annotations

from datetime import timedelta

import pytest

from studybot.config import SLACK_API_DEFAULT, load_settings
from studybot.errors import ConfigError


def test_defaults_are_the_embedded_database_and_no_slack(tmp_path):
    settings = load_settings({"STUDYBOT_DATA_DIR": str(tmp_path)})
    assert settings.database_url == f"sqlite:///{tmp_path / 'studybot.sqlite3'}"
    assert not settings.has_slack and settings.slack_api_url == SLACK_API_DEFAULT
    assert settings.late_grace == timedelta(hours=12)


def test_heroku_style_postgres_urls_get_the_psycopg_dialect():
    settings = load_settings({"DATABASE_URL": "postgres://u:pw@db:5432/app"})
    assert settings.database_url == "postgresql+psycopg://u:pw@db:5432/app"
    assert "pw" not in repr(settings)


@pytest.mark.parametrize("env, variable", [
    ({"DATABASE_URL": "mysql://x"}, "DATABASE_URL"),
    ({"SLACK_BOT_TOKEN": "not-a-token", "SLACK_SIGNING_SECRET": "s"}, "SLACK_BOT_TOKEN"),
    ({"SLACK_SIGNING_SECRET": "s"}, "SLACK_BOT_TOKEN"),
    ({"SLACK_BOT_TOKEN": "xoxb-1"}, "SLACK_SIGNING_SECRET"),
    ({"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_APP_TOKEN": "xoxb-2"}, "SLACK_APP_TOKEN"),
    ({"SLACK_API_URL": "slack.example"}, "SLACK_API_URL"),
    ({"STUDYBOT_LATE_GRACE": "soon"}, "STUDYBOT_LATE_GRACE"),
    ({"STUDYBOT_TICK_SECONDS": "-3"}, "STUDYBOT_TICK_SECONDS"),
    ({"STUDYBOT_CURRICULA_DIR": "/no/such/dir"}, "STUDYBOT_CURRICULA_DIR"),
])
def test_bad_variables_are_named(env, variable):
    with pytest.raises(ConfigError) as raised:
        load_settings(env)
    assert variable in raised.value.message
    assert raised.value.context["variable"] == variable


def test_socket_mode_needs_no_signing_secret_and_api_url_gets_a_slash():
    settings = load_settings({"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_APP_TOKEN": "xapp-1",
                              "SLACK_API_URL": "http://127.0.0.1:9/api"})
    assert settings.has_slack and settings.slack_api_url == "http://127.0.0.1:9/api/"
    assert "xoxb" not in repr(settings) and "xapp" not in repr(settings)


def test_oauth_installs_need_the_client_id_secret_and_signing_secret_and_ask_the_manifests_scopes():
    import json
    from pathlib import Path

    from studybot.config import DEFAULT_SLACK_SCOPES

    settings = load_settings({"SLACK_CLIENT_ID": "1.2", "SLACK_CLIENT_SECRET": "shh", "SLACK_SIGNING_SECRET": "s"})
    assert settings.multi_workspace and settings.has_slack and settings.slack_bot_token is None
    assert "shh" not in repr(settings) and "oauth" in repr(settings)
    manifest = json.loads((Path(__file__).parents[1] / "studybot/slack/manifest.json").read_text())
    assert list(DEFAULT_SLACK_SCOPES) == manifest["oauth_config"]["scopes"]["bot"]
    assert load_settings({"SLACK_CLIENT_ID": "1.2", "SLACK_CLIENT_SECRET": "shh", "SLACK_SIGNING_SECRET": "s",
                          "SLACK_SCOPES": "commands, chat:write"}).slack_scopes == ("commands", "chat:write")
    for env, variable in (({"SLACK_CLIENT_ID": "1.2", "SLACK_SIGNING_SECRET": "s"}, "SLACK_CLIENT_SECRET"),
                          ({"SLACK_CLIENT_ID": "1.2", "SLACK_CLIENT_SECRET": "shh"}, "SLACK_SIGNING_SECRET"),
                          ({"SLACK_CLIENT_ID": "1", "SLACK_CLIENT_SECRET": "x", "SLACK_SIGNING_SECRET": "s",
                            "SLACK_SCOPES": "chat:write; drop table"}, "SLACK_SCOPES"),
                          ({"STUDYBOT_DEFAULT_TEAM_ID": "my team"}, "STUDYBOT_DEFAULT_TEAM_ID")):
        with pytest.raises(ConfigError) as raised:
            load_settings(env)
        assert raised.value.context["variable"] == variable
