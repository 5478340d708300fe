"""Slack's limits by construction: every template, rendered with oversized inputs (hundreds of
cohorts, long names, long lesson lists), is valid Block Kit for slack_sdk's own models and within
studybot/messages/limits.py; lists cut short say "…and N more"."""

from __future__ import annotations

import dataclasses
import json
from datetime import timedelta
from pathlib import Path

import pytest
from slack_sdk.models.blocks import Block
from slack_sdk.models.views import View

from studybot.curricula import Link
from studybot.errors import FieldError
from studybot.messages import limits, render, render_view
from studybot.services.accommodations import Extension
from studybot.services.buddies import BuddyStatus
from tests.test_messages import LEADERBOARD_TEMPLATES, REVIEW_TEMPLATES, TEMPLATES

CREATE = "/study cohort create fastai --channel #fastai --start 2027-01-05 --time 18:00 --tz Europe/Berlin"
LONG = "Ü" * 70  # a long name in characters that JSON and Slack count one each
LESSONS = 2000  # far more than one message holds, however short the titles
COHORTS = 1000  # far more than one message holds (49 sections of 3,000 characters)


def check_message(message, kind: str) -> None:
    assert message.text and len(message.text) <= limits.FALLBACK_TEXT_MAX, kind
    check_blocks(message.blocks, limits.MESSAGE_BLOCKS_MAX, kind)


def check_blocks(blocks, max_blocks: int, kind: str) -> None:
    assert 0 < len(blocks) <= max_blocks, (kind, len(blocks))
    for raw in blocks:
        block = Block.parse(raw)
        block.validate_json()  # slack_sdk's own checks (section 3000, header 150, button 75, elements…)
        assert block.to_dict() is not None
        if raw["type"] == "section":
            assert len(raw["text"]["text"]) <= limits.SECTION_TEXT_MAX, kind
        if raw["type"] == "header":
            assert len(raw["text"]["text"]) <= limits.HEADER_TEXT_MAX, kind
        if raw["type"] == "context":
            assert len(raw["elements"]) <= limits.CONTEXT_ELEMENTS_MAX, kind
            assert all(len(e.get("text", "")) <= limits.CONTEXT_TEXT_MAX for e in raw["elements"]), kind


def check_view(view, kind: str) -> None:
    View(**view).validate_json()  # blocks (100), title (24), submit and close
    check_blocks(view["blocks"], limits.VIEW_BLOCKS_MAX, kind)


def text_of(blocks) -> str:
    return json.dumps(blocks, ensure_ascii=False)


@pytest.fixture
def huge(bot):
    """A cohort with hundreds of long-titled lessons, and hundreds of cohorts with long names."""
    bot.say(CREATE)
    bot.say("/study join fastai", as_user="ada")
    bot.say(":advance 3w", as_user="admin")
    cohort = bot.services.cohorts.view("ada", "fastai")
    slot = cohort.lessons[1]
    links = tuple(Link("lesson", f"{LONG} {i}", f"https://course.fast.ai/Lessons/lesson{i}.html") for i in range(40))
    lesson = dataclasses.replace(slot.lesson, title=LONG * 3, topics=tuple(f"{LONG} {i}" for i in range(80)),
                                 links=links, exercise="digits")
    slot = dataclasses.replace(slot, title=lesson.title, lesson=lesson, exercise="digits")

    def lessons(count):
        return tuple(dataclasses.replace(slot, key=str(i), title=f"{LONG} {i}", status="sent" if i < 150 else "pending")
                     for i in range(count))

    long_cohort = dataclasses.replace(cohort, name="n" * 40, channel_name="c" * 80, lessons=lessons(LESSONS))
    # Each of the many cohorts has a realistic curriculum: the lists that grow here are the cohorts.
    many = [dataclasses.replace(long_cohort, name=f"{i:04d}" + "n" * 36, id=i, lessons=lessons(25))
            for i in range(COHORTS)]
    return dict(cohort=long_cohort, many=many, slot=slot, lesson=lesson)


