"""Many workspaces (issue 10): the OAuth install through bolt's flow against the fake Web API's
oauth.v2.access, two workspaces that never see each other's rows, an org-wide Enterprise Grid install,
and uninstalls that delete the tokens. The real bolt app over real HTTP, signed requests, both databases."""

from __future__ import annotations

import json
import logging
import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests
from sqlalchemy import select

from studybot.bootstrap import Services, build_services
from studybot.config import load_settings
from studybot.db.models import Cohort, Submission
from studybot.queue import JobQueue
from studybot.slack.app import build_app
from studybot.slack.server import BackgroundServer
from studybot.slack.workspaces import InstallationChat, find_bot, oauth_settings, oauth_stores
from studybot.teams import Team, acting_for
from tests.conftest import FAST_RETRIES, SIGNING_SECRET
from tests.support import boards
from tests.support import signed_requests as slack
from tests.support.fake_slack import FakeSlack
from tests.support.waiting import eventually
from tests.test_submissions import notebook

TEAM_A, TOKEN_A = "TAAAA1", "xoxb-team-a"
TEAM_B, TOKEN_B = "TBBBB2", "xoxb-team-b"
ORG, ORG_TEAM, TOKEN_ORG = "EORG1", "TGRID3", "xoxb-org-wide"
CHANNEL_OF = {TEAM_A: "CAAA", TEAM_B: "CBBB", ORG_TEAM: "CGRID"}
CREATE = "cohort create fastai --channel <#{channel}|fastai> --start 2027-01-05 --time 18:00 --tz Europe/Berlin"


@dataclass
class Deployment:
    base: str  # http://127.0.0.1:PORT
    url: str  # .../slack/events
    fake: FakeSlack
    services: Services
    chat: InstallationChat

    def install(self, team_id: str | None, token: str, *, enterprise_id: str | None = None,
                org_wide: bool = False) -> requests.Response:
        """A person installs the app: the install page, Slack's authorize page (faked: it hands back a
        code and the state), then the redirect, which trades the code at oauth.v2.access."""
        code = "code-" + uuid.uuid4().hex[:8]
        self.fake.add_oauth_code(code, team_id, bot_token=token, enterprise_id=enterprise_id,
                                 is_enterprise_install=org_wide)
        page = requests.get(self.base + "/slack/install", timeout=10)
        assert page.status_code == 200
        # The state travels in a Secure cookie too: a browser sends it back over https; here it is sent by hand.
        cookie = page.headers["Set-Cookie"]
        assert "Secure" in cookie and "HttpOnly" in cookie
        authorize = re.search(r'href="([^"]*oauth/v2/authorize[^"]*)"', page.text).group(1).replace("&amp;", "&")
        query = parse_qs(urlsplit(authorize).query)
        assert query["client_id"] == [self.fake.oauth_client[0]] and "chat:write" in query["scope"][0].split(",")
        return requests.get(self.base + "/slack/oauth_redirect", params={"code": code, "state": query["state"][0]},
                            headers={"Cookie": cookie.split(";")[0]}, timeout=10)

    def study(self, team_id: str, text: str, user: str = "UADMIN", *, enterprise_id: str | None = None) -> dict:
        """/study from a workspace; the answer comes in the ack or through the response_url."""
        name = "r-" + uuid.uuid4().hex[:8]
        fields = parse_qs(slack.slash_command_body(text=text, user_id=user, team_id=team_id,
                                                   response_url=self.fake.response_url(name)))
        body = {key: values[0] for key, values in fields.items()}
        if enterprise_id:  # Enterprise Grid adds the organisation to every payload
            body.update(enterprise_id=enterprise_id, enterprise_name="Org", is_enterprise_install="true")
        response = slack.post_signed(self.url, SIGNING_SECRET, urlencode(body), slack.FORM)
        assert response.status_code == 200, response.text
        if response.content:
            return response.json()
        [answer] = self.fake.wait_for("response_url", where=lambda c: c.args["_name"] == name)
        return answer.args

    def event(self, team_id: str, event: dict, *, enterprise_id: str | None = None, org_wide: bool = False):
        envelope = slack.event_envelope(event, team_id=team_id)
        if enterprise_id:
            envelope.update(enterprise_id=enterprise_id, context_enterprise_id=enterprise_id,
                            is_enterprise_install=org_wide)
            envelope["authorizations"][0].update(enterprise_id=enterprise_id, is_enterprise_install=org_wide,
                                                 team_id=None if org_wide else team_id)
        response = slack.post_signed(self.url, SIGNING_SECRET, json.dumps(envelope), slack.JSON)
        assert response.status_code == 200
        return response


