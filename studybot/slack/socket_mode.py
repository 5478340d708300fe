"""Socket Mode (`studybot socket`): bolt's SocketModeHandler on slack_sdk's built-in client, with a
graceful stop.

Slack's side of the protocol (docs.slack.dev/apis/events-api/using-socket-mode): the app asks
``apps.connections.open`` (with the xapp- token) for a WebSocket URL and connects; Slack says
``hello``, then sends envelopes (``events_api``, ``slash_commands``, ``interactive``), each with an
``envelope_id`` the app must ack within 3 s (``{"envelope_id": ..., "payload": ...}``, the payload
being what HTTP mode would answer in the response body). ``disconnect`` (reason
``refresh_requested`` every few hours, or ``warning`` shortly before) asks the app to open a new
connection; the client does so itself (a new ``apps.connections.open``).

The built-in client has no graceful stop: ``close()`` drops the socket at once, so an envelope
being handled loses its ack (Slack retries an event, and shows the user an error for a command).
:meth:`SocketModeService.stop` stops in this order instead, using the client's public attributes:

1. no reconnects and no keep-alive pings (a ping failure would reconnect);
2. stop reading: envelopes still unread stay with Slack, which redelivers events to another
   connection (there may be up to 10) and, for the rest, shows the user an error;
3. hand every envelope already read to the handler threads, and wait until each has been acked;
4. wait for the listeners' work after their ack (bolt's listener pool), e.g. the reply to a DM;
5. close the WebSocket with a close frame (code 1000) and wait briefly for Slack's.
"""

from __future__ import annotations

import logging
import os
import socket
import struct
import time
from concurrent.futures import ThreadPoolExecutor

from slack_bolt import App
from slack_bolt.adapter.socket_mode import SocketModeHandler

from studybot.shutdown import finished_within

log = logging.getLogger(__name__)

HANDLER_THREADS = 10  # envelopes handled (up to their ack) at once; bolt's listener pool runs the rest
PING_SECONDS = 10  # keep-alive ping interval; the client reconnects after 4 without a pong
CLOSE_REPLY_SECONDS = 2.0  # how long to wait for the server's close frame after sending ours
WEBSOCKET_NORMAL_CLOSURE = 1000


class SocketModeService:
    """One Socket Mode connection for ``app``: :meth:`start`, then :meth:`stop` once."""

    def __init__(self, app: App, app_token: str, listener_executor: ThreadPoolExecutor | None = None) -> None:
        self.handler = SocketModeHandler(app, app_token, ping_interval=PING_SECONDS, concurrency=HANDLER_THREADS)
        self.listener_executor = listener_executor

    @property
    def client(self):
        return self.handler.client

    def start(self) -> None:
        """Open the connection (``apps.connections.open``, then the WebSocket); returns once connected.
        SlackApiError (e.g. ``invalid_auth`` for a revoked app token) propagates."""
        self.handler.connect()
        log.info("Socket Mode: connected (session %s)", self.client.session_id())

    def stop(self, grace: float) -> bool:
        """Stop as the module docstring says, within ``grace`` seconds; True when nothing was dropped."""
        client = self.client
        deadline = time.monotonic() + grace
        left = lambda: max(0.0, deadline - time.monotonic())  # noqa: E731

        # 1. No reconnect from here on (connect() resets auto_reconnect_enabled from the default).
        client.default_auto_reconnect_enabled = client.auto_reconnect_enabled = False
        client.current_app_monitor.shutdown()

        # 2. Stop reading. The reader thread reruns its target every 0.1 s, and each run marks the
        #    session live again: stop the runner first, then mark the session terminated until it exits.
        reader = client.current_session_runner
        reader.event.set()
        while reader.is_alive() and left():
            client.current_session_state.terminated = True
            reader.thread.join(0.1)

        # 3. Every envelope read so far goes to a handler thread; then wait for their acks.
        while not client.message_queue.empty() and left():
            time.sleep(0.01)
        unread = client.message_queue.qsize()
        client.closed = True  # the dispatcher loop ends after its current message
        client.message_processor.shutdown()
        acked = finished_within(lambda: client.message_workers.shutdown(wait=True), left())

        # 4. The listeners' work after their ack.
        finished = self.listener_executor is None or finished_within(
            lambda: self.listener_executor.shutdown(wait=True), left())

        # 5. A clean close.
        self._close_websocket()
        client.disconnect()  # not close(): its own wait for the handler threads has no time limit
        clean = acked and finished and not unread
        log.info("Socket Mode: closed%s", "" if clean else
                 f" with work dropped (acks sent: {acked}, listeners done: {finished}, unread: {unread})")
        return clean

    def _close_websocket(self) -> None:
        session = self.client.current_session
        sock = getattr(session, "sock", None)
        if sock is None:
            return
        try:
            with session.sock_send_lock:
                sock.sendall(_masked_frame(0x8, struct.pack("!H", WEBSOCKET_NORMAL_CLOSURE)))
            # The server answers with its own close frame and then closes the TCP connection.
            sock.settimeout(CLOSE_REPLY_SECONDS)
            deadline = time.monotonic() + CLOSE_REPLY_SECONDS
            while time.monotonic() < deadline and sock.recv(4096):
                pass
        except (OSError, socket.timeout) as error:
            log.info("Socket Mode: the close handshake did not complete (%s)", error)


def _masked_frame(opcode: int, payload: bytes) -> bytes:
    """One final WebSocket frame from a client (RFC 6455 section 5.2: client frames are masked)."""
    if len(payload) > 125:
        raise ValueError("control frames carry at most 125 bytes")
    mask = os.urandom(4)
    return (bytes([0x80 | opcode, 0x80 | len(payload)]) + mask
            + bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload)))
