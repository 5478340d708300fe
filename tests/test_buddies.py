"""Study buddies (issue 12, part 2): opt-ins, snoozes and the organizer's switch through the shell; the
weekly pairing's fairness over six weeks; group DMs over the real bolt app and the fake Web API
(conversations.open with several users, timezones from users.info); two workspaces never mixed."""

from __future__ import annotations

import itertools
from collections import Counter
from datetime import datetime, timezone

from sqlalchemy import select

from studybot.db.models import BuddyGroup, Delivery
from studybot.services.buddies import form_groups
from studybot.teams import Team, acting_for
from tests.test_conversations import CREATE
from tests.test_slack_http import CREATE as SLACK_CREATE, study
from tests.test_workspaces import CHANNEL_OF, CREATE as TEAM_CREATE, TEAM_A, TEAM_B, TOKEN_A, TOKEN_B, deployment  # noqa: F401

LESSON_1_UTC = datetime(2027, 1, 5, 17, 0, 30, tzinfo=timezone.utc)  # 18:00 CET, the first post


def join_with_buddies(bot, *people):
    for person in people:
        bot.say("/study join fastai", as_user=person)
        bot.say("/study buddies on", as_user=person)


def pairs(group):
    return {frozenset(p) for p in itertools.combinations(group, 2)}


def groupings(people):
    """Every way to split an odd number of people into pairs and one triple (independent of the bot's search)."""
    for triple in itertools.combinations(sorted(people), 3):
        for rest in even_groupings([p for p in sorted(people) if p not in triple]):
            yield [triple] + rest


def even_groupings(people):
    if not people:
        yield []
        return
    first, rest = people[0], people[1:]
    for other in rest:
        for tail in even_groupings([p for p in rest if p != other]):
            yield [(first, other)] + tail


def repeats(grouping, met):
    return sum(met[pair] for group in grouping for pair in pairs(group))


def test_six_weeks_with_seven_members_pair_everyone_fairly(bot):
    members = [f"m{i}" for i in range(1, 8)]
    bot.say(CREATE)
    join_with_buddies(bot, *members)
    said = bot.say(":advance 6w", as_user="admin")
    assert said.count("── group DM to @") == 6 * 3  # two pairs and a triple, each week
    met: Counter = Counter()
    last_triple: set[str] = set()
    triples: Counter = Counter()
    for key in ("1", "2", "3", "4", "5", "6"):
        week = bot.services.buddies.groups_of("fastai", key)
        assert sorted(len(g) for g in week) == [2, 2, 3], key
        assert sorted(itertools.chain(*week)) == members, key  # nobody left out
        # No pair repeated while a fresh one exists: no grouping of the seven repeats fewer meetings.
        fewest = min(repeats(g, met) for g in groupings(members))
        assert repeats(week, met) == fewest, (key, week)
        [triple] = [g for g in week if len(g) == 3]
        # The third seat rotates where fresh pairs allow it: no grouping as fresh has fewer of last week's trio.
        fresh = [g for g in groupings(members) if repeats(g, met) == fewest]
        again = min(len(set(next(t for t in g if len(t) == 3)) & last_triple) for g in fresh)
        assert len(set(triple) & last_triple) == again, (key, triple, last_triple)
        last_triple = set(triple)
        triples.update(triple)
        for group in week:
            met.update(pairs(group))
    assert max(met.values()) <= 2
    assert max(triples.values()) <= 3  # nobody takes the third seat more than half the weeks
    assert len(met) == 21  # by week six every pair of the seven has met


def test_the_pairing_goes_out_once_per_lesson_whatever_the_ticks(bot):
    bot.say(CREATE)
    join_with_buddies(bot, "ada", "bob")
    bot.clock.set(LESSON_1_UTC)
    for _ in range(3):  # two clocks, or one ticking again: one pairing, one DM
        bot.services.deliveries.tick()
    assert bot.services.buddies.groups_of("fastai", "1") == [("ada", "bob")]
    with bot.services.db.session() as s:
        kinds = Counter(s.scalars(select(Delivery.kind).where(Delivery.kind.in_(("buddies", "buddy_group")))))
    assert kinds == {"buddies": 1, "buddy_group": 1}
    said = "".join(p.message.text for p in bot.chat.posted if p.channel_id == "@ada, @bob")
    assert said.count("Study buddies in fastai for Lesson 1") == 1 and "exercise pets" in said


