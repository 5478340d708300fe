"""A learner's notebook arrives: submit it and tell the learner, in their DM, what happened.

Transport-neutral: Slack (studybot/slack/uploads.py) fetches the upload's bytes with the bot token,
the shell (studybot/shell/grading.py) reads a path; both call ``accept``, so both answer with the
same message. A notebook that could not even be fetched is answered through ``refuse``."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import select

from studybot.db.models import Submission
from studybot.errors import StudybotError
from studybot.messages import render
from studybot.ports import Chat
from studybot.services.feedback import Feedback, state_of
from studybot.services.submissions import Submissions

log = logging.getLogger(__name__)

QUEUED, REJECTED, DUPLICATE = "queued", "rejected", "duplicate"


@dataclass(frozen=True)
class IntakeOutcome:
    """What became of one upload.

    ``status`` is QUEUED (a new submission, acknowledged with its queue position), REJECTED (nothing
    stored; the learner was told why) or DUPLICATE (the same upload again, e.g. Slack's retried event
    or the file_shared twin of a message: nothing was posted, the first one was answered already)."""

    status: str
    submission_id: int | None = None
    message_id: str | None = None  # the DM message posted (to be edited as grading moves on); None if none
    error: StudybotError | None = None


class Intake:
    def __init__(self, chat: Chat, submissions: Submissions, feedback: Feedback) -> None:
        self.chat, self.submissions, self.feedback = chat, submissions, feedback

    def accept(self, user_id: str, content: bytes, *, filename: str | None, exercise: str | None = None,
               source: str = "slack", content_type: str | None = None, upload_id: str | None = None,
               lane: str | None = None) -> IntakeOutcome:
        """Check, store and queue one notebook; the learner gets one DM either way, none for a duplicate.

        ``upload_id`` is the transport's id of the upload (Slack's file id): the same id twice is one
        submission. Raises ChatError when the acknowledgement itself cannot be posted."""
        try:
            accepted = self.submissions.submit(user_id, content, filename=filename, exercise=exercise,
                                               content_type=content_type, source=source, slack_file_id=upload_id,
                                               lane=lane)
        except StudybotError as error:
            return self.refuse(user_id, error)
        if accepted.duplicate:
            log.info("upload %s was already taken as submission %s", upload_id, accepted.submission_id)
            return IntakeOutcome(DUPLICATE, submission_id=accepted.submission_id)
        submission = self.submissions.get(accepted.submission_id)
        channel = self.chat.open_dm(user_id)
        context = self.feedback.context(submission, self.submissions.job(submission.id))
        message_id = self.chat.post(channel, render("submission", **context))
        # the state the message shows, so the feedback loop edits it only once that changes
        self.submissions.attach_message(submission.id, channel, message_id,
                                        state_of(submission, None, context["eta"]))
        return IntakeOutcome(QUEUED, submission_id=submission.id, message_id=message_id)

    def already_taken(self, upload_id: str) -> bool:
        """Whether this upload (Slack's file id) is a submission already: asked before fetching it, so
        the file_shared twin of an upload, or a retried event, never downloads the notebook again."""
        with self.submissions.db.session() as s:
            return s.scalar(select(Submission.id).where(Submission.slack_file_id == upload_id).limit(1)) is not None

    def refuse(self, user_id: str, error: StudybotError) -> IntakeOutcome:
        """Tell the learner why a notebook was not taken (also for one the transport could not fetch)."""
        message = render("submission_rejected", error=error, field=getattr(error, "field", None))
        return IntakeOutcome(REJECTED, message_id=self.chat.dm(user_id, message), error=error)