@pytest.fixture
def deployment(tmp_path, database_url, db, clock, monkeypatch):
    from studybot import teams

    monkeypatch.setattr(teams, "_single_team", teams.single_team())  # build_services changes it: put it back after
    with FakeSlack() as fake:
        fake.add_user("UADMIN", "grace", is_admin=True, tz="Europe/Berlin")
        fake.add_user("U1", "ada")
        fake.add_user("U2", "bob")
        for channel in CHANNEL_OF.values():
            fake.add_channel(channel, "fastai")
        settings = load_settings({"STUDYBOT_DATA_DIR": str(tmp_path), "DATABASE_URL": database_url,
                                  "SLACK_CLIENT_ID": fake.oauth_client[0], "SLACK_CLIENT_SECRET": fake.oauth_client[1],
                                  "SLACK_SIGNING_SECRET": SIGNING_SECRET, "SLACK_API_URL": fake.api_url})
        assert settings.multi_workspace
        stores = oauth_stores(settings, db.engine)
        chat = InstallationChat(stores.installations, settings.slack_api_url, retry=FAST_RETRIES, post_interval=0.05)
        services = build_services(settings, db, chat, clock)
        server = BackgroundServer(build_app(services, chat, SIGNING_SECRET, oauth=oauth_settings(settings, stores))).start()
        try:
            yield Deployment(server.url.removesuffix("/slack/events"), server.url, fake, services, chat)
        finally:
            slack.SESSION.close()
            server.stop()


def bot_token(deployment: Deployment, team: Team) -> str | None:
    bot = find_bot(deployment.chat.store, team)
    return bot.bot_token if bot else None


def tokens_of(fake: FakeSlack, method: str, channel: str) -> set[str]:
    return {c.token for c in fake.calls_to(method) if c.args.get("channel") == channel}


# ---------------------------------------------------------------------------- the install


def test_an_install_stores_the_workspace_and_its_events_are_authorized_by_it(deployment, caplog):
    caplog.set_level(logging.DEBUG)
    done = deployment.install(TEAM_A, TOKEN_A)
    assert done.status_code == 200 and "slack://app" in done.text  # bolt's success page opens Slack
    [exchange] = deployment.fake.calls_to("oauth.v2.access")
    assert exchange.ok and exchange.response["team"]["id"] == TEAM_A
    assert bot_token(deployment, Team(TEAM_A)) == TOKEN_A
    assert deployment.fake.oauth_client[1] not in caplog.text and TOKEN_A not in caplog.text  # secrets never logged

    # A DM from the installed workspace is answered with its token; one from elsewhere is not authorized.
    deployment.event(TEAM_A, {"type": "message", "channel": "DU1", "channel_type": "im", "user": "U1", "text": "hi",
                              "ts": "1700000100.000100"})
    [answer] = deployment.fake.wait_for("chat.postMessage")
    assert answer.token == TOKEN_A and "/study" in answer.args["text"]
    deployment.fake.reset()
    deployment.event("TNOTHERE", {"type": "message", "channel": "DU2", "channel_type": "im", "user": "U2",
                                  "text": "hi", "ts": "1700000200.000100"})
    deployment.study(TEAM_A, "help", user="U1")  # a request after it, to know the other one was handled
    assert not deployment.fake.calls_to("chat.postMessage")


def test_a_redirect_with_a_bad_code_or_state_installs_nothing(deployment):
    page = requests.get(deployment.base + "/slack/install", timeout=10)
    state = re.search(r"state=([0-9a-f-]+)", page.text).group(1)
    cookie = {"Cookie": page.headers["Set-Cookie"].split(";")[0]}
    refused = requests.get(deployment.base + "/slack/oauth_redirect", params={"code": "no-such-code", "state": state},
                           headers=cookie, timeout=10)
    assert refused.status_code >= 400
    assert [c.response["error"] for c in deployment.fake.calls_to("oauth.v2.access")] == ["invalid_code"]
    deployment.fake.add_oauth_code("good", TEAM_A, bot_token=TOKEN_A)
    forged = requests.get(deployment.base + "/slack/oauth_redirect", params={"code": "good", "state": "forged"},
                          headers={"Cookie": "slack-app-oauth-state=forged"}, timeout=10)
    assert forged.status_code >= 400 and len(deployment.fake.calls_to("oauth.v2.access")) == 1  # state checked first
    assert bot_token(deployment, Team(TEAM_A)) is None


