"""studybot's grader: trains a learner's notebook in a bubblewrap sandbox and judges its
accuracy and training time against the exercise's reference. See grader/README.md.

The grader never imports studybot, and studybot never imports the grader: they talk through
the `grader` command line and its JSON result.
"""
