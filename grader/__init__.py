"""studybot's grader: trains a learner's notebook in a bubblewrap sandbox and judges its
accuracy and training time against the exercise's reference. See grader/README.md.

A library (grader/api.py) and a command (grader/cli.py). It never imports studybot; the bot's
grading worker (studybot/worker/) calls grader.api in a child process of its own.
"""