def test_an_org_wide_grid_install_serves_each_workspace_of_the_organisation(deployment, clock):
    assert deployment.install(None, TOKEN_ORG, enterprise_id=ORG, org_wide=True).status_code == 200
    bot = deployment.chat.store.find_bot(enterprise_id=ORG, team_id=None, is_enterprise_install=True)
    assert bot is not None and bot.bot_token == TOKEN_ORG and bot.is_enterprise_install
    created = deployment.study(ORG_TEAM, CREATE.format(channel=CHANNEL_OF[ORG_TEAM]), enterprise_id=ORG)
    assert "Created *fastai*" in created["text"]
    with acting_for(Team(ORG_TEAM)), deployment.services.db.session() as s:
        [cohort] = s.scalars(select(Cohort))
        assert (cohort.team_id, cohort.enterprise_id) == (ORG_TEAM, ORG)
    # The clock, outside any request, finds the organisation's token for the workspace's cohort.
    clock.set(datetime(2027, 1, 5, 17, 0, 30, tzinfo=timezone.utc))
    assert deployment.services.deliveries.tick().posted == ["fastai:1"]
    assert tokens_of(deployment.fake, "chat.postMessage", CHANNEL_OF[ORG_TEAM]) == {TOKEN_ORG}


# ---------------------------------------------------------------------------- two workspaces


def test_two_workspaces_never_see_each_others_cohorts_submissions_or_boards(deployment, clock):
    for team, token in ((TEAM_A, TOKEN_A), (TEAM_B, TOKEN_B)):
        assert deployment.install(team, token).status_code == 200
        # the same cohort name in both: names are unique per workspace
        assert "Created *fastai*" in deployment.study(team, CREATE.format(channel=CHANNEL_OF[team]))["text"]
    deployment.study(TEAM_A, "join fastai", user="U1")
    deployment.study(TEAM_B, "join fastai", user="U2")

    # /study status: U1 is in team A's fastai, and in nothing of team B's (same user id on both sides).
    assert "fastai" in deployment.study(TEAM_A, "status", user="U1")["text"]
    assert "fastai" not in deployment.study(TEAM_B, "status", user="U1")["text"]
    listing = deployment.study(TEAM_B, "cohort list")["text"]
    assert CHANNEL_OF[TEAM_B] in listing and CHANNEL_OF[TEAM_A] not in listing

    # A notebook uploaded in team A is team A's submission, answered with team A's token.
    file = deployment.fake.add_file("solution.ipynb", notebook())
    deployment.event(TEAM_A, {"type": "message", "subtype": "file_share", "channel": "DU1", "channel_type": "im",
                              "user": "U1", "text": "digits", "ts": "1700000300.000300", "files": [{"id": file["id"]}]})
    [queued] = deployment.fake.wait_for("chat.postMessage", where=lambda c: c.args.get("channel") == "DU1")
    assert queued.token == TOKEN_A
    assert {c.token for c in deployment.fake.calls_to("files.info")} == {TOKEN_A}
    with acting_for(Team(TEAM_A)), deployment.services.db.session() as s:
        assert [(r.user_id, r.team_id) for r in s.scalars(select(Submission))] == [("U1", TEAM_A)]
    with acting_for(Team(TEAM_B)), deployment.services.db.session() as s:
        assert s.scalars(select(Submission)).all() == []

    def queued_message_is_attached():
        """The listener stores the queued DM's ts after chat.postMessage answers: the feedback loop edits it."""
        with acting_for(Team(TEAM_A)), deployment.services.db.session() as s:
            return s.scalar(select(Submission.dm_ts)) == queued.response["ts"]
    eventually(queued_message_is_attached)
    # The worker grades it (the queue is across teams); the feedback loop, outside any request, edits
    # the learner's DM with team A's token.
    queue = JobQueue(deployment.services.db, clock)
    claim = queue.claim("worker-1", ("ranked",))
    assert queue.finish(claim.job_id, claim.token, boards.result_of(30.0))
    assert [state for _, state in deployment.services.feedback.tick()] == ["done:passed"]
    assert {c.token for c in deployment.fake.calls_to("chat.update")} == {TOKEN_A}

    # Leaderboards: each workspace's board has its own learners only.
    for team, learner, seconds in ((TEAM_A, "U1", 30.0), (TEAM_B, "U2", 20.0)):
        with acting_for(Team(team)):
            boards.submit(deployment.services.db, learner, seconds)
    board_a = deployment.study(TEAM_A, "leaderboard digits fastai", user="U1")["text"]
    board_b = deployment.study(TEAM_B, "leaderboard digits fastai", user="U2")["text"]
    assert "<@U1>" in board_a and "<@U2>" not in board_a
    assert "<@U2>" in board_b and "<@U1>" not in board_b

    # The clock, outside any request: each lesson goes to its workspace's channel with its token.
    deployment.fake.reset()
    clock.set(datetime(2027, 1, 5, 17, 0, 30, tzinfo=timezone.utc))
    assert deployment.services.deliveries.tick().posted == ["fastai:1", "fastai:1"]
    assert tokens_of(deployment.fake, "chat.postMessage", CHANNEL_OF[TEAM_A]) == {TOKEN_A}
    assert tokens_of(deployment.fake, "chat.postMessage", CHANNEL_OF[TEAM_B]) == {TOKEN_B}

    # Interactivity: the App Home's pause button in team A pauses team A's fastai, not team B's.
    deployment.fake.reset()
    payload = slack.block_action_payload("cohort_pause", "fastai", "UADMIN", team_id=TEAM_A,
                                         view={"id": "VHOME", "type": "home"})
    assert slack.interactive(deployment.url, SIGNING_SECRET, payload).status_code == 200
    [home] = deployment.fake.wait_for("views.publish")
    assert home.token == TOKEN_A
    statuses = {}
    for team in (TEAM_A, TEAM_B):
        with acting_for(Team(team)), deployment.services.db.session() as s:
            statuses[team] = s.scalar(select(Cohort.status))
    assert statuses == {TEAM_A: "paused", TEAM_B: "active"}


