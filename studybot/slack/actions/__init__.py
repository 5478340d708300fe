"""Buttons on the App Home: organizer controls."""

from __future__ import annotations

from slack_bolt import App

from studybot.bootstrap import Services
from studybot.curricula import load_curricula
from studybot.errors import StudybotError
from studybot.messages import render, render_view
from studybot.slack.home import publish_home
from studybot.slack.listener_errors import chat_errors_logged


def register(app: App, services: Services) -> None:
    def cohort_control(ack, body, action):
        ack()
        user_id = body["user"]["id"]
        verb = action["action_id"].removeprefix("cohort_")
        method = {"pause": services.cohorts.pause, "resume": services.cohorts.resume,
                  "skip": services.cohorts.skip_week}[verb]
        try:
            message = render("cohort_changed", cohort=method(user_id, action["value"]), action=verb)
        except StudybotError as error:
            message = render("error", error=error, kind=type(error).__name__, field=getattr(error, "field", None))
        with chat_errors_logged(f"tell {user_id} how {action['action_id']} went"):
            services.chat.dm(user_id, message)
        publish_home(services, user_id)

    def open_cohort_form(ack, body, client):
        ack()
        # Bolt's own client: views.open is no post but the answer to this click, valid only with its
        # trigger_id for 3 seconds; the shell has no forms (the Chat port has no modals).
        client.views_open(trigger_id=body["trigger_id"], view=render_view(
            "cohort_modal", curricula=list(load_curricula(services.cohorts.curricula_dir).values()), default_tz="UTC"))

    for action_id in ("cohort_pause", "cohort_resume", "cohort_skip"):
        app.action(action_id)(cohort_control)
    app.action("cohort_create_open")(open_cohort_form)
