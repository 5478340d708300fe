"""studybot: weekly fast.ai study groups in Slack, with lesson posts, reminders and leaderboards."""

__version__ = "0.1.0"
