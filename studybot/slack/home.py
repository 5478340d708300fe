"""Publishing the App Home tab. What it shows is decided in studybot/home.py, shared with the shell."""

from __future__ import annotations

from studybot.bootstrap import Services
from studybot.home import home_view


def publish_home(client, services: Services, user_id: str) -> None:
    client.views_publish(user_id=user_id, view=home_view(services, user_id))
