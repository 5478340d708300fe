"""Templates: every kind renders valid Block Kit within Slack's limits, and user text stays inert."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from studybot.errors import FieldError
from studybot.messages import escape_mrkdwn, render, render_view
from studybot.shell.chat import to_plain

TEMPLATES = Path(__file__).parent.parent / "studybot" / "messages"
# Rendered in tests/test_ranking.py (test_every_leaderboard_template_renders_valid_block_kit).
LEADERBOARD_TEMPLATES = {"leaderboard", "leaderboard_weekly", "leaderboard_record", "leaderboard_mode",
                         "leaderboard_schedule", "disqualified", "regrade_queued", "export_ready"}
# Rendered in tests/test_review.py (test_every_review_template_renders_valid_block_kit).
REVIEW_TEMPLATES = {"review_list", "review_evidence", "review_needed", "approved"}
# Rendered at size in tests/test_message_limits.py, in conversation in tests/test_digests.py.
DIGEST_TEMPLATES = {"digest", "digest_schedule", "lesson_thread"}
CREATE = "/study cohort create fastai --channel #fastai --start 2027-01-05 --time 18:00 --tz Europe/Berlin"


def test_the_template_catalogue_is_known():
    """A new template must be added here and rendered below (or in the test of its feature)."""
    names = {p.stem for p in TEMPLATES.glob("*.j2") if not p.stem.startswith("_")}
    assert names == {"help", "error", "cohort_created", "cohort_list", "cohort_changed", "joined", "left", "lesson",
                     "lesson_post", "schedule", "status", "reminder", "delivery_skipped", "delivery_failed",
                     "cohort_modal", "cohort_modal_opening", "home", "dm_help", "channel_welcome",
                     "submission", "submission_rejected", "submit_ready", "grading_dead", "worker_lost",
                     "delivery_unverifiable", "buddies", "buddy_intro",
                     "accommodation"} | LEADERBOARD_TEMPLATES | REVIEW_TEMPLATES | DIGEST_TEMPLATES


def check_blocks(blocks, limit=50):
    assert 0 < len(blocks) <= limit
    for block in blocks:
        json.dumps(block)
        text = block.get("text", {}).get("text", "")
        assert len(text) <= 3000, block


def test_all_message_kinds_render(bot):
    bot.say(CREATE + " --organizer @carol")
    bot.say("/study join fastai", as_user="ada")
    bot.say(":advance 15w", as_user="admin")
    cohort = bot.services.cohorts.view("ada", "fastai")
    slot = cohort.lessons[2]
    lesson = slot.lesson
    contexts = {
        "help": dict(unknown="x", organizer=True),
        "error": dict(error=FieldError("tz", "bad tz"), kind="FieldError", field="tz"),
        "cohort_created": dict(cohort=cohort), "cohort_list": dict(cohorts=[cohort]),
        "cohort_changed": dict(cohort=cohort, action="skip"), "joined": dict(cohort=cohort),
        "left": dict(cohort=cohort), "lesson": dict(cohort=cohort, slot=slot),
        "lesson_post": dict(cohort=cohort, lesson=lesson, slot=slot, number=3, total=9, late=None),
        "schedule": dict(cohort=cohort), "status": dict(cohorts=[cohort], submitted={"digits"}),
        "reminder": dict(cohort=cohort, lesson=lesson, slot=slot, user_id="ada"),
        "cohort_modal_opening": {}, "dm_help": {}, "channel_welcome": dict(cohort_name="fastai"),
    }
    for kind, context in contexts.items():
        message = render(kind, **context)
        assert message.text, kind
        check_blocks(message.blocks)
    home = render_view("home", cohorts=[cohort], organized=[cohort], submitted=set(), is_organizer=True,
                       recent=[], best=[])
    assert home["type"] == "home"
    check_blocks(home["blocks"], limit=100)


def test_curriculum_text_cannot_become_a_mention_or_link(bot):
    bot.say(CREATE)
    cohort = bot.services.cohorts.view("admin", "fastai")
    slot = cohort.lessons[0]
    sneaky = type(slot.lesson)(key="1", title="<!channel> & friends", topics=("<@U1>",), links=slot.lesson.links,
                               datasets=(), exercise=None)
    slot = dataclasses.replace(slot, title=sneaky.title, lesson=sneaky)
    message = render("lesson_post", cohort=cohort, lesson=sneaky, slot=slot, number=1, total=9, late=None)
    body = json.dumps(message.blocks[1:])
    assert "<!channel>" not in body and "<@U1>" not in body
    assert "&lt;!channel&gt; &amp; friends" in body
    assert escape_mrkdwn("<!channel> & <@U1>") == "&lt;!channel&gt; &amp; &lt;@U1&gt;"


def test_shell_shows_plain_text():
    assert to_plain("<!date^1799168400^{date_short_pretty}|Tue 05 Jan> <@U1> <#C1|fastai> <https://x.y|site> :wave:") \
        == "Tue 05 Jan @U1 #fastai site (https://x.y) 👋"
