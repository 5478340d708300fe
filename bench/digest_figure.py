"""The README's digest picture: a 10-member cohort over 6 weeks in the shell, with `:advance`.

    .venv/bin/python bench/digest_figure.py [--out docs/digest.png]

Runs the real shell (studybot/shell) on a throwaway SQLite database with a manual clock: an organizer
creates the cohort and sets the weekly digest (Mondays 09:00), ten learners join, and each week
`:advance` posts the lesson (and its question thread), learners reply in the thread (`:reply`), and
the digest goes out. Submissions are inserted as the worker leaves a graded one (grading real notebooks
takes minutes each and is not what this picture is about): from a fixed seed, fewer learners keep up
each week, as in a real cohort, and some need a second try. Prints the sixth digest and writes its PNG."""

from __future__ import annotations

import argparse
import io
import random
import re
import shutil
import sys
import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from studybot.bootstrap import build_services  # noqa: E402
from studybot.config import load_settings  # noqa: E402
from studybot.db.engine import Database  # noqa: E402
from studybot.db.models import Submission  # noqa: E402
from studybot.shell.chat import ShellChat  # noqa: E402
from studybot.shell.repl import Shell  # noqa: E402
from studybot.time_source import ManualClock  # noqa: E402

LEARNERS = ("ada", "bob", "cy", "dee", "eve", "fay", "gus", "hal", "ivy", "jo")
WEEKS = 6
SEED = 12
START = datetime(2027, 1, 4, 12, tzinfo=timezone.utc)  # a Monday; the first lesson posts Tue 5 Jan
KEEP_UP = (0.9, 0.8, 0.7, 0.6, 0.55, 0.5)  # the chance a learner works on week k's exercise
PASS = 0.7  # the chance one submission passes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "digest.png")
    args = parser.parse_args()
    rng = random.Random(SEED)
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings({"STUDYBOT_DATA_DIR": tmp, "DATABASE_URL": f"sqlite:///{tmp}/studybot.sqlite3"})
        db = Database(settings.database_url)
        db.migrate()
        clock, out, admins = ManualClock(START), io.StringIO(), {"you"}
        chat = ShellChat(out, clock, admins.__contains__, files_dir=Path(tmp) / "files")
        services = build_services(settings, db, chat, clock)
        shell = Shell(services, clock, out, admins)

        def say(line: str, user: str = "you") -> None:
            shell.user = user
            shell.handle(line)

        say("/study cohort create fastai --channel #fastai --start 2027-01-05 --time 18:00 --tz Europe/London")
        say("/study cohort digest fastai --weekday mon --time 09:00")
        for learner in LEARNERS:
            say("/study join fastai", learner)
        say(":advance 30h")  # lesson 1 posts on Tuesday evening
        lessons = [slot for slot in services.cohorts.view("you", "fastai").lessons]
        for week in range(WEEKS):
            lesson = lessons[week]
            for learner in LEARNERS:
                if rng.random() > KEEP_UP[week]:
                    continue
                when = clock.now() + timedelta(hours=rng.randint(2, 100))
                for attempt in range(rng.choice((1, 1, 2, 3))):
                    passed = rng.random() < PASS
                    graded(db, learner, lesson.exercise, "passed" if passed else "below_target",
                           when + timedelta(hours=3 * attempt))
                    if passed:
                        break
                if rng.random() < 0.5:
                    say(f":reply fastai {lesson.key} a question about lesson {lesson.key}", learner)
            if week == 3:
                say("/study leave fastai", "jo")
            say(":advance 1w")
        said = out.getvalue()
        digests = re.split(r"\n── DM to @you · ", said)
        print("── DM to @you · " + digests[-1].split("\n── ", 1)[0])
        written = re.findall(r": (\S+digest-fastai-\S+\.png) \(\d+ bytes\)", said)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(written[-1], args.out)
        print(f"{len(written)} digests; the last picture is {args.out}")
        db.dispose()
    return 0


def graded(db: Database, user: str, exercise: str, status: str, when: datetime) -> None:
    with db.session() as s:
        s.add(Submission(user_id=user, exercise_id=exercise, status=status, created_at=when, lane="ranked",
                         source="shell", finished_at=when + timedelta(minutes=3)))


if __name__ == "__main__":
    raise SystemExit(main())
