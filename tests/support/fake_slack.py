"""A local fake of the Slack Web API that records every call.

``FakeSlack`` is a stdlib ``ThreadingHTTPServer`` on ``127.0.0.1`` (an OS-chosen
port) running in a daemon thread. Point a real ``slack_sdk.WebClient`` at it with
``WebClient(base_url=fake.api_url, token="xoxb-test")``; the bolt app under test
then talks to it over real HTTP, and tests assert on ``fake.calls``.

Besides ``/api/<method>`` it serves:

* ``/response/<name>``  a stand-in for a slash command / interaction
  ``response_url`` (see :meth:`FakeSlack.response_url`); recorded as method
  ``"response_url"``.
* ``/upload/<file_id>``  the ``upload_url`` handed out by
  ``files.getUploadURLExternal``; recorded as method ``"upload"``.
* ``/files-pri/<file_id>/<name>``  ``url_private_download`` of files known to
  the fake (:meth:`FakeSlack.add_file` or uploaded); needs the bot token as a
  bearer header, otherwise it answers an HTML login page with status 200, the
  way Slack does. Recorded as method ``"download"``.

``apps.connections.open`` answers the URL of a local Socket Mode server
(:meth:`FakeSlack.serve_socket_mode`, tests/support/socket_mode.py) to an xapp- token.
:meth:`FakeSlack.hold` keeps calls to one method waiting until released, for tests of work in
flight (SIGTERM mid-request).

Usage::

    with FakeSlack() as fake:
        client = WebClient(base_url=fake.api_url, token="xoxb-test")
        client.chat_postMessage(channel="C1", text="hi")
        [call] = fake.wait_for("chat.postMessage")
        assert call.args["text"] == "hi"
"""

from __future__ import annotations

import base64

import copy
import email.parser
import email.policy
import itertools
import json
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import parse_qsl, quote, unquote, urlsplit
from zoneinfo import ZoneInfo

__all__ = ["Call", "FakeSlack", "Hold"]

BOT_USER_ID = "UBOT"
BOT_ID = "BBOT"
TEAM_ID = "T1"
APP_ID = "A1"

# Form fields that Slack clients send as JSON strings; decoded for convenience.
JSON_FIELDS = frozenset(
    {
        "blocks",
        "attachments",
        "view",
        "metadata",
        "files",
        "unfurls",
        "user_auth_blocks",
        "outputs",
        "options",
        "option_groups",
        "response_urls",
        "event_payload",
    }
)


@dataclass
class Call:
    """One request the fake received.

    ``status`` is the HTTP status the fake answered (200 unless a fault was
    injected); ``response`` is the JSON body it answered, when it was JSON.
    """

    method: str
    args: dict
    headers: dict
    at: float
    token: str | None
    status: int = 200
    response: dict | None = field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        """True when the call succeeded: HTTP 200 and, for JSON answers, ``ok: true``."""
        if self.status != 200:
            return False
        return self.response is None or bool(self.response.get("ok", True))

    def summary(self) -> str:
        bits = [self.method]
        if self.status != 200:
            bits.append(f"[HTTP {self.status}]")
        elif self.response is not None and not self.response.get("ok", True):
            bits.append(f"[error={self.response.get('error')}]")
        for key in ("channel", "user", "user_id", "ts", "view_id", "trigger_id", "_name", "file_id"):
            if key in self.args:
                bits.append(f"{key}={self.args[key]!r}")
        text = self.args.get("text")
        if isinstance(text, str):
            bits.append("text=" + repr(text if len(text) <= 60 else text[:57] + "..."))
        return " ".join(bits)


@dataclass
class _Fault:
    status: int
    retry_after: int | float | None
    error: str
    remaining: int


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in {"1", "true", "yes", "on"}
    return bool(value)


def _ts_key(ts: Any) -> Decimal:
    try:
        return Decimal(str(ts))
    except Exception:  # noqa: BLE001 - malformed ts sorts first
        return Decimal(0)


def _decode_json_fields(args: dict) -> dict:
    for key, value in list(args.items()):
        if key in JSON_FIELDS and isinstance(value, str) and value[:1] in "[{":
            try:
                args[key] = json.loads(value)
            except ValueError:
                pass
    return args


