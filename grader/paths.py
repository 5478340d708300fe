"""Where the grader keeps its files, and the loud flag that turns the sandbox off.

Shared by the `grader` command and by every program that calls the grader as a library (the
bot's worker), so none of them has to import the command-line module for a constant.
"""

import os
import pathlib

DEFAULT_DATA_DIR = pathlib.Path("~/.cache/studybot-grader")  # overridden by $GRADER_DATA_DIR or --data-dir
DATA_DIR_VARIABLE = "GRADER_DATA_DIR"

UNSAFE_FLAG = "--unsafe-no-sandbox-dev-only"
UNSAFE_WARNING = f"""
!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!
!!  {UNSAFE_FLAG}: the notebook's code runs WITHOUT the sandbox, with
!!  your user's files, network and secrets within its reach. Only for trusted code
!!  on a development machine. Never on a grading host.
!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!
"""


def resolve_data_dir(chosen=None) -> pathlib.Path:
    """The data directory (datasets, cached references, plots): `chosen` (a --data-dir), else
    $GRADER_DATA_DIR, else DEFAULT_DATA_DIR; `~` expanded."""
    return pathlib.Path(chosen or os.environ.get(DATA_DIR_VARIABLE) or DEFAULT_DATA_DIR).expanduser()