def test_every_template_stays_within_slacks_limits_when_its_inputs_are_huge(huge):
    cohort, many, slot, lesson = huge["cohort"], huge["many"], huge["slot"], huge["lesson"]
    delivery = type("Delivery", (), {"attempts": 5, "lesson_key": lesson.key})()
    error = FieldError("tz", LONG * 60)
    contexts = {
        "help": dict(unknown=LONG * 50, organizer=True),
        "error": dict(error=error, kind="FieldError", field="tz"),
        "cohort_created": dict(cohort=cohort), "cohort_list": dict(cohorts=many),
        "cohort_changed": dict(cohort=cohort, action="skip"), "joined": dict(cohort=cohort),
        "left": dict(cohort=cohort), "lesson": dict(cohort=cohort, slot=slot),
        "lesson_post": dict(cohort=cohort, lesson=lesson, slot=slot, number=3, total=LESSONS, late=None),
        "schedule": dict(cohort=cohort), "status": dict(cohorts=many, submitted={"digits"}),
        "reminder": dict(cohort=cohort, lesson=lesson, slot=slot, user_id="ada"),
        "cohort_modal_opening": {}, "dm_help": {}, "channel_welcome": dict(cohort_name=LONG),
        "delivery_skipped": dict(cohort=cohort, lesson=lesson, delivery=delivery, lateness=timedelta(days=3),
                                 grace=timedelta(hours=12)),
        "delivery_failed": dict(cohort=cohort, lesson=lesson, delivery=delivery, error=LONG * 60, permanent=True,
                                code="not_in_channel"),
        "delivery_unverifiable": dict(cohort=cohort, lesson=lesson, delivery=delivery, error=LONG * 60),
        "submission_rejected": dict(error=error, field="tz"),
        "submit_ready": dict(exercise="digits", quota_left=5, daily_quota=5),
        "buddies": dict(status=BuddyStatus(cohort, True, None, True, 1000), action="cohort_on"),
        "buddy_intro": dict(cohort=cohort, slot=slot, lesson=lesson, members=[LONG] * 3, alone=False),
        "accommodation": dict(action="extend", extension=Extension(
            cohort, LONG, slot, slot.local.date(), slot.deadline_local)),
        **digest_contexts(cohort, lesson),
    }
    views = {
        "home": dict(cohorts=many, organized=many, submitted={"digits"}, is_organizer=True, recent=[], best=[]),
        "cohort_modal": dict(curricula=[dataclasses.replace(cohort.curriculum, id=f"c{i}", title=LONG * 2)
                                        for i in range(150)], default_tz="Europe/Berlin"),
    }
    names = {p.stem for p in TEMPLATES.glob("*.j2") if not p.stem.startswith("_")}
    # grading_dead and submission render submissions and jobs: rendered at size in tests/test_worker.py
    # (worker_lost in tests/test_queue_eta.py);
    # the leaderboard family in tests/test_ranking.py, the review family in tests/test_review.py.
    # render()'s final check covers them all the same.
    elsewhere = LEADERBOARD_TEMPLATES | REVIEW_TEMPLATES | {"grading_dead", "submission", "worker_lost"}
    assert names - elsewhere == set(contexts) | set(views), "render a new template here too"
    for kind, context in contexts.items():
        check_message(render(kind, **context), kind)
    for kind, context in views.items():
        check_view(render_view(kind, **context), kind)


def digest_contexts(cohort, lesson) -> dict:
    """The organizers' digest of a cohort of thousands, long names, every lesson with a long thread."""
    from datetime import datetime, timezone

    from studybot.services.digests import Digest, LessonLine, QuietMember, WeekCount

    people = tuple(f"U{i:05d}" for i in range(COHORTS))
    names = {user: LONG for user in people}
    when = datetime(2027, 1, 11, 8, tzinfo=timezone.utc)
    week = WeekCount(when, 10**6, 10**5, COHORTS)
    lines = tuple(LessonLine(str(i), LONG, "digits", people, people, 10**6, COHORTS) for i in range(LESSONS))
    quiet = tuple(QuietMember(user, when if i % 2 else None, when) for i, user in enumerate(people))
    digest = Digest(cohort, when, when, COHORTS, lines, people, quiet, people, people, week, week, (week,) * 8,
                    names=names)
    schedule = {"name": LONG, "timezone": "Europe/Berlin", "weekday": "Monday", "time": "09:00",
                "channel_id": "G123", "channel_name": "c" * 80}
    return {"digest": dict(digest=digest, plot=None, report=False),
            "digest_schedule": dict(cohort=schedule), "lesson_thread": dict(cohort_name=LONG, lesson=lesson)}


def progress_of(cohorts) -> dict:
    from studybot.services.progress import CohortProgress, Standing

    return {c.id: CohortProgress(c.id, 99, 99, 999, 999, Standing("digits" * 10, "8a", COHORTS, COHORTS, True, True))
            for c in cohorts}


