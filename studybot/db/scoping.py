"""Every ORM query sees only the rows of the team in scope (studybot/teams.py); new rows get its team.

By construction rather than by care: a service that forgets a filter still cannot read, change or
count another workspace's cohorts or submissions, because the filter is added to every ORM SELECT,
UPDATE and DELETE that touches a team-scoped table (the models with ``TeamScoped``), wherever the
table appears: the main entity, a join, a subquery, a relationship load. Rows that hang off a cohort
(organizers, memberships, deliveries) are reached through their cohort, so they carry no team of
their own; a query that reads them without their cohort must join it (services/cohorts.py does).

Inside ``across_teams()`` (the clock's and the feedback loop's sweeps) nothing is added. Core
statements on bare tables (the grading queue, studybot/queue.py) are the worker's, across teams by
design: a job is a submission id, and the result lands on that submission whatever its team."""

from __future__ import annotations

from sqlalchemy import event
from sqlalchemy.orm import Session, sessionmaker, with_loader_criteria

from studybot.db.models import TeamScoped
from studybot.teams import ACROSS_TEAMS, NoTeamInScope, scope


def scope_sessions(sessions: sessionmaker) -> None:
    @event.listens_for(sessions, "do_orm_execute")
    def _only_this_team(state) -> None:
        if not (state.is_select or state.is_update or state.is_delete):
            return
        if state.is_column_load:  # refreshing a row already read (by primary key): it was in scope then
            return
        team = scope()
        if team is ACROSS_TEAMS:
            return
        team_id = team.team_id  # a plain string: the lambda's closure becomes a bound parameter
        state.statement = state.statement.options(with_loader_criteria(
            TeamScoped, lambda cls: cls.team_id == team_id, include_aliases=True))

    @event.listens_for(sessions, "before_flush")
    def _new_rows_join_the_team(session: Session, _context, _instances) -> None:
        pending = [row for row in session.new if isinstance(row, TeamScoped) and row.team_id is None]
        if not pending:
            return
        team = scope()
        if team is ACROSS_TEAMS:
            raise NoTeamInScope(f"{type(pending[0]).__name__} rows were made in a sweep across teams without "
                                "naming their team (act for the row's team: teams.acting_for)")
        for row in pending:
            row.team_id, row.enterprise_id = team.team_id, team.enterprise_id
