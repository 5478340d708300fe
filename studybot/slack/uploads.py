"""A notebook uploaded in a DM: fetch it with the bot token and hand it to the intake
(studybot/services/intake.py), which submits it and answers the learner."""

from __future__ import annotations

import urllib.error
import urllib.request

from studybot.bootstrap import Services
from studybot.errors import InputError, StudybotError
from studybot.services.submissions import MAX_NOTEBOOK_BYTES, check_size

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


def fetch_upload(client, file_id: str, max_bytes: int) -> tuple[bytes, str, str]:
    """The upload's bytes, name and content type; InputError when it is not a notebook we can take.

    Name and reported size are checked before downloading, so an oversized file is never fetched.
    files.info stays a raw client call: it fetches, it posts nothing (posts go through the Chat port)."""
    info = client.files_info(file=file_id)["file"]
    name = info.get("name") or "the file"
    if not name.lower().endswith(".ipynb"):
        raise InputError(f"{name} is not a notebook: send a .ipynb file.")
    check_size(info.get("size") or 0, name, max_bytes)
    content, content_type = download(info["url_private_download"], client.token, max_bytes)
    return content, name, content_type


def take_upload(services: Services, client, user_id: str, file_id: str, text: str | None) -> None:
    """Fetch one uploaded file and hand it to the intake, which answers the learner (once per file)."""
    try:
        content, name, content_type = fetch_upload(client, file_id, services.submissions.max_bytes)
    except StudybotError as error:
        services.intake.refuse(user_id, error)
        return
    services.intake.accept(user_id, content, filename=name, exercise=text, source="slack",
                           content_type=content_type, upload_id=file_id)
