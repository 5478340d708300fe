"""Modal submissions: the cohort form. Validation errors go back into the form, field by field."""

from __future__ import annotations

from slack_bolt import App

from studybot.bootstrap import Services
from studybot.errors import FieldError, StudybotError
from studybot.messages import render
from studybot.slack.home import publish_home
from studybot.slack.listener_errors import chat_errors_logged

# Form block ids -> the field names the domain reports in FieldError.field
FORM_FIELDS = {"name": "name", "channel": "channel", "curriculum": "curriculum", "start": "start",
               "weekday": "weekday", "time": "time", "tz": "tz"}


def _value(state: dict, block_id: str) -> str:
    element = state.get(block_id, {}).get("value", {})
    for key in ("value", "selected_conversation", "selected_date", "selected_time"):
        if element.get(key):
            return element[key]
    option = element.get("selected_option") or {}
    return option.get("value") or ""


def register(app: App, services: Services) -> None:
    def cohort_create(ack, body, view):
        state = view["state"]["values"]
        user_id = body["user"]["id"]
        fields = {block: _value(state, block) for block in FORM_FIELDS}
        try:
            cohort = services.cohorts.create(
                user_id, name=fields["name"], channel=fields["channel"], start=fields["start"], at=fields["time"],
                tz=fields["tz"], weekday=fields["weekday"] or None, curriculum=fields["curriculum"] or None)
        except FieldError as error:
            block = next((b for b, f in FORM_FIELDS.items() if f == error.field), "name")
            ack(response_action="errors", errors={block: error.message})
            return
        except StudybotError as error:  # permission, duplicate name: shown on the name field
            ack(response_action="errors", errors={"name": error.message})
            return
        ack()  # closes the form; ack(response_action="errors") above keeps it open, with the field marked
        with chat_errors_logged(f"tell {user_id} that {cohort.name} was created"):
            services.chat.dm(user_id, render("cohort_created", cohort=cohort))
        publish_home(services, user_id)

    app.view("cohort_create")(cohort_create)