def _parse_body(content_type: str, body: bytes) -> dict:
    ctype = (content_type or "").split(";")[0].strip().lower()
    if not body:
        return {}
    if ctype == "application/json" or (not ctype and body[:1] in (b"{", b"[")):
        try:
            decoded = json.loads(body.decode("utf-8"))
        except ValueError:
            return {"_raw": body}
        return decoded if isinstance(decoded, dict) else {"_json": decoded}
    if ctype == "multipart/form-data":
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body
        )
        out: dict[str, Any] = {}
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            if not name:
                continue
            payload = part.get_payload(decode=True) or b""
            if part.get_filename():
                out[name] = payload
            else:
                out[name] = payload.decode(part.get_content_charset() or "utf-8")
        return out
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return {"_raw": body}
    return dict(parse_qsl(text, keep_blank_values=True))


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, fake: "FakeSlack"):
        self.fake = fake
        super().__init__(("127.0.0.1", 0), _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.0"
    server_version = "FakeSlack/1.0"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        try:
            status, headers, payload = self.server.fake._dispatch(
                self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body
            )
        except Exception as exc:  # noqa: BLE001 - a bug in the fake must not hang the client
            status, headers = 500, {"Content-Type": "text/plain; charset=utf-8"}
            payload = f"FakeSlack internal error: {exc!r}".encode()
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)


_JSON = "application/json; charset=utf-8"
HOLD_LIMIT_SECONDS = 30.0  # a held call goes through after this even if never released: no hung test run


class Hold:
    """Calls to one method, held until :meth:`release` (see :meth:`FakeSlack.hold`)."""

    def __init__(self, method: str) -> None:
        self.method = method
        self._arrivals = 0
        self._arrived = threading.Condition()
        self._released = threading.Event()

    def _arrive(self) -> None:
        with self._arrived:
            self._arrivals += 1
            self._arrived.notify_all()
        self._released.wait(HOLD_LIMIT_SECONDS)

    def wait_arrived(self, count: int = 1, timeout: float = 10.0) -> None:
        """Until ``count`` calls are waiting here (or went through); AssertionError after ``timeout``."""
        with self._arrived:
            if not self._arrived.wait_for(lambda: self._arrivals >= count, timeout):
                raise AssertionError(f"FakeSlack: {self._arrivals} call(s) to {self.method!r} within {timeout}s, "
                                     f"expected {count}")

    def release(self) -> None:
        """Let every held call, and every later one, through."""
        self._released.set()


