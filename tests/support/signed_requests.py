"""Build requests exactly as Slack sends them, sign them, and POST them over real HTTP.

Every sender takes the full URL of the bolt app's endpoint (``http://127.0.0.1:PORT/slack/events``)
and the signing secret, and returns the ``requests.Response``. Pass
``timestamp=time.time() - 600`` to send a stale (but correctly signed) request,
which bolt must answer with 401; :func:`unsigned` sends one with no signature at all.

:func:`serve_wsgi` runs any WSGI app (e.g. ``slack_bolt.adapter.wsgi.SlackRequestHandler(app)``)
on ``127.0.0.1`` and an OS-chosen port in a daemon thread, for tests that need a real server.
"""

from __future__ import annotations

import json
import socketserver
import threading
import time
import uuid
from contextlib import contextmanager
from typing import Any, Iterator, Mapping
from urllib.parse import quote, urlencode
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import requests
from slack_sdk.signature import SignatureVerifier

__all__ = [
    "DEFAULT_TIMEOUT",
    "FORM",
    "JSON",
    "SESSION",
    "block_action_payload",
    "event",
    "interactive",
    "post_signed",
    "serve_wsgi",
    "signed_headers",
    "slash_command",
    "unsigned",
    "view_submission_payload",
]

DEFAULT_TIMEOUT = 10.0
FORM = "application/x-www-form-urlencoded"
JSON = "application/json"
VERIFICATION_TOKEN = "verification-token"  # the deprecated token Slack still puts in payloads
APP_ID = "A1"
BOT_USER_ID = "UBOT"

#: One shared connection pool for the whole test run. Not meant for heavy concurrent use;
#: benchmarks should use their own sessions.
SESSION = requests.Session()


def _body_bytes(body: str | bytes) -> bytes:
    return body.encode("utf-8") if isinstance(body, str) else body


def signed_headers(secret: str, body: str | bytes, *, timestamp: float | None = None, content_type: str = FORM) -> dict:
    """The headers Slack sends with ``body``: content type, ``x-slack-request-timestamp``, ``x-slack-signature``."""
    ts = str(int(time.time() if timestamp is None else timestamp))
    text = body.decode("utf-8") if isinstance(body, bytes) else body
    signature = SignatureVerifier(secret).generate_signature(timestamp=ts, body=text)
    return {
        "Content-Type": content_type,
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": signature,
        "User-Agent": "Slackbot 1.0 (+https://api.slack.com/robots)",
    }


