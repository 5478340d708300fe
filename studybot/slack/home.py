"""Publishing the App Home tab."""

from __future__ import annotations

from studybot.bootstrap import Services
from studybot.messages import render_view


def home_context(services: Services, user_id: str) -> dict:
    cohorts = services.cohorts
    return dict(cohorts=cohorts.cohorts_of(user_id), organized=cohorts.organized_by(user_id),
                submitted=cohorts.submitted_exercises(user_id), is_organizer=cohorts.is_any_organizer(user_id),
                recent=services.submissions.history(user_id), best=services.submissions.best(user_id))


def home_view(services: Services, user_id: str) -> dict:
    return render_view("home", **home_context(services, user_id))


def publish_home(client, services: Services, user_id: str) -> None:
    client.views_publish(user_id=user_id, view=home_view(services, user_id))
