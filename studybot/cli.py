"""`studybot`: one command for every process.

    studybot                  the shell without Slack credentials; with them, Slack (Socket Mode when
                              SLACK_APP_TOKEN is set, else HTTP on $PORT) plus the clock, in one process
    studybot shell            the terminal shell on the embedded database
    studybot serve --port N   the bolt HTTP app (Procfile: web)
    studybot socket           Socket Mode, no public URL needed
    studybot clock            the one scheduler process (Procfile: clock)
    studybot migrate          bring the database schema up to date
    studybot work             a grading worker: claims queued submissions and grades them (Procfile:
                              worker; studybot/worker/, which runs the grader in a child process)
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading

from studybot.time_source import SystemClock
from studybot.config import Settings, load_settings
from studybot.db.engine import Database
from studybot.errors import ConfigError
from studybot.shutdown import EXIT_UNFINISHED, STOP_GRACE_SECONDS, ShutdownSignal, finished_within
from studybot.worker import cli as worker_cli

log = logging.getLogger("studybot")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="studybot", description="Weekly fast.ai study groups in Slack.")
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("shell", help="the terminal shell on the embedded database")
    serve = sub.add_parser("serve", help="the bolt HTTP app (web process)")
    serve.add_argument("--port", type=int, default=int(os.environ.get("PORT", "3000")))
    serve.add_argument("--host", default="0.0.0.0")
    sub.add_parser("socket", help="Slack Socket Mode")
    sub.add_parser("clock", help="the scheduler process")
    sub.add_parser("migrate", help="apply database migrations")
    worker_cli.add_arguments(sub.add_parser("work", help="claim and grade queued submissions (worker process)"))
    args = parser.parse_args(argv)
    if args.command == "work":  # it reads only the database settings, and logs in its own format
        return worker_cli.run(args)

    # The shell is a conversation on the terminal: only warnings interrupt it.
    quiet = args.command == "shell" or (args.command is None and not os.environ.get("SLACK_BOT_TOKEN"))
    logging.basicConfig(level=os.environ.get("STUDYBOT_LOG_LEVEL", "WARNING" if quiet else "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = load_settings()
    except ConfigError as error:
        print(f"studybot: configuration error: {error.message}", file=sys.stderr)
        return 2

    command = args.command or ("slack" if settings.has_slack else "shell")
    if command == "shell":
        from studybot.shell.main import run_shell

        return run_shell(settings)
    if command == "migrate":
        _database(settings)
        print("database is up to date")
        return 0
    if command in ("serve", "socket", "slack") and not settings.has_slack:
        print("studybot: configuration error: SLACK_BOT_TOKEN is missing (needed to talk to Slack), "
              "or SLACK_CLIENT_ID and SLACK_CLIENT_SECRET for OAuth installs", file=sys.stderr)
        return 2
    if command == "serve" and not settings.slack_signing_secret:
        print("studybot: configuration error: SLACK_SIGNING_SECRET is missing (HTTP mode verifies requests)",
              file=sys.stderr)
        return 2
    if command == "socket" and not settings.slack_app_token:
        print("studybot: configuration error: SLACK_APP_TOKEN is missing (Socket Mode needs an xapp- token)",
              file=sys.stderr)
        return 2

    services, chat = _slack_services(settings)
    shutdown = ShutdownSignal().install()  # SIGTERM/SIGINT: finish the work in hand (studybot/shutdown.py)
    if command == "clock":
        from studybot.clock_process import run_clock

        run_clock(services, settings.tick_seconds, stop=shutdown.stop)
        return 0
    clock = None
    if command == "slack":  # one-process development mode: the clock runs beside the app
        from studybot.clock_process import run_clock

        clock = threading.Thread(target=run_clock, name="clock", args=(services, settings.tick_seconds, shutdown.stop))
        clock.start()
        command = "socket" if settings.slack_app_token else "serve"
        args.port, args.host = int(os.environ.get("PORT", "3000")), "0.0.0.0"
    try:
        code = _run_slack(command, args, settings, services, chat, shutdown.stop)
    finally:
        shutdown.stop.set()  # the development mode's clock stops with the app, whatever happened to it
        if clock is not None:
            clock.join()
    if code == EXIT_UNFINISHED:
        log.warning("stopped with work still in hand after %g s", STOP_GRACE_SECONDS)
        logging.shutdown()
        os._exit(code)  # a listener thread still running would block the interpreter's exit
    if code == 0:
        log.info("stopped cleanly")
    return code


def _run_slack(command: str, args, settings: Settings, services, chat, stop: threading.Event) -> int:
    """Serve Slack (``command``: socket or serve) until ``stop``, then stop gracefully; the exit code."""
    from studybot.slack.app import build_app, listener_pool

    listeners = listener_pool()  # bolt's listener threads: the work after each ack, waited for on shutdown
    if command == "socket":
        from slack_sdk.errors import SlackApiError

        from studybot.slack.socket_mode import SocketModeService

        socket_mode = SocketModeService(build_app(services, chat, signing_secret=None, oauth=getattr(chat, "oauth", None),
                                                  listener_executor=listeners),
                                        settings.slack_app_token, listeners)
        try:
            socket_mode.start()
        except SlackApiError as error:
            print(f"studybot: Slack refused to open a Socket Mode connection ({error.response.get('error')}): "
                  "check SLACK_APP_TOKEN (an app-level token with the connections:write scope)", file=sys.stderr)
            return 2
        stop.wait()
        clean = socket_mode.stop(STOP_GRACE_SECONDS)
    else:
        from studybot.slack.server import make_server, serve_until

        server = make_server(build_app(services, chat, settings.slack_signing_secret, oauth=getattr(chat, "oauth", None),
                                       listener_executor=listeners),
                             host=args.host, port=args.port)
        log.info("serving Slack requests on http://%s:%s/slack/events", args.host, server.effective_port)
        drained = serve_until(server, stop, STOP_GRACE_SECONDS)
        clean = drained and finished_within(lambda: listeners.shutdown(wait=True), STOP_GRACE_SECONDS / 4)
    return 0 if clean else EXIT_UNFINISHED


def _database(settings: Settings) -> Database:
    db = Database(settings.database_url)
    db.migrate(default_team_id=settings.default_team_id)
    return db


def _slack_services(settings: Settings):
    from studybot.bootstrap import build_services
    from studybot.slack.workspaces import slack_chat

    db = _database(settings)
    chat = slack_chat(settings, db.engine)  # one workspace's token, or every installed workspace's (OAuth)
    return build_services(settings, db, chat, SystemClock()), chat


if __name__ == "__main__":
    sys.exit(main())
