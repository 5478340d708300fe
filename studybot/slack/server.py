"""HTTP mode: the bolt app as a WSGI application served by waitress (the Procfile's web process)."""

from __future__ import annotations

from slack_bolt import App
from slack_bolt.adapter.wsgi import SlackRequestHandler
from waitress import create_server
from waitress.server import BaseWSGIServer

SERVER_THREADS = 16  # concurrent HTTP requests; each acks quickly and hands work to bolt's listener pool


def wsgi_app(app: App):
    slack = SlackRequestHandler(app, path="/slack/events")

    def application(environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path == "/healthz":
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"ok\n"]
        if path == "/slack/events":
            return slack(environ, start_response)
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found\n"]

    return application


def make_server(app: App, host: str = "0.0.0.0", port: int = 3000, threads: int = SERVER_THREADS) -> BaseWSGIServer:
    """A waitress server; ``.run()`` serves until ``.close()``. port=0 picks a free port (``.effective_port``)."""
    return create_server(wsgi_app(app), host=host, port=port, threads=threads, ident="studybot")
