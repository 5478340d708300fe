"""Every exception the grader raises on purpose. Callers catch `GraderError`.

    GraderError                 base class; str(e) is a one-line message meant for a human
    ├── InvalidNotebook         the submission is not a gradable notebook: bad JSON, not
    │                           nbformat 4, too big, no `#| export` cells, a syntax error,
    │                           `train`/`predict` missing or with the wrong signature
    ├── SpecError               an exercise is unknown or its spec.toml is malformed
    ├── DatasetMissing          a dataset's files are not on disk yet; the message says to
    │                           run `grader datasets prepare ID`
    └── InfraError              the grader's own machinery failed (not the learner's fault)
        └── SandboxUnavailable  bubblewrap is missing or cannot start, and the loud
                                development flag to run without it was not given

Learner failures inside the sandbox (timeouts, crashes, OOM, bad predictions) are not
exceptions: they are results with a status, see grader/results.py.
"""


class GraderError(Exception):
    """Base class of every error the grader raises on purpose."""


class InvalidNotebook(GraderError):
    """The submission cannot be turned into a `train`/`predict` pair."""


class SpecError(GraderError):
    """An exercise directory or its spec.toml is missing or malformed."""


class DatasetMissing(GraderError):
    """A dataset has not been prepared on this machine.

    `DatasetMissing("cifar10", "no data_batch_1 under ~/.cache/...")` reads as
    "dataset 'cifar10' is not prepared (no data_batch_1 ...); run `grader datasets prepare cifar10`".
    """

    def __init__(self, dataset_id: str, detail: str = ""):
        self.dataset_id = dataset_id
        self.detail = detail
        reason = f" ({detail})" if detail else ""
        super().__init__(
            f"dataset {dataset_id!r} is not prepared{reason}; "
            f"run `grader datasets prepare {dataset_id}`"
        )


class InfraError(GraderError):
    """The grader itself failed; the submission was not judged."""


class SandboxUnavailable(InfraError):
    """bubblewrap is not usable and unsandboxed running was not explicitly allowed."""
