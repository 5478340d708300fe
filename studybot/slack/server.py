"""HTTP mode: the bolt app as a WSGI application served by waitress (the Procfile's web process).

Stopping (SIGTERM, studybot/shutdown.py): :func:`serve_until` closes the listening socket (new
connections are refused, so a load balancer moves on), keeps the event loop running until every
request in hand has been answered and its response flushed, then closes the idle keep-alive
connections. Waitress's own ``run()`` cannot do this: on KeyboardInterrupt it stops the loop, and a
response still being written by a worker thread is never sent."""

from __future__ import annotations

import logging
import threading
import time

from slack_bolt import App
from slack_bolt.adapter.wsgi import SlackRequestHandler
from waitress import create_server, wasyncore
from waitress.server import BaseWSGIServer

log = logging.getLogger(__name__)

SLACK_PATHS = ("/slack/events", "/slack/install", "/slack/oauth_redirect")  # slack/workspaces.py's OAuth paths
SERVER_THREADS = 16  # concurrent HTTP requests; each acks quickly and hands work to bolt's listener pool


def wsgi_app(app: App):
    slack = SlackRequestHandler(app, path="/slack/events")

    def application(environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path == "/healthz":
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"ok\n"]
        if path in SLACK_PATHS:  # events and interactivity; the OAuth install page and redirect (GET)
            return slack(environ, start_response)
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found\n"]

    return application


def make_server(app: App, host: str = "0.0.0.0", port: int = 3000, threads: int = SERVER_THREADS,
                loop_timeout: int = 1) -> BaseWSGIServer:
    """A waitress server, served by :func:`serve_until`. port=0 picks a free port (``.effective_port``).

    ``loop_timeout`` (whole seconds) is the longest the event loop sleeps in select(). Waitress reads it
    with int(): 0.05 would become 0, a select() that never sleeps and an event loop that spins a whole
    core, so anything under a second is refused. Nothing needs it shorter: serve_until's trigger wakes
    the loop the moment it must stop."""
    if loop_timeout != int(loop_timeout) or loop_timeout < 1:
        raise ValueError(f"loop_timeout must be a whole number of seconds, at least 1 (not {loop_timeout!r}): "
                         "waitress truncates it, and 0 makes its event loop spin")
    return create_server(wsgi_app(app), host=host, port=port, threads=threads, ident="studybot",
                         asyncore_loop_timeout=loop_timeout)


DRAIN_POLL_SECONDS = 0.05  # event-loop wake-ups while the requests in hand finish


def requests_in_hand(server: BaseWSGIServer) -> int:
    """Connections with a request being received, run, or its response not yet flushed."""
    return sum(1 for channel in list(server.active_channels.values())
               if channel.requests or channel.request is not None or channel.total_outbufs_len)


def serve_until(server: BaseWSGIServer, stop: threading.Event, grace: float) -> bool:
    """Serve until ``stop`` is set, then drain (see the module docstring) for at most ``grace``
    seconds. True when every request in hand was answered."""
    def wake() -> None:
        stop.wait()
        try:
            server.pull_trigger()
        except OSError:
            pass  # the loop saw the stop at its own timeout and has already closed the trigger

    waker = threading.Thread(target=wake, name="http-stop", daemon=True)
    waker.start()  # the loop sleeps in select(): the trigger wakes it as soon as stop is set
    while not stop.is_set():
        wasyncore.loop(timeout=server.adj.asyncore_loop_timeout, map=server._map, count=1)
    wasyncore.dispatcher.close(server)  # the listening socket only: the trigger must keep working
    in_hand = requests_in_hand(server)
    log.info("HTTP: no longer accepting connections; %d request(s) in hand", in_hand)
    deadline = time.monotonic() + grace
    while in_hand and time.monotonic() < deadline:
        wasyncore.loop(timeout=DRAIN_POLL_SECONDS, map=server._map, count=1)
        in_hand = requests_in_hand(server)
    server.task_dispatcher.shutdown(cancel_pending=True, timeout=max(0.0, deadline - time.monotonic()))
    wasyncore.close_all(server._map, ignore_all=True)
    if in_hand:
        log.warning("HTTP: %d request(s) still in hand after %g s: dropped", in_hand, grace)
    return not in_hand


class BackgroundServer:
    """Serve in a thread and stop cleanly: for tests and benchmarks, which need a real port. It is
    served and stopped as `studybot serve` is (serve_until), so they exercise that path too."""

    STOP_GRACE_SECONDS = 5.0

    def __init__(self, app: App, host: str = "127.0.0.1", port: int = 0, **options) -> None:
        self.server = make_server(app, host=host, port=port, **options)
        self.url = f"http://{host}:{self.server.effective_port}/slack/events"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=serve_until, args=(self.server, self._stop, self.STOP_GRACE_SECONDS),
                                        name="http", daemon=True)

    def start(self) -> "BackgroundServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self.STOP_GRACE_SECONDS + 5)
