"""Publishing the App Home tab. What it shows is decided in studybot/home.py, shared with the shell."""

from __future__ import annotations

from studybot.bootstrap import Services
from studybot.home import home_view
from studybot.slack.listener_errors import chat_errors_logged


def publish_home(services: Services, user_id: str) -> None:
    """Publish the user's App Home; a failure is logged (the next app_home_opened publishes again)."""
    with chat_errors_logged(f"publish the App Home of {user_id}"):
        services.chat.publish_home(user_id, home_view(services, user_id))
