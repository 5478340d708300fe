"""One-line descriptions of errors for the worker's logs and the queue's last_error: the first
line only, capped, so a traceback or a notebook's content never floods a log line."""

MAX_LINE_CHARS = 300


def first_line(text: str) -> str:
    return (text.strip().splitlines() or [""])[0][:MAX_LINE_CHARS]


def short(error: BaseException) -> str:
    return f"{type(error).__name__}: {first_line(str(error))}"
