"""Starting the shell: the embedded database, a movable clock, and a readline prompt."""

from __future__ import annotations

import sys

from studybot.bootstrap import build_services
from studybot.teams import LOCAL_TEAM, serve_single_team, single_team
from studybot.config import Settings
from studybot.db.engine import Database
from studybot.shell.chat import ShellChat
from studybot.shell.repl import Shell, start_clock

BANNER = """studybot shell: the bot without Slack, on {db}.
You are @you, a workspace admin. Try:
  /study cohort create fastai --channel #fastai --start {today} --time 18:00 --tz Europe/London
  /study join fastai
  :advance 3w
Type :help for shell commands, :quit to leave."""


def run_shell(settings: Settings, stdin=None, stdout=None) -> int:
    stdin, stdout = stdin or sys.stdin, stdout or sys.stdout
    db = Database(settings.database_url)
    db.migrate(default_team_id=settings.default_team_id)
    clock = start_clock()
    admins = {"you"}
    chat = ShellChat(stdout, clock, admins.__contains__)
    services = build_services(settings, db, chat, clock)
    if single_team() is None:  # a multi-workspace deployment's database: the shell has a workspace of its own
        serve_single_team(LOCAL_TEAM)
    shell = Shell(services, clock, stdout, admins)
    interactive = stdin.isatty()
    if interactive:
        try:
            import readline  # noqa: F401 - line editing and history for input()
        except ImportError:
            pass
    shell.say(BANNER.format(db=settings.database_url.split("///")[-1], today=clock.now().date().isoformat()))
    while True:
        if interactive:
            try:
                line = input(shell.prompt)
            except EOFError:
                break
        else:
            line = stdin.readline()
            if not line:
                break
            shell.say(shell.prompt + line.rstrip())
        if not shell.handle(line):
            break
    db.dispose()
    return 0