# ---------------------------------------------------------------------------- uninstalls


@pytest.mark.parametrize("revocation", [
    {"type": "app_uninstalled"},
    {"type": "tokens_revoked", "tokens": {"oauth": [], "bot": ["UBOT"]}},  # Slack's documented shape
])
def test_an_uninstall_or_revoked_bot_token_deletes_the_token_and_posting_there_stops(deployment, clock, revocation):
    for team, token in ((TEAM_A, TOKEN_A), (TEAM_B, TOKEN_B)):
        deployment.install(team, token)
        deployment.study(team, CREATE.format(channel=CHANNEL_OF[team]))
    deployment.event(TEAM_A, revocation)
    eventually(lambda: bot_token(deployment, Team(TEAM_A)) is None)  # the listener runs after the ack
    assert bot_token(deployment, Team(TEAM_B)) == TOKEN_B  # the other workspace keeps its own

    deployment.fake.reset()
    clock.set(datetime(2027, 1, 5, 17, 0, 30, tzinfo=timezone.utc))
    report = deployment.services.deliveries.tick()
    assert report.posted == ["fastai:1"] and report.failed == ["fastai:1"]  # B's posted; A's has no token
    assert tokens_of(deployment.fake, "chat.postMessage", CHANNEL_OF[TEAM_B]) == {TOKEN_B}
    assert not tokens_of(deployment.fake, "chat.postMessage", CHANNEL_OF[TEAM_A])


# ---------------------------------------------------------------------------- scoping, by construction


def test_every_orm_query_sees_only_the_team_in_scope_and_work_naming_none_fails(db, clock, monkeypatch):
    """db/scoping.py: SELECT, get(), UPDATE and DELETE are filtered by the team in scope; a new row joins it;
    with many workspaces and no team named, nothing runs at all."""
    from sqlalchemy import delete, func, update

    from studybot.teams import NoTeamInScope, across_teams

    from studybot import teams

    monkeypatch.setattr(teams, "_single_team", None)  # a multi-workspace process (put back after the test)
    ids = {}
    for team in (TEAM_A, TEAM_B):
        with acting_for(Team(team, "EORG")), db.session() as s:
            row = Submission(user_id="U1", exercise_id="digits", status="passed", created_at=clock.now())
            s.add(row)
            s.flush()
            assert (row.team_id, row.enterprise_id) == (team, "EORG")
            ids[team] = row.id
    with acting_for(Team(TEAM_B)), db.session() as s:
        assert s.get(Submission, ids[TEAM_A]) is None and s.get(Submission, ids[TEAM_B]) is not None
        assert s.execute(update(Submission).values(status="dead")).rowcount == 1
        assert s.execute(delete(Submission).where(Submission.id == ids[TEAM_A])).rowcount == 0
    with across_teams(), db.session() as s:
        assert dict(s.execute(select(Submission.team_id, Submission.status)).all()) == {TEAM_A: "passed", TEAM_B: "dead"}
        assert s.scalar(select(func.count()).select_from(Submission)) == 2
    with pytest.raises(NoTeamInScope), db.session() as s:
        s.scalars(select(Submission)).all()
    with pytest.raises(NoTeamInScope), across_teams(), db.session() as s:
        s.add(Submission(user_id="U1", exercise_id="digits", status="queued", created_at=clock.now()))
