"""Which Slack workspace (team) the work in hand belongs to.

One deployment can serve many workspaces (OAuth installs). Every cohort, submission and the rest is
scoped to its team, and every query is filtered by it (studybot/db/scoping.py), so one workspace
never sees another's rows. The team flows one way: the transport learns it from the request (the
Slack layer from the payload's team_id / enterprise_id, the shell from LOCAL_TEAM) and enters
``acting_for(team)``; commands and services below it read ``current_team()`` and never choose one.
Background sweeps (the clock, the feedback loop) look across teams with ``across_teams()`` and then act
for each row's own team.

A process that serves one workspace only (token mode, SLACK_BOT_TOKEN; the shell) names it once with
``serve_single_team``: work outside any request then belongs to that team. A multi-workspace process
names none, so work that forgot to say its team fails loudly instead of reading everyone's rows."""

from __future__ import annotations

import contextlib
import contextvars
from dataclasses import dataclass
from typing import Iterator

from studybot.errors import StudybotError

# The team of rows written before workspaces were scoped (migration 0008), of the shell, and of token
# mode unless STUDYBOT_DEFAULT_TEAM_ID names the workspace's real id. Not a Slack id (those start with T).
LOCAL_TEAM_ID = "local"


@dataclass(frozen=True)
class Team:
    """A Slack workspace; ``enterprise_id`` is its Enterprise Grid organisation, if any.

    ``enterprise_install``: the app was installed org-wide, so the organisation's token serves it."""

    team_id: str
    enterprise_id: str | None = None
    enterprise_install: bool = False

    def __str__(self) -> str:
        return f"{self.enterprise_id}/{self.team_id}" if self.enterprise_id else self.team_id


LOCAL_TEAM = Team(LOCAL_TEAM_ID)


class NoTeamInScope(StudybotError):
    """Work touched team-scoped rows without saying whose: a bug in the transport or the sweep."""


class _AcrossTeams:
    def __repr__(self) -> str:
        return "<across teams>"


ACROSS_TEAMS = _AcrossTeams()  # the scope of a sweep that reads every team's rows (then acts per row)

_scope: contextvars.ContextVar[Team | _AcrossTeams] = contextvars.ContextVar("studybot_team")
_single_team: Team | None = None


def serve_single_team(team: Team | None) -> None:
    """Name the one team this process serves (None: many, and each piece of work must say its own)."""
    global _single_team
    _single_team = team


def single_team() -> Team | None:
    return _single_team


def scope() -> Team | _AcrossTeams:
    """The team in scope, or ACROSS_TEAMS inside a sweep; NoTeamInScope when nothing says."""
    value = _scope.get(None)
    if value is not None:
        return value
    if _single_team is not None:
        return _single_team
    raise NoTeamInScope("No Slack workspace in scope for this work; every request and sweep must say its team.")


def current_team() -> Team:
    """The team the work in hand belongs to (NoTeamInScope inside a sweep, which has to pick a row's)."""
    value = scope()
    if isinstance(value, Team):
        return value
    raise NoTeamInScope("A sweep across teams tried to act without naming the row's team (use acting_for).")


@contextlib.contextmanager
def acting_for(team: Team) -> Iterator[Team]:
    token = _scope.set(team)
    try:
        yield team
    finally:
        _scope.reset(token)


@contextlib.contextmanager
def across_teams() -> Iterator[None]:
    """Read every team's rows: only for the sweeps that then act for each row's team."""
    token = _scope.set(ACROSS_TEAMS)
    try:
        yield
    finally:
        _scope.reset(token)
