"""The answer cache of read-only commands: hit while nothing changes, miss after any write."""

from __future__ import annotations

from studybot.db.models import Submission

CREATE = "/study cohort create fastai --channel #fastai --start 2027-01-05 --time 18:00 --tz Europe/Berlin"


def test_cached_answers_follow_every_kind_of_write(bot):
    bot.say(CREATE)
    replies = bot.services.reply_cache
    assert "not in any cohort" in replies.answer("status", "ada").text
    assert "Welcome to fastai" in replies.answer("join fastai", "ada").text  # a write, answered directly
    status = replies.answer("status", "ada")
    assert "fastai: 0/9 lessons posted" in status.text
    assert replies.answer("STATUS ", "ada") is status  # same question, nothing written: the cached object

    bot.say(":advance 16d")  # the scheduler's marks are writes
    status = replies.answer("status", "ada")
    assert "fastai: 3/9 lessons posted" in status.text and "digits not yet submitted" in status.text

    with bot.services.db.session() as s:  # an ORM insert from anywhere invalidates too
        s.add(Submission(user_id="ada", exercise_id="digits", status="queued", created_at=bot.clock.now()))
    assert "digits submitted" in replies.answer("status", "ada").text


def test_a_failed_write_does_not_invalidate(bot):
    bot.say(CREATE)
    version = bot.services.db.state_version()
    bot.say(CREATE)  # duplicate name: refused, nothing written
    bot.say("/study lesson", as_user="nobody")
    assert bot.services.db.state_version() == version
