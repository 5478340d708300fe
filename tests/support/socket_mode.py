"""Slack's side of Socket Mode, on 127.0.0.1: a WebSocket server that speaks the envelope protocol.

The app under test finds it the way it finds Slack's: it calls ``apps.connections.open`` (the fake
Web API answers with this server's URL and a fresh ticket, :meth:`FakeSlack.serve_socket_mode`)
and connects. The test then plays Slack on each connection (a :class:`SocketModeLink`)::

    with SocketModeServer() as slack_ws:
        fake.serve_socket_mode(slack_ws.url)
        ...start the app...
        link = slack_ws.next_connection()
        link.send(hello())
        envelope_id = link.send(slash_commands_envelope(text="lesson"))
        ack = link.ack(envelope_id)          # {"envelope_id": ..., "payload": {...}}

The shapes (Slack's Socket Mode documentation, docs.slack.dev/apis/events-api/using-socket-mode):

* ``hello``: ``{"type": "hello", "num_connections", "debug_info": {"host", "build_number",
  "approximate_connection_time"}, "connection_info": {"app_id"}}``;
* an envelope: ``{"envelope_id", "type", "payload", "accepts_response_payload"}``; ``events_api``
  adds ``retry_attempt`` and ``retry_reason``; the payload is the body HTTP mode would get (the
  ``event_callback``, the slash command's fields as a JSON object of strings, the interaction);
* an ack: ``{"envelope_id"}``, plus ``"payload"`` where the envelope accepts one (slash commands,
  view submissions): what HTTP mode would answer in its response body;
* ``disconnect``: ``{"type": "disconnect", "reason": "refresh_requested" | "warning" |
  "link_disabled", "debug_info": {"host"}}``.
"""

from __future__ import annotations

import json
import queue
import threading
import time
import uuid
from typing import Any, Mapping
from urllib.parse import parse_qs, urlsplit

from websockets.sync.server import ServerConnection, serve

from tests.support.signed_requests import APP_ID, event_envelope, slash_command_body

__all__ = ["SocketModeLink", "SocketModeServer", "disconnect", "events_api_envelope", "hello",
           "interactive_envelope", "slash_commands_envelope"]

APPLINK_HOST = "applink-7f9c6d5b4-x2x9q"  # Slack names the server in debug_info


# ---------------------------------------------------------------------------- Slack's messages
def hello(num_connections: int = 1) -> dict:
    return {"type": "hello", "num_connections": num_connections,
            "debug_info": {"host": APPLINK_HOST, "build_number": 118, "approximate_connection_time": 18060},
            "connection_info": {"app_id": APP_ID}}


def disconnect(reason: str = "refresh_requested") -> dict:
    return {"type": "disconnect", "reason": reason, "debug_info": {"host": APPLINK_HOST}}


def _envelope(kind: str, payload: Mapping[str, Any], accepts_response_payload: bool) -> dict:
    return {"envelope_id": str(uuid.uuid4()), "payload": dict(payload), "type": kind,
            "accepts_response_payload": accepts_response_payload}


def events_api_envelope(event: Mapping[str, Any], *, event_id: str | None = None, retry_attempt: int = 0,
                        retry_reason: str = "") -> dict:
    """An ``event_callback`` around ``event``; events take no response payload."""
    envelope = _envelope("events_api", event_envelope(event, event_id=event_id), accepts_response_payload=False)
    envelope.update(retry_attempt=retry_attempt, retry_reason=retry_reason)
    return envelope


def slash_commands_envelope(**fields: Any) -> dict:
    """A slash command: the same fields as HTTP mode's form body (signed_requests.slash_command_body),
    as a JSON object of strings."""
    form = parse_qs(slash_command_body(**fields), keep_blank_values=True)
    return _envelope("slash_commands", {name: values[0] for name, values in form.items()},
                     accepts_response_payload=True)


def interactive_envelope(payload: Mapping[str, Any]) -> dict:
    """An interaction; only a view submission's ack may carry a payload (response_action)."""
    return _envelope("interactive", payload, accepts_response_payload=payload.get("type") == "view_submission")


# ---------------------------------------------------------------------------- the server
class SocketModeLink:
    """One WebSocket connection from the app, seen from Slack's side."""

    def __init__(self, websocket: ServerConnection) -> None:
        self.websocket = websocket
        query = parse_qs(urlsplit(websocket.request.path).query)
        self.ticket = (query.get("ticket") or [None])[0]
        self.received: list[dict] = []  # every message from the app, in order
        self.ack_times: dict[str, float] = {}  # envelope_id -> time.perf_counter() when its ack arrived
        self.closed = threading.Event()
        self._changed = threading.Condition()
        self._send_lock = threading.Lock()

    def send(self, message: Mapping[str, Any]) -> str | None:
        """Send one message; returns its envelope_id (None for hello and disconnect)."""
        with self._send_lock:
            self.websocket.send(json.dumps(message))
        return message.get("envelope_id")

    def ack(self, envelope_id: str, timeout: float = 10.0) -> dict:
        """The app's ack of ``envelope_id``; AssertionError when none came within ``timeout``."""
        with self._changed:
            if not self._changed.wait_for(lambda: envelope_id in self.ack_times or self.closed.is_set(), timeout):
                raise AssertionError(f"no ack for envelope {envelope_id} within {timeout}s; "
                                     f"received: {self.received}")
            for message in self.received:
                if message.get("envelope_id") == envelope_id:
                    return message
        raise AssertionError(f"the connection closed without an ack for {envelope_id}; received: {self.received}")

    def has_ack(self, envelope_id: str) -> bool:
        with self._changed:
            return envelope_id in self.ack_times

    def wait_closed(self, timeout: float = 10.0) -> int | None:
        """Until the app has closed the connection; the close code it sent (None: no close frame)."""
        if not self.closed.wait(timeout):
            raise AssertionError(f"the app did not close the connection within {timeout}s")
        frame = self.websocket.protocol.close_rcvd
        return frame.code if frame is not None else None

    def _serve(self) -> None:
        try:
            for raw in self.websocket:
                message = json.loads(raw)
                with self._changed:
                    self.received.append(message)
                    if "envelope_id" in message:
                        self.ack_times[message["envelope_id"]] = time.perf_counter()
                    self._changed.notify_all()
        except Exception:  # noqa: BLE001 - a connection dropped without a close frame: that is what closed says
            pass
        finally:
            with self._changed:
                self.closed.set()
                self._changed.notify_all()


class SocketModeServer:
    """The WebSocket endpoint, on an OS-chosen port; :meth:`next_connection` yields each new link."""

    def __init__(self) -> None:
        self._links: "queue.Queue[SocketModeLink]" = queue.Queue()
        self.links: list[SocketModeLink] = []
        self._server = None
        self._thread: threading.Thread | None = None

    def _handle(self, websocket: ServerConnection) -> None:
        link = SocketModeLink(websocket)
        self.links.append(link)
        self._links.put(link)
        link._serve()

    def start(self) -> "SocketModeServer":
        # No compression (Slack's client offers none) and no server pings: the app pings, we answer.
        self._server = serve(self._handle, "127.0.0.1", 0, compression=None, ping_interval=None,
                             close_timeout=2)
        self._thread = threading.Thread(target=self._server.serve_forever, name="socket-mode-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> "SocketModeServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        port = self._server.socket.getsockname()[1]
        return f"ws://127.0.0.1:{port}/link/"

    def next_connection(self, timeout: float = 20.0) -> SocketModeLink:
        try:
            return self._links.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"the app opened no new Socket Mode connection within {timeout}s") from None
