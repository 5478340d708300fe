"""Slash-command ack latency, in HTTP mode and in Socket Mode: studybot's `/study lesson` against a
bare bolt app whose one listener only acks, measured side by side in one run, with studybot's
clock and a grading worker running on the same database all along.

    python bench/ack_latency.py [--requests 2000] [--concurrency 20] [--jobs-per-second 2]
                                [--database-url URL]

The apps are real processes: studybot is `studybot serve` and `studybot socket` (the Procfile's
commands); the bare app is this file's `--serve bare-http|bare-socket`, on the same HTTP server
(waitress, studybot.slack.server) and the same Socket Mode client (studybot.slack.socket_mode).
The background, on the same database: `studybot clock` (ticking every second, feedback every 2 s)
and `studybot work --noop-jobs`, fed one no-op grading job every 1/--jobs-per-second seconds, whose
results the clock then brings to the learners' DMs. This process is the load generator and plays
Slack: the fake Web API (tests/support/fake_slack.py) and, for Socket Mode, the local Socket Mode
server (tests/support/socket_mode.py).

Latency: HTTP, from sending the signed request to its response (the ack); Socket Mode, from sending
the envelope to receiving its ack on the WebSocket. studybot answers `/study lesson` inside the ack
(a read-only command), so an error is a non-200, a missing ack, or an ack without the lesson in it:
"zero errors" covers the answer, not just the ack. Goal (issue 2): p99(studybot) / p99(bare) <= 1.5
in each transport, with zero errors."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SECRET = "bench-signing-secret"
TOKEN = "xoxb-bench"
APP_TOKEN = "xapp-1-bench"
MEMBERS = 20  # learners in the cohort; client thread i sends as U{i % MEMBERS}
WARMUP_REQUESTS = 200
READY_SECONDS = 60.0  # how long a process may take to start


# ---------------------------------------------------------------------------- the bare app (child)
def serve_bare(transport: str, api_url: str) -> None:
    """Child process: the bare bolt app until SIGTERM, on studybot's own HTTP server or Socket Mode client."""
    from slack_bolt import App

    from studybot.shutdown import ShutdownSignal
    from studybot.slack.chat import make_web_client

    stop = ShutdownSignal().install().stop
    client = make_web_client(TOKEN, api_url)
    if transport == "http":
        from studybot.slack.server import make_server, serve_until

        app = App(client=client, signing_secret=SECRET, token_verification_enabled=False)
        app.command("/study")(lambda ack: ack())
        server = make_server(app, host="127.0.0.1", port=0)
        print(f"serving Slack requests on http://127.0.0.1:{server.effective_port}/slack/events", file=sys.stderr,
              flush=True)
        serve_until(server, stop, grace=5)
        return
    from studybot.slack.socket_mode import SocketModeService

    app = App(client=client, signing_secret=None, request_verification_enabled=False, token_verification_enabled=False)
    app.command("/study")(lambda ack: ack())
    service = SocketModeService(app, APP_TOKEN)
    service.start()
    stop.wait()
    service.stop(5)


# ---------------------------------------------------------------------------- the database
def prepare_database(database_url: str, api_url: str) -> None:
    from studybot.bootstrap import build_services
    from studybot.config import load_settings
    from studybot.db.engine import Database
    from studybot.slack.chat import SlackChat, make_web_client
    from studybot.time_source import SystemClock

    db = Database(database_url)
    db.migrate()
    services = build_services(load_settings({"DATABASE_URL": database_url}), db,
                              SlackChat(make_web_client(TOKEN, api_url)), SystemClock())
    services.cohorts.create("UADMIN", name="bench", channel="<#CBENCH|bench>", start="2031-01-06", at="18:00",
                            tz="Europe/Berlin")
    for i in range(MEMBERS):
        services.cohorts.join(f"U{i}", "bench")
    db.dispose()


