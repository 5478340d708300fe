"""A notebook uploaded in a DM: fetch it with the bot token and hand it to the intake
(studybot/services/intake.py), which submits it and answers the learner."""

from __future__ import annotations

import logging
import urllib.error
import urllib.request

from slack_sdk.errors import SlackApiError, SlackClientError

from studybot.bootstrap import Services
from studybot.errors import InputError, StudybotError
from studybot.services.submissions import MAX_NOTEBOOK_BYTES, check_size

log = logging.getLogger(__name__)

DOWNLOAD_TIMEOUT = 30  # seconds

# files.info error codes that mean the file is gone: nothing to retry, the learner must send it again.
GONE_ERRORS = frozenset({"file_not_found", "file_deleted"})


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


def file_info(client, file_id: str) -> dict:
    """files.info's file object; InputError (what the learner can do about it) when Slack will not say.

    files.info stays a raw client call: it fetches, it posts nothing (posts go through the Chat port)."""
    try:
        return client.files_info(file=file_id)["file"]
    except SlackApiError as error:
        code = error.response.get("error")
        if code in GONE_ERRORS:
            raise InputError("That file was deleted before I could fetch it. Send the .ipynb again.") from None
        log.warning("files.info %s failed: %s", file_id, code)
        raise InputError(f"Slack would not show me that file ({code}). Send the .ipynb again in a minute.") from None
    except SlackClientError as error:
        raise InputError(f"Slack could not be reached ({type(error).__name__}). Send the .ipynb again in a minute.") \
            from None


def check_visible(info: dict) -> None:
    """InputError when Slack answered with a partial object that hides the file (see
    tests/support/slack_shapes.py): a free workspace's file limit hides it, or it was deleted."""
    mode = info.get("mode")
    if mode == "hidden_by_limit":
        raise InputError("Slack hides that file: this workspace is over its file storage limit, so I cannot "
                         "download it. Send the .ipynb again (a new upload) or ask an admin about the limit.")
    if mode == "tombstone":
        raise InputError("That file was deleted before I could fetch it. Send the .ipynb again.")


def check_downloadable(info: dict, name: str) -> None:
    """InputError for an external file: a Google Drive or Dropbox link (``mode: external``), whose
    object has no ``url_private_download``: Slack holds the link, not the notebook's bytes."""
    if info.get("mode") == "external" or info.get("is_external") or not info.get("url_private_download"):
        raise InputError(f"{name} is a link to a file stored elsewhere, not the notebook itself. Download the "
                         ".ipynb and send me the file itself (drag it into this DM), not a link.")


def fetch_upload(client, file_id: str, max_bytes: int) -> tuple[bytes, str, str]:
    """The upload's bytes, name and content type; InputError when it is not a notebook we can take.

    Name and reported size are checked before downloading, so an oversized file is never fetched."""
    info = file_info(client, file_id)
    check_visible(info)
    name = info.get("name") or "the file"
    if not name.lower().endswith(".ipynb"):
        raise InputError(f"{name} is not a notebook: send a .ipynb file.")
    check_downloadable(info, name)
    check_size(info.get("size") or 0, name, max_bytes)
    content, content_type = download(info["url_private_download"], client.token, max_bytes)
    return content, name, content_type


def take_upload(services: Services, client, user_id: str, file_id: str, text: str | None) -> None:
    """Fetch one uploaded file and hand it to the intake, which answers the learner (once per file)."""
    if services.intake.already_taken(file_id):
        # The UNIQUE file id would refuse it after the download anyway; asking first saves fetching 5 MB.
        log.info("upload %s was already taken; not fetched again", file_id)
        return
    try:
        content, name, content_type = fetch_upload(client, file_id, services.submissions.max_bytes)
    except StudybotError as error:
        services.intake.refuse(user_id, error)
        return
    services.intake.accept(user_id, content, filename=name, exercise=text, source="slack",
                           content_type=content_type, upload_id=file_id)
