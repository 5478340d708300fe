"""A notebook uploaded in a DM: fetch it with the bot token, hand it to the domain, answer at once."""

from __future__ import annotations

import logging
import urllib.error
import urllib.request

from studybot.bootstrap import Services
from studybot.errors import InputError, StudybotError
from studybot.messages import render
from studybot.services.submissions import MAX_NOTEBOOK_BYTES, check_size

log = logging.getLogger(__name__)

DOWNLOAD_TIMEOUT = 30  # seconds


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Slack answers a download without the files:read scope with a redirect to a login page."""

    def redirect_request(self, *args, **kwargs):
        return None


def download(url: str, token: str, max_bytes: int = MAX_NOTEBOOK_BYTES) -> tuple[bytes, str]:
    # The token goes in a header (never in the URL), so it cannot end up in any log line.
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(request, timeout=DOWNLOAD_TIMEOUT) as response:
            content = response.read(max_bytes + 1)
            return content, response.headers.get("Content-Type", "")
    except urllib.error.HTTPError as error:
        if 300 <= error.code < 400:
            raise InputError("Slack would not let me download the file (the bot lacks the files:read scope). "
                             "Tell your organizer.") from None
        raise InputError(f"Slack refused the download (HTTP {error.code}). Try sending the notebook again.") from None
    except (urllib.error.URLError, TimeoutError) as error:
        raise InputError(f"The download from Slack failed ({type(error).__name__}). Try again in a minute.") from None


def take_upload(services: Services, client, user_id: str, file_id: str, text: str | None) -> None:
    """Check, store and queue one uploaded file; the learner gets one message either way."""
    try:
        info = client.files_info(file=file_id)["file"]
        name = info.get("name") or "the file"
        if not name.lower().endswith(".ipynb"):
            raise InputError(f"{name} is not a notebook: send a .ipynb file.")
        check_size(info.get("size") or 0, name, services.submissions.max_bytes)  # refused before downloading
        content, content_type = download(info["url_private_download"], client.token, services.submissions.max_bytes)
        accepted = services.submissions.submit(user_id, content, filename=name, exercise=text,
                                               content_type=content_type, slack_file_id=file_id)
    except StudybotError as error:
        message = render("submission_rejected", error=error, field=getattr(error, "field", None))
        client.chat_postMessage(channel=services.chat.open_dm(user_id), text=message.text, blocks=message.blocks)
        return
    if accepted.duplicate:
        log.info("file %s was already taken as submission %s", file_id, accepted.submission_id)
        return
    submission = services.submissions.get(accepted.submission_id)
    channel = services.chat.open_dm(user_id)
    message = render("submission", **services.feedback.context(submission, services.submissions.job(submission.id)))
    ts = services.chat.post(channel, message)
    services.submissions.attach_message(submission.id, channel, ts, "queued")
