"""`studybot work`: the grading worker. It claims jobs from the bot's queue (studybot/queue.py),
grades each with the grader library in a child process, and records the result in the database;
the clock process then edits the learner's DM. Results flow through the database only: a worker
holds no Slack credentials.

One job:

    claim (a lease of --lease seconds and a fresh fencing token; see studybot/queue.py)  loop.py
      -> the notebook goes to a private temporary directory
      -> a child process, `python -m studybot.worker.child`, in its own process group,    child.py
         runs grader.api.grade_submission(); it sends progress and then the result back
         over a pipe
      -> meanwhile a heartbeat thread extends the lease every lease/3, and progress goes   lease.py
         to the database as "run k of N" at most once a second (fenced by the token)      progress.py
      -> result: status infra_error -> queue.fail() (retried with backoff, then dead);      loop.py
         any other status (the learner's: passed, crashed, timeout…) -> queue.finish()

Options, database set-up and signals are in cli.py. Only the child imports the grader (and so
torch); the rest of the bot never needs it.
"""
