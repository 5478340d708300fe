"""The Slack transport. Only this package imports slack_bolt / slack_sdk; listeners parse, ack, and
hand over to the transport-neutral domain (studybot/commands.py, studybot/services)."""