class JobFeeder:
    """Queues one no-op grading job every ``interval`` seconds (for `studybot work --noop-jobs`), each
    with its learner's "queued" DM already posted, as an upload gets; the clock then edits that DM
    with the result (chat.update), so the clock, the worker and the apps all use the database."""

    def __init__(self, database_url: str, interval: float, api_url: str) -> None:
        self.database_url, self.interval, self.api_url = database_url, interval, api_url
        self.stop = threading.Event()
        self.queued = 0
        self.thread = threading.Thread(target=self._run, name="feeder", daemon=True)

    def _run(self) -> None:
        from studybot.db.engine import Database
        from studybot.db.models import Notebook, Submission
        from studybot.queue import JobQueue

        from studybot.slack.chat import make_web_client

        db = Database(self.database_url)
        queue = JobQueue(db)
        slack = make_web_client(TOKEN, self.api_url)
        content = b'{"cells": [], "nbformat": 4, "nbformat_minor": 5, "metadata": {}}'
        digest = hashlib.sha256(content).hexdigest()
        while not self.stop.wait(self.interval):
            now = datetime.now(timezone.utc)
            user = f"U{self.queued % MEMBERS}"
            dm = slack.chat_postMessage(channel=user, text="Your notebook is queued.")
            with db.session() as s:
                if s.get(Notebook, digest) is None:
                    s.add(Notebook(sha256=digest, content=content, size=len(content), created_at=now))
                submission = Submission(user_id=user, exercise_id="digits", status="queued", created_at=now,
                                        notebook_sha256=digest, lane="ranked", source="slack",
                                        dm_channel=dm["channel"], dm_ts=dm["ts"], notified_state="queued")
                s.add(submission)
                s.flush()
                queue.enqueue(s, submission)
            self.queued += 1
        db.dispose()


