"""The terminal shell: the same commands and rendered messages as Slack, with no Slack at all."""
