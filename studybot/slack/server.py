"""HTTP mode: the bolt app as a WSGI application served by waitress (the Procfile's web process)."""

from __future__ import annotations

import threading

from slack_bolt import App
from slack_bolt.adapter.wsgi import SlackRequestHandler
from waitress import create_server
from waitress.server import BaseWSGIServer

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
                loop_timeout: float = 1.0) -> BaseWSGIServer:
    """A waitress server; ``.run()`` serves until ``.close()``. port=0 picks a free port (``.effective_port``).

    ``loop_timeout`` (seconds) is how often the event loop wakes to notice it was closed."""
    return create_server(wsgi_app(app), host=host, port=port, threads=threads, ident="studybot",
                         asyncore_loop_timeout=loop_timeout)


class BackgroundServer:
    """Serve in a thread and stop cleanly: for tests and benchmarks, which need a real port."""

    def __init__(self, app: App, host: str = "127.0.0.1", port: int = 0, **options) -> None:
        self.server = make_server(app, host=host, port=port, **options)
        self.url = f"http://{host}:{self.server.effective_port}/slack/events"
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="http", daemon=True)

    def _run(self) -> None:
        try:
            self.server.run()
        except OSError:  # the loop's sockets closed under it by stop()
            if not self._stopping:
                raise

    def start(self) -> "BackgroundServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping = True
        self.server.close()
        self._thread.join(timeout=5)
