"""Slash-command ack latency over real HTTP on loopback: studybot's `/study lesson` against a bare
bolt app that only acks, under the same load and the same HTTP server (waitress).

    python bench/ack_latency.py [--requests 2000] [--concurrency 20] [--database-url URL]

Each app runs in its own process; this process is the load generator (one keep-alive connection
per client thread). Latency = time from sending the signed request to its HTTP response (the ack).
studybot answers `/study lesson` inside the ack (a read-only command), so an error is any non-200
or an ack without the lesson in it: "zero errors" covers the answer, not just the ack.
Goal (issue 2): p99(studybot) / p99(bare) <= 1.5, with zero errors."""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SECRET = "bench-signing-secret"
TOKEN = "xoxb-bench"


def serve(kind: str, api_url: str, database_url: str, port_file: Path) -> None:
    """Child process: run one app until killed, writing its URL to port_file."""
    from slack_bolt import App

    from studybot.slack.chat import SlackChat, make_web_client
    from studybot.slack.server import BackgroundServer

    chat = SlackChat(make_web_client(TOKEN, api_url), post_interval=0)
    if kind == "bare":
        app = App(client=chat.client, signing_secret=SECRET, token_verification_enabled=False)
        app.command("/study")(lambda ack: ack())
    else:
        from studybot.bootstrap import build_services
        from studybot.time_source import SystemClock
        from studybot.config import load_settings
        from studybot.db.engine import Database
        from studybot.slack.app import build_app

        settings = load_settings({"DATABASE_URL": database_url})
        db = Database(database_url)
        services = build_services(settings, db, chat, SystemClock())
        app = build_app(services, chat, SECRET)
    server = BackgroundServer(app).start()
    port_file.write_text(server.url)
    threading.Event().wait()


def prepare_database(database_url: str, api_url: str) -> None:
    from studybot.bootstrap import build_services
    from studybot.time_source import SystemClock
    from studybot.config import load_settings
    from studybot.db.engine import Database
    from studybot.slack.chat import SlackChat, make_web_client

    db = Database(database_url)
    db.migrate()
    services = build_services(load_settings({"DATABASE_URL": database_url}), db,
                              SlackChat(make_web_client(TOKEN, api_url)), SystemClock())
    services.cohorts.create("UADMIN", name="bench", channel="<#CBENCH|bench>", start="2031-01-06", at="18:00",
                            tz="Europe/Berlin")
    for i in range(20):
        services.cohorts.join(f"U{i}", "bench")
    db.dispose()


def load(url: str, total: int, concurrency: int, response_url: str, expect_answer: bool) -> tuple[list[float], int]:
    from tests.support.signed_requests import slash_command_body, signed_headers

    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    counter = iter(range(total))

    def client(worker: int) -> None:
        nonlocal errors
        session = requests.Session()
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                return
            body = slash_command_body(text="lesson", user_id=f"U{worker}", response_url=response_url,
                                      trigger_id=f"t{i}")
            headers = signed_headers(SECRET, body)
            started = time.perf_counter()
            try:
                response = session.post(url, data=body, headers=headers, timeout=10)
                # studybot answers /study lesson inside the ack: check the answer is there
                ok = response.status_code == 200 and (not expect_answer or "Lesson" in response.json()["text"])
            except (requests.RequestException, ValueError, KeyError):
                ok = False
            elapsed = time.perf_counter() - started
            with lock:
                latencies.append(elapsed)
                errors += not ok

    threads = [threading.Thread(target=client, args=(w,)) for w in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies, errors


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--database-url", default=None, help="default: a fresh SQLite file")
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--api-url", help=argparse.SUPPRESS)
    parser.add_argument("--port-file", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.api_url, args.database_url, Path(args.port_file))
        return

    from tests.support.fake_slack import FakeSlack

    workdir = Path(tempfile.mkdtemp(prefix="studybot-bench-"))
    database_url = args.database_url or f"sqlite:///{workdir / 'bench.sqlite3'}"
    results = {}
    with FakeSlack() as fake:
        fake.add_user("UADMIN", "organizer", is_admin=True)
        prepare_database(database_url, fake.api_url)
        for kind in ("bare", "studybot"):
            port_file = workdir / f"{kind}.url"
            child = subprocess.Popen([sys.executable, __file__, "--serve", kind, "--api-url", fake.api_url,
                                      "--database-url", database_url, "--port-file", str(port_file)])
            try:
                while not port_file.exists() or not port_file.read_text():
                    time.sleep(0.05)
                url = port_file.read_text()
                load(url, 200, args.concurrency, fake.response_url("warmup"), False)  # warm both the same way
                time.sleep(1)
                fake.reset()
                started = time.perf_counter()
                latencies, errors = load(url, args.requests, args.concurrency, fake.response_url(kind),
                                         expect_answer=kind == "studybot")
                wall = time.perf_counter() - started
                results[kind] = dict(p50_ms=1000 * statistics.median(latencies), p99_ms=1000 * percentile(latencies, 99),
                                     max_ms=1000 * max(latencies), errors=errors, requests=len(latencies),
                                     throughput_rps=len(latencies) / wall)
            finally:
                child.kill()
                child.wait()
    ratio_p50 = results["studybot"]["p50_ms"] / results["bare"]["p50_ms"]
    ratio_p99 = results["studybot"]["p99_ms"] / results["bare"]["p99_ms"]
    print(json.dumps(dict(machine=f"{platform.node()} {platform.machine()} {os.cpu_count()} cores",
                          database=database_url.split(":")[0], requests=args.requests, concurrency=args.concurrency,
                          results=results, p50_ratio=round(ratio_p50, 3), p99_ratio=round(ratio_p99, 3)), indent=2))
    for kind, r in results.items():
        print(f"{kind:9s} p50 {r['p50_ms']:7.2f} ms  p99 {r['p99_ms']:7.2f} ms  errors {r['errors']}"
              f"  {r['throughput_rps']:.0f} req/s")
    print(f"ratio     p50 {ratio_p50:.2f}×  p99 {ratio_p99:.2f}×  (goal: p99 ≤ 1.5×, zero errors)")


if __name__ == "__main__":
    main()
