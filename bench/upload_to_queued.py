"""Time from a notebook upload event to the learner's "queued" reply, over real HTTP on loopback.

    python bench/upload_to_queued.py [--uploads 50] [--database-url URL]

The real bolt app (waitress) receives signed `message.im` file_share events; it fetches the file
from the fake Slack (files.info + the authenticated download), checks and stores the notebook,
queues the job, and posts the reply. The clock stops when the fake Slack receives that reply.
Uploads go one at a time, so each figure is a learner's wait, not a throughput."""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SECRET, TOKEN = "bench-signing-secret", "xoxb-bench"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--uploads", type=int, default=50)
    parser.add_argument("--database-url", default=None, help="default: a fresh SQLite file")
    args = parser.parse_args()

    from studybot.bootstrap import build_services
    from studybot.time_source import SystemClock
    from studybot.config import load_settings
    from studybot.db.engine import Database
    from studybot.slack.app import build_app
    from studybot.slack.chat import SlackChat, make_web_client
    from studybot.slack.server import BackgroundServer
    from tests.support import signed_requests as slack
    from tests.support.fake_slack import FakeSlack

    workdir = Path(tempfile.mkdtemp(prefix="studybot-bench-"))
    database_url = args.database_url or f"sqlite:///{workdir / 'bench.sqlite3'}"
    notebook = (ROOT / "exercises" / "digits" / "reference.ipynb").read_bytes()
    waits = []
    with FakeSlack() as fake:
        db = Database(database_url)
        db.migrate()
        chat = SlackChat(make_web_client(TOKEN, fake.api_url), post_interval=0)
        settings = load_settings({"DATABASE_URL": database_url, "STUDYBOT_DAILY_QUOTA": str(args.uploads + 10)})
        services = build_services(settings, db, chat, SystemClock())
        server = BackgroundServer(build_app(services, chat, SECRET)).start()
        try:
            for i in range(args.uploads):
                user = f"U{i % 20}"
                info = fake.add_file(f"n{i}.ipynb", notebook + b" " * i, user=user)  # distinct contents
                event = {"type": "message", "subtype": "file_share", "channel": f"D{user}", "channel_type": "im",
                         "user": user, "text": "digits", "ts": f"{i}.1", "files": [{"id": info["id"]}]}
                before = len(fake.calls_to("chat.postMessage"))
                started = time.monotonic()
                assert slack.event(server.url, SECRET, event).status_code == 200
                [reply] = fake.wait_for("chat.postMessage", count=before + 1, timeout=30)[before:]
                assert "Queued" in reply.args["text"], reply.args["text"]
                waits.append(reply.at - started)
        finally:
            slack.SESSION.close()
            server.stop()
    ms = sorted(1000 * w for w in waits)
    figures = dict(machine=f"{platform.node()} {platform.machine()} {os.cpu_count()} cores",
                   database=database_url.split(":")[0], uploads=len(ms), p50_ms=round(statistics.median(ms), 1),
                   p90_ms=round(ms[int(0.9 * (len(ms) - 1))], 1), max_ms=round(ms[-1], 1))
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
