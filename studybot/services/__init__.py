"""The bot's domain: cohorts, lessons, schedules and deliveries. Transport-neutral: nothing here imports Slack."""
