"""What a learner's App Home shows: their cohorts and this week's lesson, their submissions and best
results, and organizer controls for organizers.

Transport-neutral: Slack publishes the view (studybot/slack/home.py); the shell's `:home` prints the
text. Both render messages/home.j2 from the same context, built here from the services."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from studybot.messages import render_text, render_view

if TYPE_CHECKING:
    from studybot.bootstrap import Services


def home_context(services: Services, user_id: str) -> dict[str, Any]:
    cohorts = services.cohorts
    return dict(cohorts=cohorts.cohorts_of(user_id), organized=cohorts.organized_by(user_id),
                submitted=cohorts.submitted_exercises(user_id), is_organizer=cohorts.is_any_organizer(user_id),
                recent=services.submissions.history(user_id), best=services.submissions.best(user_id),
                progress=services.progress.of(user_id))


def home_view(services: Services, user_id: str) -> dict[str, Any]:
    """The App Home as a Block Kit view."""
    return render_view("home", **home_context(services, user_id))


def home_text(services: Services, user_id: str) -> str:
    """The App Home as plain text (Slack markup still in it: the shell turns it into terminal text)."""
    return render_text("home", **home_context(services, user_id))
