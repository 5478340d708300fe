"""Sweeps across workspaces: the clock's and the feedback loop's work, done once per team.

A request acts for the team it came from (studybot/teams.py). Work outside any request (the clock
process) belongs to no team, so each sweep runs once for every team that has rows, acting for that
team: every query inside it is that team's (db/scoping.py), and every post goes out with that
team's token (the Slack layer's Chat looks the token up by the team in scope). One team's trouble
does not stop the others. A process that serves one team (token mode, the shell) just runs it once."""

from __future__ import annotations

import logging
from typing import Callable, TypeVar

from sqlalchemy import select, union

from studybot.db.engine import Database
from studybot.db.models import Cohort, Submission
from studybot.teams import NoTeamInScope, Team, acting_for, across_teams, scope

log = logging.getLogger(__name__)

T = TypeVar("T")


def teams_with_rows(db: Database) -> list[Team]:
    """Every team that has a cohort or a submission, in a stable order."""
    with across_teams(), db.session() as s:
        rows = s.execute(union(select(Cohort.team_id, Cohort.enterprise_id),
                               select(Submission.team_id, Submission.enterprise_id))).all()
    return [Team(team_id, enterprise_id) for team_id, enterprise_id in sorted(rows, key=lambda r: (r[0], r[1] or ""))]


def for_each_team(db: Database, work: Callable[[], T], what: str) -> list[T]:
    """``work()`` for the team in scope; with none in scope, once per team with rows (a failing team is logged)."""
    try:
        scope()
    except NoTeamInScope:
        pass
    else:
        return [work()]
    results = []
    for team in teams_with_rows(db):
        with acting_for(team):
            try:
                results.append(work())
            except Exception:  # one workspace's trouble (a revoked token, a bad row) must not stop the others
                log.exception("%s failed for team %s", what, team)
    return results
