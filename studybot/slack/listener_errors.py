"""What a Slack listener does when a post fails after the Chat port's retries (a ChatError)."""

from __future__ import annotations

import contextlib
import logging
from typing import Iterator

from studybot.errors import ChatError

log = logging.getLogger(__name__)


@contextlib.contextmanager
def chat_errors_logged(what: str) -> Iterator[None]:
    """Log a failed post instead of letting it escape: the request was acked already, so there is no
    one left to answer, and an escaping error only becomes bolt's generic 'failed to run listener'."""
    try:
        yield
    except ChatError as error:
        log.warning("could not %s: %s", what, error.message)