def post_signed(
    url: str,
    secret: str,
    body: str | bytes,
    content_type: str,
    *,
    timestamp: float | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> requests.Response:
    """POST an already-encoded ``body`` signed with ``secret``; extra ``headers`` are added last."""
    all_headers = signed_headers(secret, body, timestamp=timestamp, content_type=content_type)
    all_headers.update(headers or {})
    return SESSION.post(url, data=_body_bytes(body), headers=all_headers, timeout=timeout)


def unsigned(
    url: str,
    body: str | bytes | Mapping[str, Any],
    content_type: str = FORM,
    *,
    timeout: float = DEFAULT_TIMEOUT,
) -> requests.Response:
    """POST ``body`` with no Slack signature headers (a dict is encoded per ``content_type``)."""
    if isinstance(body, Mapping):
        body = json.dumps(body) if content_type.startswith(JSON) else urlencode(body)
    return SESSION.post(url, data=_body_bytes(body), headers={"Content-Type": content_type}, timeout=timeout)


# ---------------------------------------------------------------------------- slash commands
def slash_command_body(
    *,
    text: str,
    user_id: str = "U1",
    user_name: str = "ada",
    channel_id: str = "C1",
    channel_name: str = "general",
    command: str = "/study",
    team_id: str = "T1",
    response_url: str | None = None,
    trigger_id: str = "t1",
) -> str:
    """The form-urlencoded body Slack POSTs for a slash command."""
    fields = {
        "token": VERIFICATION_TOKEN,
        "team_id": team_id,
        "team_domain": "studygroup",
        "channel_id": channel_id,
        "channel_name": channel_name,
        "user_id": user_id,
        "user_name": user_name,
        "command": command,
        "text": text,
        "api_app_id": APP_ID,
        "is_enterprise_install": "false",
        "response_url": response_url or f"https://hooks.slack.com/commands/{team_id}/1/placeholder",
        "trigger_id": trigger_id,
    }
    return urlencode(fields)


def slash_command(
    url: str,
    secret: str,
    *,
    text: str,
    user_id: str = "U1",
    user_name: str = "ada",
    channel_id: str = "C1",
    channel_name: str = "general",
    command: str = "/study",
    team_id: str = "T1",
    response_url: str | None = None,
    trigger_id: str = "t1",
    timestamp: float | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> requests.Response:
    """POST a signed slash command. Pass ``response_url=fake.response_url()`` when the bot may respond();
    the default is a hooks.slack.com placeholder that is unreachable offline."""
    body = slash_command_body(
        text=text,
        user_id=user_id,
        user_name=user_name,
        channel_id=channel_id,
        channel_name=channel_name,
        command=command,
        team_id=team_id,
        response_url=response_url,
        trigger_id=trigger_id,
    )
    return post_signed(url, secret, body, FORM, timestamp=timestamp, timeout=timeout)


# ---------------------------------------------------------------------------- Events API
def event_envelope(event: Mapping[str, Any], *, event_id: str | None = None, team_id: str = "T1") -> dict:
    """The ``event_callback`` envelope around ``event`` (which gets an ``event_ts`` if it lacks one)."""
    now = time.time()
    inner = dict(event)
    inner.setdefault("event_ts", f"{now:.6f}")
    return {
        "token": VERIFICATION_TOKEN,
        "team_id": team_id,
        "context_team_id": team_id,
        "context_enterprise_id": None,
        "api_app_id": APP_ID,
        "event": inner,
        "type": "event_callback",
        "event_id": event_id or "Ev" + uuid.uuid4().hex[:12].upper(),
        "event_time": int(now),
        "authorizations": [
            {
                "enterprise_id": None,
                "team_id": team_id,
                "user_id": BOT_USER_ID,
                "is_bot": True,
                "is_enterprise_install": False,
            }
        ],
        "is_ext_shared_channel": False,
        "event_context": "4-" + uuid.uuid4().hex,
    }


def event(
    url: str,
    secret: str,
    event: Mapping[str, Any],
    *,
    event_id: str | None = None,
    team_id: str = "T1",
    retry_num: int | None = None,
    retry_reason: str | None = None,
    timestamp: float | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> requests.Response:
    """POST a signed Events API ``event_callback``. Reuse ``event_id`` and set ``retry_num`` to
    simulate Slack's redelivery (adds ``X-Slack-Retry-Num``/``X-Slack-Retry-Reason``)."""
    body = json.dumps(event_envelope(event, event_id=event_id, team_id=team_id))
    headers = {}
    if retry_num is not None:
        headers["X-Slack-Retry-Num"] = str(retry_num)
        headers["X-Slack-Retry-Reason"] = retry_reason or "http_timeout"
    return post_signed(url, secret, body, JSON, timestamp=timestamp, headers=headers, timeout=timeout)


# ---------------------------------------------------------------------------- interactivity
def interactive(
    url: str,
    secret: str,
    payload: Mapping[str, Any],
    timestamp: float | None = None,
    *,
    timeout: float = DEFAULT_TIMEOUT,
) -> requests.Response:
    """POST a signed interactive payload (block actions, shortcuts, view submissions) as ``payload=<json>``."""
    body = "payload=" + quote(json.dumps(payload), safe="")
    return post_signed(url, secret, body, FORM, timestamp=timestamp, timeout=timeout)


def _user(user_id: str, team_id: str) -> dict:
    return {"id": user_id, "username": user_id.lower(), "name": user_id.lower(), "team_id": team_id}


def _state_values(values: Mapping[str, Mapping[str, Any]]) -> dict:
    out: dict = {}
    for block_id, actions in values.items():
        out[block_id] = {}
        for action_id, value in actions.items():
            if isinstance(value, Mapping):
                out[block_id][action_id] = dict(value)
            else:
                out[block_id][action_id] = {"type": "plain_text_input", "value": value}
    return out


def view_submission_payload(
    callback_id: str,
    values: Mapping[str, Mapping[str, Any]],
    user_id: str = "U1",
    private_metadata: str = "",
    *,
    view_id: str = "V1",
    team_id: str = "T1",
    trigger_id: str = "t1",
) -> dict:
    """A ``view_submission`` payload.

    ``values`` maps block_id -> action_id -> either a string (a plain_text_input's value) or a
    full element state such as ``{"type": "static_select", "selected_option": {"value": "mon"}}``.
    """
    return {
        "type": "view_submission",
        "team": {"id": team_id, "domain": "studygroup"},
        "user": _user(user_id, team_id),
        "api_app_id": APP_ID,
        "token": VERIFICATION_TOKEN,
        "trigger_id": trigger_id,
        "view": {
            "id": view_id,
            "team_id": team_id,
            "type": "modal",
            "blocks": [],
            "private_metadata": private_metadata,
            "callback_id": callback_id,
            "state": {"values": _state_values(values)},
            "hash": "1700000000.abcdef",
            "title": {"type": "plain_text", "text": "studybot"},
            "clear_on_close": False,
            "notify_on_close": False,
            "root_view_id": view_id,
            "previous_view_id": None,
            "app_id": APP_ID,
            "external_id": "",
            "app_installed_team_id": team_id,
            "bot_id": "BBOT",
        },
        "response_urls": [],
        "is_enterprise_install": False,
        "enterprise": None,
    }


def block_action_payload(
    action_id: str,
    value: str,
    user_id: str = "U1",
    *,
    block_id: str = "b1",
    channel_id: str = "C1",
    message_ts: str = "1700000000.000100",
    response_url: str | None = None,
    view: Mapping[str, Any] | None = None,
    team_id: str = "T1",
    trigger_id: str = "t1",
) -> dict:
    """A ``block_actions`` payload for a button with ``value``: in a message by default,
    or in a view (modal / App Home) when ``view`` is given."""
    action = {
        "type": "button",
        "action_id": action_id,
        "block_id": block_id,
        "value": value,
        "text": {"type": "plain_text", "text": value},
        "action_ts": f"{time.time():.6f}",
    }
    payload: dict[str, Any] = {
        "type": "block_actions",
        "user": _user(user_id, team_id),
        "api_app_id": APP_ID,
        "token": VERIFICATION_TOKEN,
        "trigger_id": trigger_id,
        "team": {"id": team_id, "domain": "studygroup"},
        "enterprise": None,
        "is_enterprise_install": False,
        "state": {"values": {}},
        "actions": [action],
    }
    if view is not None:
        payload["container"] = {"type": "view", "view_id": view.get("id", "V1")}
        payload["view"] = dict(view)
    else:
        payload["container"] = {
            "type": "message",
            "message_ts": message_ts,
            "channel_id": channel_id,
            "is_ephemeral": False,
        }
        payload["channel"] = {"id": channel_id, "name": "general"}
        payload["message"] = {"type": "message", "ts": message_ts, "user": BOT_USER_ID, "bot_id": "BBOT", "text": ""}
        payload["response_url"] = response_url or f"https://hooks.slack.com/actions/{team_id}/1/placeholder"
    return payload


# ---------------------------------------------------------------------------- a real server
class _ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass


@contextmanager
def serve_wsgi(wsgi_app: Any, path: str = "/slack/events") -> Iterator[str]:
    """Serve ``wsgi_app`` on 127.0.0.1 (port 0, threaded) for the duration of the block;
    yields the full URL of ``path``, e.g. ``http://127.0.0.1:PORT/slack/events``."""
    server = make_server(
        "127.0.0.1", 0, wsgi_app, server_class=_ThreadingWSGIServer, handler_class=_QuietHandler
    )
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="serve_wsgi", daemon=True
    )
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}{path}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