def test_a_report_and_a_progress_laden_home_stay_within_limits(huge):
    contexts = digest_contexts(huge["cohort"], huge["lesson"])
    report = render("digest", **{**contexts["digest"], "report": True, "plot": "F123"})
    check_message(report, "digest")
    assert limits.more(COHORTS - limits.DIGEST_NAMES_SHOWN) in text_of(report.blocks)
    many = huge["many"]
    view = render_view("home", cohorts=many, organized=many, submitted=set(), is_organizer=True,
                       recent=[], best=[], progress=progress_of(many))
    check_view(view, "home")
    assert "Weekly streak: 99 lessons passed in their week" in text_of(view["blocks"])
    status = render("status", cohorts=many, submitted={"digits"}, progress=progress_of(many), best=[])
    check_message(status, "status")
    assert "Weekly streak: 99 lessons" in text_of(status.blocks)


def test_the_cohort_list_is_paginated_and_says_how_many_are_left_out(huge):
    message = render("cohort_list", cohorts=huge["many"])
    body = text_of(message.blocks)
    sections = [b for b in message.blocks if b["type"] == "section"]
    assert len(sections) > 1  # 300 cohorts do not fit one section of 3,000 characters
    shown = sum(body.count(f"*{i:04d}") for i in range(COHORTS))
    assert 0 < shown < COHORTS
    assert limits.more(COHORTS - shown) in sections[-1]["text"]["text"]
    assert "Cohorts (1000)" in body
    assert message.text.endswith("more lines") and len(message.text) <= limits.FALLBACK_TEXT_MAX


def test_nineteen_cohorts_now_fit_and_are_all_listed(huge):
    nineteen = huge["many"][:19]  # one section broke at 19 of these
    message = render("cohort_list", cohorts=nineteen)
    check_message(message, "cohort_list")
    assert all(f"*{i:04d}" in text_of(message.blocks) for i in range(19)) and "more" not in text_of(message.blocks)


def test_the_app_home_cuts_organizer_controls_to_fit_with_a_pointer_to_the_rest(huge):
    view = render_view("home", cohorts=huge["many"][:3], organized=huge["many"][:48], submitted=set(),
                       is_organizer=True, recent=[], best=[])
    check_view(view, "home")
    body = text_of(view["blocks"])
    buttons = [b for b in view["blocks"] if b["type"] == "actions" and b.get("block_id", "").startswith("cohort:")]
    assert 0 < len(buttons) < 48
    assert f"{limits.more(48 - len(buttons))}: `/study cohort list` lists them all" in body


def test_the_schedule_keeps_every_lesson_it_can_and_counts_the_rest(huge):
    message = render("schedule", cohort=huge["cohort"])
    check_message(message, "schedule")
    body = text_of(message.blocks)
    shown = sum(f"Lesson {i}: " in body for i in range(LESSONS))
    assert shown > 30  # more than the single section of 2,900 characters held
    assert limits.more(LESSONS - shown) in message.blocks[-1]["text"]["text"]


def test_the_final_check_fits_what_a_template_got_wrong():
    blocks = ([{"type": "header", "text": {"type": "plain_text", "text": "h" * 400}},
               {"type": "section", "text": {"type": "mrkdwn", "text": "s" * 5000}},
               {"type": "context", "elements": [{"type": "mrkdwn", "text": "c"}] * 14},
               {"type": "actions", "elements": [{"type": "button", "action_id": "b", "text": {
                   "type": "plain_text", "text": "b" * 100}}]}]
              + [{"type": "divider"}] * 60)
    fitted = limits.fit_blocks(blocks, limits.MESSAGE_BLOCKS_MAX, "test")
    check_blocks(fitted, limits.MESSAGE_BLOCKS_MAX, "test")
    assert fitted[-1]["elements"][0]["text"] == limits.more(len(blocks) - 49) + " not shown"
    assert fitted[1]["text"]["text"].endswith(limits.ELLIPSIS) and len(fitted[1]["text"]["text"]) == 3000
    assert blocks[1]["text"]["text"] == "s" * 5000  # the caller's blocks are not changed


def test_chunks_never_split_an_item_and_count_what_is_left():
    lines = "\n".join(f"line {i:03d} " + "x" * 90 for i in range(100))
    pieces = limits.chunks(lines, max_chunks=2, limit=1000)
    assert len(pieces) == 2 and all(len(p) <= 1000 for p in pieces)
    kept = [line for p in pieces for line in p.split("\n") if line.startswith("line")]
    assert all(len(line) == 99 for line in kept)
    assert pieces[-1].endswith(limits.more(100 - len(kept)))
    assert limits.chunks("", max_chunks=3) == [""]