class FakeSlack:
    """A recording fake of the Slack Web API. See the module docstring."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._calls: list[Call] = []
        self._faults: dict[str, list[_Fault]] = {}
        self._users: dict[str, dict] = {}
        self._channels: dict[str, dict] = {}
        self._history: dict[str, list[dict]] = {}
        self._files: dict[str, dict] = {}
        self._views: dict[str, dict] = {}
        self._home: dict[str, str] = {}
        self._workspaces: dict[str, dict] = {}  # bot token -> the team it belongs to (auth.test answers it)
        self._oauth_codes: dict[str, dict] = {}  # code -> the oauth.v2.access answer it buys, once
        self.oauth_client: tuple[str, str] = ("1111.2222", "client-secret")  # the app's id and secret
        self._ts_seq = itertools.count(1)
        self._id_seq = itertools.count(1)
        self._holds: dict[str, Hold] = {}
        self._socket_mode_url: str | None = None
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> "FakeSlack":
        if self._server is not None:
            return self
        self._server = _Server(self)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="FakeSlack", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> "FakeSlack":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("FakeSlack is not started")
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` (no trailing slash)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        """Web API base URL for ``WebClient(base_url=...)``: ``http://127.0.0.1:PORT/api/``."""
        return f"{self.url}/api/"

    def response_url(self, name: str = "r1") -> str:
        """A response_url that records POSTs as method ``"response_url"`` with ``args["_name"] == name``."""
        return f"{self.url}/response/{quote(name, safe='')}"

    # ------------------------------------------------------------------ fixtures
    def add_workspace(self, team_id: str, bot_token: str, *, enterprise_id: str | None = None,
                      is_enterprise_install: bool = False, name: str | None = None) -> None:
        """A workspace (or, with ``is_enterprise_install``, a Grid organisation) whose bot token is
        ``bot_token``: auth.test with that token answers this team."""
        with self._lock:
            self._workspaces[bot_token] = {"team_id": None if is_enterprise_install else team_id,
                                           "team": name or team_id, "enterprise_id": enterprise_id,
                                           "is_enterprise_install": is_enterprise_install}

    def add_oauth_code(self, code: str, team_id: str | None, *, bot_token: str, enterprise_id: str | None = None,
                       is_enterprise_install: bool = False, installer: str = "UINSTALLER",
                       scope: str = "commands,chat:write") -> None:
        """What Slack answers oauth.v2.access for ``code`` (good once), in its documented shape
        (api.slack.com/methods/oauth.v2.access): a bot token, its scopes, the team (null for an org-wide
        install on Enterprise Grid, which names the enterprise instead) and the installing user."""
        with self._lock:
            self._oauth_codes[code] = {
                "ok": True, "access_token": bot_token, "token_type": "bot", "scope": scope,
                "bot_user_id": BOT_USER_ID, "app_id": APP_ID,
                "team": None if is_enterprise_install else {"name": f"Team {team_id}", "id": team_id},
                "enterprise": {"name": f"Org {enterprise_id}", "id": enterprise_id} if enterprise_id else None,
                "authed_user": {"id": installer},
                "is_enterprise_install": is_enterprise_install,
            }
        self.add_workspace(team_id or enterprise_id, bot_token, enterprise_id=enterprise_id,
                           is_enterprise_install=is_enterprise_install)

    def add_user(
        self,
        user_id: str,
        name: str,
        *,
        is_admin: bool = False,
        is_owner: bool = False,
        tz: str = "UTC",
        real_name: str | None = None,
        tz_offset: int | None = None,
    ) -> dict:
        if tz_offset is None:  # Slack answers the zone's offset now, in seconds east of UTC
            tz_offset = int(datetime.now(ZoneInfo(tz)).utcoffset().total_seconds())
        user = {
            "id": user_id,
            "team_id": TEAM_ID,
            "name": name,
            "real_name": real_name or name,
            "deleted": False,
            "tz": tz,
            "tz_label": tz,
            "tz_offset": tz_offset,
            "is_admin": is_admin,
            "is_owner": is_owner,
            "is_primary_owner": False,
            "is_restricted": False,
            "is_ultra_restricted": False,
            "is_bot": False,
            "is_app_user": False,
            "profile": {"real_name": real_name or name, "display_name": name, "team": TEAM_ID},
        }
        with self._lock:
            self._users[user_id] = user
        return user

    def add_channel(self, channel_id: str, name: str, *, is_private: bool = False, is_member: bool = True,
                    is_archived: bool = False) -> dict:
        """A channel; ``is_member=False``: the bot is not in it (history answers not_in_channel, posts need
        chat:write.public), ``is_archived=True``: posts and joins answer is_archived."""
        channel = {
            "id": channel_id,
            "name": name,
            "name_normalized": name,
            "is_channel": not is_private,
            "is_group": is_private,
            "is_im": False,
            "is_mpim": False,
            "is_private": is_private,
            "is_archived": is_archived,
            "is_general": name == "general",
            "is_member": is_member,
            "created": 1700000000,
            "creator": BOT_USER_ID,
            "context_team_id": TEAM_ID,
        }
        with self._lock:
            self._channels[channel_id] = channel
        return channel

    def add_file(
        self,
        name: str,
        content: bytes | str,
        *,
        file_id: str | None = None,
        user: str = "U1",
        mimetype: str = "application/octet-stream",
        filetype: str | None = None,
        title: str | None = None,
    ) -> dict:
        """Register a file for files.info and ``url_private_download``; returns its file object."""
        if isinstance(content, str):
            content = content.encode("utf-8")
        with self._lock:
            file_id = file_id or f"F{next(self._id_seq):08d}"
            info = self._file_object(file_id, name, title=title, user=user, mimetype=mimetype, filetype=filetype)
            info["size"] = len(content)
            info["_content"] = content
            self._files[file_id] = info
        return self._public_file(info)

    def set_channel(self, channel_id: str, **fields: Any) -> dict:
        """Change a known channel, e.g. ``is_member=False`` (the bot was removed) or ``is_archived=True``."""
        with self._lock:
            self._channels[channel_id].update(fields)
            return dict(self._channels[channel_id])

    def add_file_object(self, info: dict) -> dict:
        """Register a file object exactly as files.info should answer it (an external file, a
        hidden_by_limit or tombstone file: see tests/support/slack_shapes.py); nothing to download."""
        with self._lock:
            self._files[info["id"]] = copy.deepcopy(info)
        return copy.deepcopy(info)

    # ------------------------------------------------------------------ assertions
    @property
    def calls(self) -> list[Call]:
        """A snapshot of every recorded call, in arrival order."""
        with self._lock:
            return list(self._calls)

    def calls_to(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method == method]

    def wait_for(
        self,
        method: str,
        count: int = 1,
        timeout: float = 5.0,
        where: Callable[[Call], bool] | None = None,
    ) -> list[Call]:
        """Poll until at least ``count`` calls to ``method`` (matching ``where``) exist; return them all.

        Failed calls (injected faults) count too; pass ``where=lambda c: c.ok`` to skip them.
        Raises AssertionError listing every recorded call on timeout.
        """
        deadline = time.monotonic() + timeout
        while True:
            matching = [c for c in self.calls_to(method) if where is None or where(c)]
            if len(matching) >= count:
                return matching
            if time.monotonic() >= deadline:
                raise AssertionError(self._timeout_message(method, count, timeout, where, matching))
            time.sleep(0.01)

    def _timeout_message(self, method, count, timeout, where, matching) -> str:
        recorded = self.calls
        cond = " matching the where= predicate" if where is not None else ""
        lines = [
            f"FakeSlack: expected at least {count} call(s) to {method!r}{cond} within {timeout}s, "
            f"got {len(matching)}.",
            f"Recorded methods: {', '.join(sorted({c.method for c in recorded})) or '(none)'}",
            f"Recorded calls ({len(recorded)}):",
        ]
        lines += [f"  {i}. {c.summary()}" for i, c in enumerate(recorded, 1)] or ["  (none)"]
        return "\n".join(lines)

    def messages(self, channel: str | None = None) -> list[dict]:
        """Args of the successful chat.postMessage calls (optionally to one channel), in order.

        ``channel`` matches either the channel the bot asked for or the one Slack answered
        (a user id ``U1`` posts to the DM ``DU1``).
        """
        out = []
        for c in self.calls_to("chat.postMessage"):
            if not c.ok:
                continue
            answered = (c.response or {}).get("channel")
            if channel is None or channel in (c.args.get("channel"), answered):
                out.append(c.args)
        return out

    def responses(self, name: str | None = None) -> list[dict]:
        """Bodies POSTed to response URLs (optionally one name), in order."""
        return [c.args for c in self.calls_to("response_url") if c.ok and (name is None or c.args["_name"] == name)]

    def history(self, channel: str) -> list[dict]:
        """Messages currently in a channel (after edits and deletes), oldest first."""
        with self._lock:
            return [dict(m) for m in self._history.get(channel, [])]

    def home_view(self, user_id: str) -> dict | None:
        """The last App Home view published for ``user_id``."""
        with self._lock:
            view_id = self._home.get(user_id)
            return dict(self._views[view_id]) if view_id else None

    def reset(self) -> None:
        """Forget calls, posted messages, views, files and pending faults; keep users and channels."""
        with self._lock:
            self._calls.clear()
            self._faults.clear()
            self._history.clear()
            self._files.clear()
            self._views.clear()
            self._home.clear()

    # ------------------------------------------------------------------ faults
    def fail_next(
        self,
        method: str,
        status: int = 429,
        times: int = 1,
        retry_after: int | float | None = 1,
        error: str = "ratelimited",
    ) -> None:
        """Make the next ``times`` calls to ``method`` fail.

        429 answers ``{"ok": false, "error": error}`` with a ``Retry-After`` header; 5xx
        answers a plain-text body; any other status (200 included) answers
        ``{"ok": false, "error": error}``, e.g. ``fail_next("views.open", status=200,
        error="expired_trigger_id")``. ``method`` may also be ``"response_url"``,
        ``"upload"`` or ``"download"``.
        """
        if times < 1:
            return
        with self._lock:
            self._faults.setdefault(method, []).append(_Fault(status, retry_after, error, times))

    def _take_fault(self, method: str) -> _Fault | None:
        with self._lock:
            queue = self._faults.get(method)
            if not queue:
                return None
            fault = queue[0]
            fault.remaining -= 1
            if fault.remaining <= 0:
                queue.pop(0)
            return fault

    # ------------------------------------------------------------------ work in flight
    def hold(self, method: str) -> "Hold":
        """Make calls to ``method`` wait until ``.release()`` (at most HOLD_LIMIT_SECONDS): a test can
        then act while the bot is in the middle of that call (e.g. send SIGTERM)."""
        with self._lock:
            hold = self._holds[method] = Hold(method)
        return hold

    # ------------------------------------------------------------------ Socket Mode
    def serve_socket_mode(self, websocket_url: str) -> None:
        """Answer ``apps.connections.open`` with this WebSocket endpoint (tests/support/socket_mode.py),
        with a fresh ``ticket`` each time, as Slack hands out a new URL for every connection."""
        self._socket_mode_url = websocket_url

    def _apps_connections_open(self, token: str | None) -> dict:
        # Slack's answers: an app-level token (xapp-) only; a bot token gets not_allowed_token_type.
        if token is None:
            return {"ok": False, "error": "not_authed"}
        if not token.startswith("xapp-"):
            return {"ok": False, "error": "not_allowed_token_type"}
        if self._socket_mode_url is None:
            return {"ok": False, "error": "fake_slack_socket_mode_not_served"}
        ticket = f"{next(self._id_seq):08x}-{time.monotonic_ns() & 0xFFFFFFFF:08x}"
        return {"ok": True, "url": f"{self._socket_mode_url}?ticket={ticket}&app_id={APP_ID}"}

    # ------------------------------------------------------------------ dispatch
    def _record(self, call: Call) -> None:
        with self._lock:
            self._calls.append(call)

    def _dispatch(self, verb: str, raw_path: str, headers: dict, body: bytes) -> tuple[int, dict, bytes]:
        at = time.monotonic()
        parts = urlsplit(raw_path)
        path = unquote(parts.path)
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        auth = headers.get("authorization", "")
        bearer = auth[7:].strip() if auth.lower().startswith("bearer ") else None

        if path.startswith("/response/"):
            method = "response_url"
            args = _parse_body(headers.get("content-type", ""), body)
            args = _decode_json_fields({**query, **args})
            args["_name"] = path[len("/response/") :]
        elif path.startswith("/upload/"):
            method = "upload"
            file_id = path[len("/upload/") :]
            args = {**query, "file_id": file_id, "size": len(body), "content": body}
        elif path.startswith("/files-pri/"):
            method = "download"
            file_id = path[len("/files-pri/") :].split("/", 1)[0]
            args = {**query, "file_id": file_id}
        else:
            method = path[len("/api/") :] if path.startswith("/api/") else path.lstrip("/")
            args = _decode_json_fields({**query, **_parse_body(headers.get("content-type", ""), body)})
        token = bearer or (args.get("token") if isinstance(args.get("token"), str) and args.get("token") else None)

        call = Call(method=method, args=args, headers=headers, at=at, token=token)
        fault = self._take_fault(method)
        if fault is not None:
            call.status = fault.status
            if fault.status >= 500:
                self._record(call)
                return fault.status, {"Content-Type": "text/plain; charset=utf-8"}, b"Internal Server Error"
            out_headers = {"Content-Type": _JSON}
            if fault.status == 429 and fault.retry_after is not None:
                out_headers["Retry-After"] = str(fault.retry_after)
            call.response = {"ok": False, "error": fault.error}
            self._record(call)
            return fault.status, out_headers, json.dumps(call.response).encode()

        if method == "download":
            return self._download(call, bearer)
        if method == "upload":
            self._upload(call)
            self._record(call)
            return 200, {"Content-Type": "text/plain; charset=utf-8"}, b"OK - " + str(len(body)).encode()

        hold = self._holds.get(method)
        if hold is not None:
            hold._arrive()
        if method == "response_url":
            call.response = {"ok": True}
        elif method == "oauth.v2.access":  # the app's client id and secret, not a token, authenticate it
            call.response = self._oauth_v2_access(args, auth)
        elif method == "apps.connections.open":
            call.response = self._apps_connections_open(token)
        elif token is None:
            call.response = {"ok": False, "error": "not_authed"}
        elif method == "auth.test":  # answers for the workspace of the token it was called with
            call.response = self._auth_test(token)
        else:
            handler = getattr(self, "_api_" + method.replace(".", "_"), None)
            try:
                call.response = handler(args) if handler else {"ok": True}
            except Exception as exc:  # noqa: BLE001 - surface as a Slack-ish error, keep serving
                call.response = {"ok": False, "error": "fake_slack_internal_error", "detail": repr(exc)}
        self._record(call)
        return 200, {"Content-Type": _JSON}, json.dumps(call.response).encode()

    # ------------------------------------------------------------------ helpers
    def _next_ts(self) -> str:
        micros = 1700000000 * 1_000_000 + 100 * next(self._ts_seq)
        return f"{micros // 1_000_000}.{micros % 1_000_000:06d}"

    def _resolve_channel(self, channel: str) -> str:
        # Posting to a user id lands in the bot's DM with that user.
        if channel[:1] in ("U", "W"):
            return "D" + channel
        return channel

    def _find_message(self, channel: str, ts: str) -> dict | None:
        for message in self._history.get(channel, []):
            if message["ts"] == ts:
                return message
        return None

    def _file_object(self, file_id, name, *, title=None, user="U1", mimetype=None, filetype=None) -> dict:
        ext = name.rsplit(".", 1)[-1].lower() if "." in name else "binary"
        return {
            "id": file_id,
            "created": 1700000000,
            "timestamp": 1700000000,
            "name": name,
            "title": title or name,
            "mimetype": mimetype or "application/octet-stream",
            "filetype": filetype or ext,
            "pretty_type": (filetype or ext).upper(),
            "user": user,
            "user_team": TEAM_ID,
            "mode": "hosted",
            "editable": False,
            "is_external": False,
            "external_type": "",
            "is_public": False,
            "size": 0,
            "url_private": f"{self.url}/files-pri/{file_id}/{quote(name)}",
            "url_private_download": f"{self.url}/files-pri/{file_id}/download/{quote(name)}",
            "permalink": f"{self.url}/files/{user}/{file_id}/{quote(name)}",
            "channels": [],
            "groups": [],
            "ims": [],
            "shares": {},
        }

    @staticmethod
    def _public_file(info: dict) -> dict:
        return {k: v for k, v in info.items() if not k.startswith("_")}

    def _download(self, call: Call, bearer: str | None) -> tuple[int, dict, bytes]:
        with self._lock:
            info = self._files.get(call.args["file_id"])
        if bearer is None:
            # Slack answers an unauthenticated download with its HTML sign-in page.
            call.response = None
            self._record(call)
            page = b"<!DOCTYPE html><html><head><title>Slack</title></head><body>Sign in</body></html>"
            return 200, {"Content-Type": "text/html; charset=utf-8"}, page
        if info is None or info.get("_content") is None:
            call.status = 404
            self._record(call)
            return 404, {"Content-Type": "text/plain; charset=utf-8"}, b"file_not_found"
        self._record(call)
        return 200, {"Content-Type": info["mimetype"]}, info["_content"]

    def _upload(self, call: Call) -> None:
        with self._lock:
            info = self._files.get(call.args["file_id"])
            if info is not None:
                info["_content"] = call.args["content"]
                info["size"] = len(call.args["content"])

    # ------------------------------------------------------------------ Web API methods
    def _oauth_v2_access(self, args: dict, authorization: str) -> dict:
        client_id, client_secret = args.get("client_id"), args.get("client_secret")
        if authorization.lower().startswith("basic "):  # slack_sdk sends them as HTTP Basic auth
            client_id, _, client_secret = base64.b64decode(authorization[6:].strip()).decode().partition(":")
        if client_id != self.oauth_client[0]:
            return {"ok": False, "error": "invalid_client_id"}
        if client_secret != self.oauth_client[1]:
            return {"ok": False, "error": "bad_client_secret"}
        with self._lock:
            answer = self._oauth_codes.pop(args.get("code") or "", None)
        return answer or {"ok": False, "error": "invalid_code"}

    def _auth_test(self, token: str) -> dict:
        with self._lock:
            workspace = self._workspaces.get(token)
        return {
            "ok": True,
            "url": f"{self.url}/",
            "team": workspace["team"] if workspace else "Study Group",
            "user": "studybot",
            "team_id": workspace["team_id"] if workspace else TEAM_ID,
            "user_id": BOT_USER_ID,
            "bot_id": BOT_ID,
            "enterprise_id": workspace["enterprise_id"] if workspace else None,
            "is_enterprise_install": workspace["is_enterprise_install"] if workspace else False,
        }

    def _api_chat_postMessage(self, args: dict) -> dict:
        channel = args.get("channel")
        if not channel:
            return {"ok": False, "error": "channel_not_found"}
        if not any(args.get(k) for k in ("text", "blocks", "attachments")):
            return {"ok": False, "error": "no_text"}
        channel = self._resolve_channel(channel)
        with self._lock:
            known = self._channels.get(channel)
            if known is not None and known["is_archived"]:
                return {"ok": False, "error": "is_archived"}
            ts = self._next_ts()
            message = {
                "type": "message",
                "user": BOT_USER_ID,
                "bot_id": BOT_ID,
                "app_id": APP_ID,
                "team": TEAM_ID,
                "text": args.get("text", ""),
                "ts": ts,
            }
            for key in ("blocks", "attachments", "metadata", "thread_ts"):
                if args.get(key) not in (None, ""):
                    message[key] = args[key]
            if _truthy(args.get("reply_broadcast", False)):
                message["subtype"] = "thread_broadcast"
            self._history.setdefault(channel, []).append(message)
            echo = copy.deepcopy(message)
        return {"ok": True, "channel": channel, "ts": ts, "message": echo}

    def _api_chat_update(self, args: dict) -> dict:
        channel, ts = args.get("channel"), args.get("ts")
        if not channel:
            return {"ok": False, "error": "channel_not_found"}
        if not ts:
            return {"ok": False, "error": "invalid_arguments"}
        channel = self._resolve_channel(channel)
        with self._lock:
            message = self._find_message(channel, ts)
            if message is None:
                return {"ok": False, "error": "message_not_found"}
            for key in ("text", "blocks", "attachments", "metadata"):
                if key in args:
                    message[key] = args[key]
            message["edited"] = {"user": BOT_USER_ID, "ts": self._next_ts()}
            echo = dict(message)
        return {"ok": True, "channel": channel, "ts": ts, "text": echo.get("text", ""), "message": echo}

    def _api_chat_delete(self, args: dict) -> dict:
        channel, ts = args.get("channel"), args.get("ts")
        if not channel:
            return {"ok": False, "error": "channel_not_found"}
        channel = self._resolve_channel(channel)
        with self._lock:
            message = self._find_message(channel, ts or "")
            if message is None:
                return {"ok": False, "error": "message_not_found"}
            self._history[channel].remove(message)
        return {"ok": True, "channel": channel, "ts": ts}

    def _api_chat_postEphemeral(self, args: dict) -> dict:
        if not args.get("channel"):
            return {"ok": False, "error": "channel_not_found"}
        if not args.get("user"):
            return {"ok": False, "error": "user_not_in_channel"}
        if not any(args.get(k) for k in ("text", "blocks", "attachments")):
            return {"ok": False, "error": "no_text"}
        with self._lock:
            return {"ok": True, "message_ts": self._next_ts()}

    def _api_conversations_open(self, args: dict) -> dict:
        if args.get("channel"):
            channel_id = args["channel"]
        else:
            users = args.get("users") or ""
            if isinstance(users, list):
                users = ",".join(users)
            ids = [u.strip() for u in users.split(",") if u.strip()]
            if not ids:
                return {"ok": False, "error": "users_list_not_supplied"}
            if len(ids) > 8:  # a multi-person DM holds at most 8 people besides the bot
                return {"ok": False, "error": "too_many_users"}
            with self._lock:
                if len(ids) > 1 and any(u not in self._users for u in ids):
                    return {"ok": False, "error": "user_not_found"}
            channel_id = "D" + ids[0] if len(ids) == 1 else "G" + "".join(sorted(ids))
        channel: dict[str, Any] = {"id": channel_id}
        if _truthy(args.get("return_im", False)):
            channel.update({"is_im": channel_id.startswith("D"), "user": channel_id[1:], "created": 1700000000})
        return {"ok": True, "no_op": False, "already_open": False, "channel": channel}

    def _api_conversations_history(self, args: dict) -> dict:
        channel = args.get("channel")
        if not channel:
            return {"ok": False, "error": "channel_not_found"}
        inclusive = _truthy(args.get("inclusive", False))
        oldest = _ts_key(args["oldest"]) if args.get("oldest") not in (None, "") else None
        latest = _ts_key(args["latest"]) if args.get("latest") not in (None, "") else None
        with_meta = _truthy(args.get("include_all_metadata", False))
        try:
            limit = int(args.get("limit") or 100)
        except ValueError:
            limit = 100
        with self._lock:
            known = self._channels.get(channel)
            if known is not None and not known["is_member"]:
                # A bot may post to a public channel it is not in (chat:write.public), never read it.
                return {"ok": False, "error": "not_in_channel"}
            stored = [dict(m) for m in self._history.get(self._resolve_channel(channel), [])]
        selected = []
        for message in reversed(stored):
            # Thread replies stay out of channel history, as in Slack.
            if "thread_ts" in message and message["thread_ts"] != message["ts"] and message.get(
                "subtype"
            ) != "thread_broadcast":
                continue
            key = _ts_key(message["ts"])
            if oldest is not None and (key < oldest or (key == oldest and not inclusive)):
                continue
            if latest is not None and (key > latest or (key == latest and not inclusive)):
                continue
            if not with_meta:
                message.pop("metadata", None)
            selected.append(message)
        has_more = len(selected) > limit
        return {
            "ok": True,
            "messages": selected[:limit],
            "has_more": has_more,
            "pin_count": 0,
            "response_metadata": {"next_cursor": ""},
        }

    def _api_conversations_replies(self, args: dict) -> dict:
        channel, ts = args.get("channel"), args.get("ts")
        if not channel or not ts:
            return {"ok": False, "error": "invalid_arguments"}
        with self._lock:
            stored = [dict(m) for m in self._history.get(self._resolve_channel(channel), [])]
        thread = [m for m in stored if m["ts"] == ts or m.get("thread_ts") == ts]
        if not thread:
            return {"ok": False, "error": "thread_not_found"}
        if not _truthy(args.get("include_all_metadata", False)):
            for m in thread:
                m.pop("metadata", None)
        return {"ok": True, "messages": thread, "has_more": False, "response_metadata": {"next_cursor": ""}}

    def _api_conversations_info(self, args: dict) -> dict:
        channel_id = args.get("channel") or ""
        with self._lock:
            channel = self._channels.get(channel_id)
        if channel is None and channel_id.startswith("D"):
            channel = {"id": channel_id, "is_im": True, "is_channel": False, "is_private": True, "user": channel_id[1:]}
        if channel is None:
            return {"ok": False, "error": "channel_not_found"}
        return {"ok": True, "channel": dict(channel)}

    def _api_conversations_join(self, args: dict) -> dict:
        """Join a public channel (scope channels:join; inject missing_scope with fail_next)."""
        channel_id = args.get("channel") or ""
        with self._lock:
            channel = self._channels.get(channel_id)
            if channel is None:
                return {"ok": False, "error": "channel_not_found"}
            if channel["is_archived"]:
                return {"ok": False, "error": "is_archived"}
            if channel["is_private"]:
                return {"ok": False, "error": "method_not_supported_for_channel_type"}
            already = channel["is_member"]
            channel["is_member"] = True
            answer: dict[str, Any] = {"ok": True, "channel": dict(channel)}
        if already:
            answer["warning"] = "already_in_channel"
            answer["response_metadata"] = {"warnings": ["already_in_channel"]}
        return answer

    def _api_conversations_list(self, args: dict) -> dict:
        with self._lock:
            channels = [dict(c) for c in self._channels.values()
                        if not (c["is_archived"] and _truthy(args.get("exclude_archived", False)))]
        return {"ok": True, "channels": channels, "response_metadata": {"next_cursor": ""}}

    def _api_users_info(self, args: dict) -> dict:
        with self._lock:
            user = self._users.get(args.get("user") or "")
        if user is None:
            return {"ok": False, "error": "user_not_found"}
        return {"ok": True, "user": copy.deepcopy(user)}

    def _api_users_list(self, args: dict) -> dict:
        with self._lock:
            members = copy.deepcopy(list(self._users.values()))
        return {"ok": True, "members": members, "response_metadata": {"next_cursor": ""}}

    def _store_view(self, view: Any, view_id: str | None = None, external_id: str | None = None) -> dict:
        if not isinstance(view, dict):
            view = {}
        with self._lock:
            view_id = view_id or f"V{next(self._id_seq):08d}"
            stored = {
                "id": view_id,
                "team_id": TEAM_ID,
                "type": view.get("type", "modal"),
                "title": view.get("title"),
                "submit": view.get("submit"),
                "close": view.get("close"),
                "blocks": view.get("blocks", []),
                "private_metadata": view.get("private_metadata", ""),
                "callback_id": view.get("callback_id", ""),
                "external_id": external_id or view.get("external_id", ""),
                "state": {"values": {}},
                "hash": f"1700000000.{next(self._id_seq):08d}",
                "clear_on_close": bool(view.get("clear_on_close", False)),
                "notify_on_close": bool(view.get("notify_on_close", False)),
                "root_view_id": view_id,
                "previous_view_id": None,
                "app_id": APP_ID,
                "bot_id": BOT_ID,
            }
            self._views[view_id] = stored
            return dict(stored)

    def _api_views_open(self, args: dict) -> dict:
        if not args.get("trigger_id") and not args.get("interactivity_pointer"):
            return {"ok": False, "error": "invalid_arguments"}
        if not isinstance(args.get("view"), dict):
            return {"ok": False, "error": "invalid_arguments"}
        return {"ok": True, "view": self._store_view(args["view"])}

    _api_views_push = _api_views_open

    def _api_views_update(self, args: dict) -> dict:
        view_id = args.get("view_id")
        external_id = args.get("external_id")
        with self._lock:
            if not view_id and external_id:
                view_id = next((v["id"] for v in self._views.values() if v["external_id"] == external_id), None)
            if not view_id or view_id not in self._views:
                return {"ok": False, "error": "not_found"}
        return {"ok": True, "view": self._store_view(args.get("view"), view_id=view_id, external_id=external_id)}

    def _api_views_publish(self, args: dict) -> dict:
        user_id = args.get("user_id")
        if not user_id:
            return {"ok": False, "error": "invalid_arguments"}
        with self._lock:
            view = self._store_view(args.get("view"), view_id=self._home.get(user_id))
            self._home[user_id] = view["id"]
        return {"ok": True, "view": view}

    def _api_files_info(self, args: dict) -> dict:
        with self._lock:
            info = self._files.get(args.get("file") or "")
            if info is None:
                return {"ok": False, "error": "file_not_found"}
            return {"ok": True, "file": self._public_file(info), "comments": [], "response_metadata": {"next_cursor": ""}}

    def _api_files_getUploadURLExternal(self, args: dict) -> dict:
        filename = args.get("filename")
        if not filename or args.get("length") in (None, ""):
            return {"ok": False, "error": "invalid_arguments"}
        with self._lock:
            file_id = f"F{next(self._id_seq):08d}"
            info = self._file_object(file_id, filename, user=BOT_USER_ID)
            info["size"] = int(args["length"])
            info["_content"] = None
            info["_completed"] = False
            self._files[file_id] = info
        return {"ok": True, "upload_url": f"{self.url}/upload/{file_id}", "file_id": file_id}

    def _api_files_completeUploadExternal(self, args: dict) -> dict:
        files = args.get("files")
        if not isinstance(files, list) or not files:
            return {"ok": False, "error": "invalid_arguments"}
        channels: list[str] = []
        if args.get("channel_id"):
            channels.append(args["channel_id"])
        if args.get("channels"):
            channels += [c for c in str(args["channels"]).split(",") if c]
        out = []
        with self._lock:
            for item in files:
                info = self._files.get(item.get("id", "")) if isinstance(item, dict) else None
                if info is None:
                    return {"ok": False, "error": "file_not_found"}
                if info.get("_content") is None:
                    return {"ok": False, "error": "file_upload_not_found"}
                if item.get("title"):
                    info["title"] = item["title"]
                info["_completed"] = True
                for channel in channels:
                    if channel not in info["channels"]:
                        info["channels"].append(channel)
                out.append(self._public_file(info))
        return {"ok": True, "files": out}
