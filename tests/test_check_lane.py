"""`/study check EXERCISE`: one quick unranked run on the public split, with its own quota; the
worker claims it first and grades it with grader.api.check_submission, in the real sandbox."""

from __future__ import annotations

import json
import pathlib

import pytest
from sqlalchemy import select

from studybot.db.models import Submission
from tests.grader.conftest import sandbox_ready  # noqa: F401 - the fixture, for the sandboxed test

ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_check_is_asked_for_like_submit_and_has_its_own_quota(bot):
    said = bot.say("/study check digits", as_user="ada")
    assert "Ready to check your digits notebook" in said and "20 of 20 checks left today" in said
    assert "5 of 5 submissions left today" in bot.say("/study submit digits", as_user="ada")
    assert "Name the exercise: `/study check EXERCISE`" in bot.say("/study check", as_user="ada")
    assert "/study check EXERCISE" in bot.say("/study help", as_user="ada")


def test_an_upload_after_check_is_a_check_even_when_its_text_names_the_exercise(bot):
    bot.say("/study check digits", as_user="ada")
    notebook = (ROOT / "exercises" / "digits" / "starter.ipynb").read_bytes()
    taken = bot.services.intake.accept("ada", notebook, filename="mine.ipynb", exercise="digits", source="shell")
    submission = bot.services.submissions.get(taken.submission_id)
    assert submission.lane == "check"
    assert bot.services.submissions.quota_left("ada", "digits", "check") == 19
    assert bot.services.submissions.quota_left("ada", "digits") == 5


@pytest.mark.usefixtures("sandbox_ready")
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # a real grade: once is enough
def test_the_shell_check_runs_once_on_the_public_split_and_is_never_ranked(bot):
    said = bot.say(f"/study check digits {ROOT / 'exercises' / 'digits' / 'starter.ipynb'}", as_user="ada")
    assert "Check passed for digits, it runs" in said or "below target" in said, said
    assert "This was a check: one run on the public split, not ranked." in said
    assert "checks left today" in said and "Leaderboard" not in said
    with bot.services.db.session() as s:
        [row] = s.scalars(select(Submission)).all()
        assert row.lane == "check" and row.rank_seconds is not None
    result = json.loads(row.result_json)
    assert len(result["runs"]) == 1 and not result.get("reference")  # quick: no reference measured
    assert any("a check: one run on the public split" in note for note in result["notes"])