def test_snoozed_and_opted_out_members_are_not_paired_until_they_are_back(bot):
    bot.say(CREATE)
    join_with_buddies(bot, "ada", "bob", "cy")
    assert "snoozed in fastai until Mon 18 Jan 2027" in bot.say("/study buddies snooze 2", as_user="ada")
    bot.say("/study buddies off", as_user="cy")
    bot.say(":advance 16d", as_user="admin")  # lessons 1, 2 and 3
    assert bot.services.buddies.groups_of("fastai", "1") == [("bob",)]  # alone: told so, nobody else DMed
    assert bot.services.buddies.groups_of("fastai", "2") == [("bob",)]
    assert bot.services.buddies.groups_of("fastai", "3") == [("ada", "bob")]  # the snooze is over
    assert not [p for p in bot.chat.posted if "cy" in p.channel_id and "buddies" in p.message.text]
    alone = [p.message.text for p in bot.chat.posted if p.channel_id == "@bob"]
    assert any("the only one in study buddies in fastai this week" in text for text in alone)


def test_a_learner_who_left_is_never_paired(bot):
    bot.say(CREATE)
    join_with_buddies(bot, "ada", "bob", "cy")
    bot.say("/study leave fastai", as_user="cy")
    bot.say(":advance 9d", as_user="admin")
    for key in ("1", "2"):
        assert bot.services.buddies.groups_of("fastai", key) == [("ada", "bob")]
    assert not [p for p in bot.chat.posted if "cy" in p.channel_id]


def test_organizers_turn_buddies_off_and_on(bot):
    bot.say(CREATE)
    join_with_buddies(bot, "ada", "bob")
    assert "Only organizers" in bot.say("/study cohort buddies fastai off", as_user="ada")
    assert "Study buddies are off in fastai" in bot.say("/study cohort buddies fastai off", as_user="admin")
    assert "turned study buddies off" in bot.say("/study buddies on", as_user="ada")
    bot.say(":advance 2d", as_user="admin")
    assert bot.services.buddies.groups_of("fastai", "1") == []
    assert "2 members have opted in" in bot.say("/study cohort buddies fastai on", as_user="admin")
    bot.say(":advance 7d", as_user="admin")
    assert bot.services.buddies.groups_of("fastai", "2") == [("ada", "bob")]


def test_bad_buddy_input_gets_a_clear_message(bot):
    bot.say(CREATE)
    bot.say(CREATE.replace("create fastai", "create empty").replace("#fastai", "#empty"))
    assert "You are not in fastai" in bot.say("/study buddies on fastai", as_user="ada")
    assert "It has no members yet" in bot.say("/study cohort buddies empty on", as_user="admin")
    bot.say("/study join fastai", as_user="ada")
    assert "So far you are the only one: pairing needs at least two" in bot.say("/study buddies on", as_user="ada")
    assert "Only one member has opted in, and pairing needs two" in bot.say("/study cohort buddies fastai on", as_user="admin")
    assert "is not a number of weeks" in bot.say("/study buddies snooze forever", as_user="ada")
    assert "Usage" in bot.say("/study buddies maybe", as_user="ada")


def test_close_timezones_pair_up_when_nothing_else_decides():
    offsets = {"a": 3600, "b": -18000, "c": 3600, "d": -18000}
    assert form_groups(offsets, Counter(), offsets=offsets) == [("a", "c"), ("b", "d")]
    met = Counter({frozenset(("a", "c")): 1})  # ... but a fresh pair comes before a close one
    assert sorted(form_groups(offsets, met, offsets=offsets)) == [("a", "b"), ("c", "d")] or \
        sorted(form_groups(offsets, met, offsets=offsets)) == [("a", "d"), ("b", "c")]


def test_a_large_cohort_is_paired_within_the_search_budget():
    people = [f"u{i:02d}" for i in range(41)]
    groups = form_groups(people, Counter())
    assert sorted(itertools.chain(*groups)) == people and sorted(map(len, groups)) == [2] * 19 + [3]