# ---------------------------------------------------------------------------- load
def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def run_clients(total: int, concurrency: int, one_request) -> tuple[list[float], int]:
    """``concurrency`` threads share ``total`` requests; ``one_request(worker, i)`` -> (seconds, ok)."""
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    counter = iter(range(total))

    def client(worker: int) -> None:
        nonlocal errors
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                return
            elapsed, ok = one_request(worker, i)
            with lock:
                latencies.append(elapsed)
                errors += not ok

    threads = [threading.Thread(target=client, args=(w,)) for w in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies, errors


def http_requester(url: str, response_url: str, expect_answer: bool, concurrency: int):
    from tests.support.signed_requests import signed_headers, slash_command_body

    sessions = [requests.Session() for _ in range(concurrency)]  # one keep-alive connection per client

    def one(worker: int, i: int) -> tuple[float, bool]:
        body = slash_command_body(text="lesson", user_id=f"U{worker % MEMBERS}", response_url=response_url,
                                  trigger_id=f"t{i}")
        headers = signed_headers(SECRET, body)
        started = time.perf_counter()
        try:
            response = sessions[worker].post(url, data=body, headers=headers, timeout=10)
            elapsed = time.perf_counter() - started
            ok = response.status_code == 200 and (not expect_answer or "Lesson" in response.json()["text"])
        except (requests.RequestException, ValueError, KeyError):
            elapsed, ok = time.perf_counter() - started, False
        return elapsed, ok

    return one


def socket_requester(link, response_url: str, expect_answer: bool):
    from tests.support.socket_mode import slash_commands_envelope

    def one(worker: int, i: int) -> tuple[float, bool]:
        envelope = slash_commands_envelope(text="lesson", user_id=f"U{worker % MEMBERS}", response_url=response_url,
                                           trigger_id=f"t{i}")
        started = time.perf_counter()
        envelope_id = link.send(envelope)
        try:
            ack = link.ack(envelope_id, timeout=10)
        except AssertionError:
            return time.perf_counter() - started, False
        elapsed = link.ack_times[envelope_id] - started  # stamped by the reader thread on arrival
        ok = not expect_answer or "Lesson" in (ack.get("payload") or {}).get("text", "")
        return elapsed, ok

    return one


# ---------------------------------------------------------------------------- the run
def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--jobs-per-second", type=float, default=2.0,
                        help="no-op grading jobs queued per second for the background worker (0: none)")
    parser.add_argument("--database-url", default=None, help="default: a fresh SQLite file")
    parser.add_argument("--serve", choices=["bare-http", "bare-socket"], help=argparse.SUPPRESS)
    parser.add_argument("--api-url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve_bare(args.serve.removeprefix("bare-"), args.api_url)
        return

    import signal

    from tests.support.fake_slack import FakeSlack
    from tests.support.processes import StudybotProcess, studybot_env
    from tests.support.socket_mode import SocketModeServer, hello

    workdir = Path(tempfile.mkdtemp(prefix="studybot-bench-"))
    database_url = args.database_url or f"sqlite:///{workdir / 'bench.sqlite3'}"
    results: dict[str, dict] = {}
    with FakeSlack() as fake, SocketModeServer() as slack_ws:
        fake.add_user("UADMIN", "organizer", is_admin=True)
        fake.add_channel("CBENCH", "bench")
        fake.serve_socket_mode(slack_ws.url)
        prepare_database(database_url, fake.api_url)
        env = studybot_env(workdir, SLACK_BOT_TOKEN=TOKEN, SLACK_SIGNING_SECRET=SECRET, SLACK_APP_TOKEN=APP_TOKEN,
                           SLACK_API_URL=fake.api_url, DATABASE_URL=database_url, STUDYBOT_TICK_SECONDS="1",
                           STUDYBOT_LOG_LEVEL="WARNING")
        info_env = {**env, "STUDYBOT_LOG_LEVEL": "INFO"}  # for the lines that say a process is ready
        background = [StudybotProcess(["clock"], info_env, name="clock"),
                      StudybotProcess(["work", "--noop-jobs", "--poll", "0.2"], env, name="worker")]
        feeder = JobFeeder(database_url, 1 / args.jobs_per_second, fake.api_url) if args.jobs_per_second > 0 else None
        try:
            background[0].wait_for_line(r"clock started", timeout=READY_SECONDS)
            background[1].wait_for_line(r": lanes \S*ranked", timeout=READY_SECONDS)
            if feeder:
                feeder.thread.start()
            for transport in ("http", "socket"):
                for kind in ("bare", "studybot"):
                    command = (["serve", "--port", "0", "--host", "127.0.0.1"] if transport == "http" else ["socket"])
                    if kind == "bare":
                        app = StudybotProcess([], info_env, name=f"bare {transport}", command=[
                            sys.executable, __file__, "--serve", f"bare-{transport}", "--api-url", fake.api_url])
                    else:
                        app = StudybotProcess(command, info_env, name=f"studybot {transport}")
                    try:
                        if transport == "http":
                            url = app.wait_for_line(r"serving Slack requests on (http://\S+)",
                                                    timeout=READY_SECONDS).group(1)
                            make = lambda name, answer: http_requester(url, fake.response_url(name), answer,  # noqa: E731
                                                                       args.concurrency)
                        else:
                            link = slack_ws.next_connection(timeout=READY_SECONDS)
                            link.send(hello())
                            make = lambda name, answer: socket_requester(link, fake.response_url(name), answer)  # noqa: E731
                        run_clients(WARMUP_REQUESTS, args.concurrency, make("warmup", False))  # both warmed alike
                        started = time.perf_counter()
                        latencies, errors = run_clients(args.requests, args.concurrency,
                                                        make(f"{kind}-{transport}", kind == "studybot"))
                        wall = time.perf_counter() - started
                        results[f"{transport} {kind}"] = dict(
                            p50_ms=1000 * statistics.median(latencies), p99_ms=1000 * percentile(latencies, 99),
                            max_ms=1000 * max(latencies), errors=errors, requests=len(latencies),
                            throughput_rps=len(latencies) / wall)
                    finally:
                        app.send_signal(signal.SIGTERM)
                        app.wait(timeout=30)
                        app.kill()
        finally:
            if feeder:
                feeder.stop.set()
                feeder.thread.join(timeout=10)
            for process in background:
                process.send_signal(signal.SIGTERM)
            for process in background:
                process.wait(timeout=30)
                process.kill()
        result_edits = [c for c in fake.calls_to("chat.update") if c.ok]
    ratios = {transport: dict(p50=results[f"{transport} studybot"]["p50_ms"] / results[f"{transport} bare"]["p50_ms"],
                              p99=results[f"{transport} studybot"]["p99_ms"] / results[f"{transport} bare"]["p99_ms"])
              for transport in ("http", "socket")}
    print(json.dumps(dict(machine=f"{platform.node()} {platform.machine()} {os.cpu_count()} cores",
                          database=database_url.split(":")[0], requests=args.requests, concurrency=args.concurrency,
                          background=dict(clock_tick_seconds=1, worker="noop", jobs_queued=feeder.queued if feeder else 0,
                                          result_dm_edits_by_the_clock=len(result_edits)),
                          results=results, ratios={t: {k: round(v, 3) for k, v in r.items()} for t, r in ratios.items()}),
                     indent=2))
    for name, r in results.items():
        print(f"{name:16s} p50 {r['p50_ms']:7.2f} ms  p99 {r['p99_ms']:7.2f} ms  errors {r['errors']}"
              f"  {r['throughput_rps']:.0f} req/s")
    for transport, r in ratios.items():
        print(f"{transport:6s} studybot/bare  p50 {r['p50']:.2f}x  p99 {r['p99']:.2f}x  (goal: p99 <= 1.5x, zero errors)")


if __name__ == "__main__":
    main()
