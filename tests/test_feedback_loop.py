"""The result-DM loop cannot be starved or poisoned: a long queue and messages Slack refuses for good
never keep a finished result from its learner (issue 10: no poison messages)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import update

from studybot.db.models import GradingJob, Submission
from studybot.errors import ChatError
from studybot.services.feedback import UPDATE_BACKOFF_SECONDS
from tests.support.boards import start
from tests.test_review import graded


def queued(bot, user: str) -> int:
    """A submission waiting in the queue whose DM already says so."""
    submission_id = graded(bot, user, 3.0)
    with bot.services.db.session() as s:
        s.execute(update(Submission).where(Submission.id == submission_id)
                  .values(status="queued", notified_state="queued"))
        s.execute(update(GradingJob).where(GradingJob.submission_id == submission_id).values(status="queued"))
    return submission_id


class RefusingChat:
    """The Chat port with Slack refusing every edit of some messages (the rest go through)."""

    def __init__(self, chat, refused: set[str], *, permanent: bool) -> None:
        self.chat, self.refused, self.permanent, self.tries = chat, refused, permanent, []

    def update(self, channel_id, message_id, message):
        if channel_id in self.refused:
            self.tries.append(channel_id)
            raise ChatError("Slack refused chat_update: invalid_blocks" if self.permanent else "Slack was down",
                            code="invalid_blocks" if self.permanent else None, permanent=self.permanent)
        return self.chat.update(channel_id, message_id, message)

    def __getattr__(self, name):
        return getattr(self.chat, name)


def test_a_long_queue_does_not_keep_a_result_out_of_the_batch(bot):
    start(bot)
    for i in range(105):  # more than one batch of messages that cannot change
        queued(bot, f"learner{i:03d}")
    finished = graded(bot, "ada", 3.0)
    assert (finished, "done:passed") in bot.services.feedback.tick()


def test_a_message_slack_refuses_for_good_is_given_up_and_never_retried(bot):
    start(bot)
    poisoned = [graded(bot, f"bad{i}", 3.0) for i in range(3)]
    fine = graded(bot, "ada", 3.0)
    feedback = bot.services.feedback
    feedback.chat = RefusingChat(bot.services.chat, {f"@bad{i}" for i in range(3)}, permanent=True)
    changed = dict(feedback.tick())
    assert changed[fine] == "done:passed"
    assert all(changed[p] == "done:passed" for p in poisoned)  # given up: marked, never tried again
    tries = len(feedback.chat.tries)
    assert feedback.tick() == [] and len(feedback.chat.tries) == tries == 3


def test_a_message_slack_fails_for_now_backs_off_then_goes_through(bot):
    start(bot)
    late = graded(bot, "bob", 3.0)
    feedback = bot.services.feedback
    flaky = feedback.chat = RefusingChat(bot.services.chat, {"@bob"}, permanent=False)
    assert feedback.tick() == [] and len(flaky.tries) == 1
    assert feedback.tick() == [] and len(flaky.tries) == 1  # waiting out its backoff: not even tried
    flaky.refused.clear()
    bot.clock.advance(timedelta(seconds=UPDATE_BACKOFF_SECONDS))
    assert feedback.tick() == [(late, "done:passed")]


def test_a_log_tail_full_of_markup_and_a_strange_device_name_stay_valid_and_inert(bot):
    """Escaping after cutting grew a tail of & < > past 3,000 characters (invalid_blocks, retried forever);
    a grader-supplied device name went into mrkdwn as it was."""
    import json

    from studybot.messages import limits
    from tests.test_messages import check_blocks

    start(bot)
    submission_id = graded(bot, "ada", 3.0)
    with bot.services.db.session() as s:
        row = s.get(Submission, submission_id)
        result = json.loads(row.result_json)
        result.update(status="crashed", message="boom", log_tail=("<&>" * 600 + "\n") * 4,
                      hardware={"device_name": "<!channel> gpu"})
        row.status, row.result_json = "crashed", json.dumps(result)
    message = bot.services.feedback.message(bot.services.submissions.get(submission_id), None)
    check_blocks(message.blocks)
    sections = [b["text"]["text"] for b in message.blocks if b["type"] == "section"]
    tail = next(t for t in sections if t.startswith("```"))
    assert len(tail) <= limits.LOG_TAIL_MAX + 6 and "&amp;" in tail and "<&>" not in tail
    assert "<!channel>" not in json.dumps(message.blocks) and "&lt;!channel&gt; gpu" in json.dumps(message.blocks)