# ---------------------------------------------------------------------------- over Slack


def test_group_dms_over_slack_pair_close_timezones_and_skip_who_left(slack_app):
    fake, services = slack_app.fake, slack_app.services
    fake.add_user("U3", "cy", tz="America/New_York")
    fake.add_user("U4", "dee", tz="Europe/Berlin")
    fake.add_user("U5", "eve", tz="America/New_York")
    study(slack_app, SLACK_CREATE)
    for n, user in enumerate(("U2", "U3", "U4", "U5")):
        study(slack_app, "join fastai", user=user, name=f"j{n}")
        study(slack_app, "buddies on", user=user, name=f"b{n}")
    fake.reset()
    slack_app.clock.set(LESSON_1_UTC)
    report = services.deliveries.tick()
    assert report.posted == ["fastai:1"]
    # Europe/Berlin with Europe/Berlin (U2 is UTC, the closer of the rest to Berlin), New York with New York.
    opened = sorted(c.args["users"] for c in fake.calls_to("conversations.open") if "," in str(c.args.get("users")))
    assert opened == ["U2,U4", "U3,U5"]
    for group in ("GU2U4", "GU3U5"):
        [post] = [c for c in fake.calls_to("chat.postMessage") if c.args["channel"] == group]
        assert "Study buddies in fastai" in post.args["text"] and post.args["metadata"]["event_payload"]["tag"]
    assert sorted(report.paired) == ["fastai:1:U2,U4", "fastai:1:U3,U5"]

    # Next week: U5 leaves after the pairing but before the DMs (Slack refuses their first attempt): never messaged.
    fake.reset()
    fake.fail_next("conversations.open", status=200, error="ratelimited", times=2)  # both groups' first try
    slack_app.clock.set(datetime(2027, 1, 12, 17, 0, 30, tzinfo=timezone.utc))
    assert services.deliveries.tick().paired == []
    with services.db.session() as s:
        planned = [users.split(",") for users in s.scalars(select(BuddyGroup.user_ids).where(BuddyGroup.lesson_key == "2"))]
    assert len(planned) == 2 and any("U5" in group for group in planned)
    study(slack_app, "leave fastai", user="U5", name="l5")
    fake.reset()
    slack_app.clock.set(datetime(2027, 1, 12, 17, 5, tzinfo=timezone.utc))
    report = services.deliveries.tick()
    [others] = [group for group in planned if "U5" not in group]
    assert report.paired == [f"fastai:2:{','.join(others)}"]  # U5's partner is not sent a group of one
    opened = [c.args["users"] for c in fake.calls_to("conversations.open") if c.ok]
    assert opened == [",".join(others)]
    assert services.buddies.groups_of("fastai", "2") == [tuple(others)]


def test_two_workspaces_are_never_paired_together(deployment, clock):  # noqa: F811
    deployment.fake.add_user("U3", "cy")
    deployment.fake.add_user("U4", "dee")
    for team, token, learners in ((TEAM_A, TOKEN_A, ("U1", "U2")), (TEAM_B, TOKEN_B, ("U3", "U4"))):
        assert deployment.install(team, token).status_code == 200
        deployment.study(team, TEAM_CREATE.format(channel=CHANNEL_OF[team]))
        for user in learners:
            deployment.study(team, "join fastai", user=user)
            deployment.study(team, "buddies on", user=user)
    deployment.fake.reset()
    clock.set(LESSON_1_UTC)
    report = deployment.services.deliveries.tick()
    assert sorted(report.paired) == ["fastai:1:U1,U2", "fastai:1:U3,U4"]
    opened = {(c.token, c.args["users"]) for c in deployment.fake.calls_to("conversations.open")
              if "," in str(c.args.get("users"))}
    assert opened == {(TOKEN_A, "U1,U2"), (TOKEN_B, "U3,U4")}
    for team, group in ((TEAM_A, ("U1", "U2")), (TEAM_B, ("U3", "U4"))):
        with acting_for(Team(team)):
            assert deployment.services.buddies.groups_of("fastai", "1") == [group]
