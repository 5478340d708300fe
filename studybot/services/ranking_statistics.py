"""The ranking statistic: a board ranks medians, but only trusts differences beyond noise.

Each graded submission carries a ranking time (``rank_seconds``: the median over its runs of train +
predict seconds) and a distribution-free interval for that median (``rank_seconds_low`` ..
``rank_seconds_high``; the grader gives min..max for 5 runs or fewer). Pure functions, no database:

- ``overlaps(a, b)``: the two intervals share at least one point (touching ends count: a tie);
- ``faster_beyond_noise(new, old)``: new's whole interval lies below old's (``new.high < old.low``);
  a record needs this, so a lucky run cannot take one;
- ``tie_groups(intervals)``: for a board already sorted by median, the shared rank of each entry.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence


@dataclass(frozen=True)
class Interval:
    """A ranking time and its interval, in seconds (low <= median <= high)."""

    median: float
    low: float
    high: float

    @classmethod
    def of(cls, median: float, low: float | None = None, high: float | None = None) -> "Interval":
        """An interval with missing ends (old rows, results without them) collapsed onto the median: [x, x]."""
        low = median if low is None else min(low, median)
        high = median if high is None else max(high, median)
        return cls(median, low, high)


def overlaps(a: Interval, b: Interval) -> bool:
    """True when the intervals share a point: neither entry is faster beyond noise."""
    return a.low <= b.high and b.low <= a.high


def faster_beyond_noise(new: Interval, old: Interval) -> bool:
    """True when every plausible time of ``new`` is below every plausible time of ``old``."""
    return new.high < old.low


@dataclass(frozen=True)
class Place:
    """Where an entry stands: ``rank`` is shared by a tie group (competition ranking: 1, =2, =2, 4)."""

    rank: int
    tied: bool


def tie_groups(intervals: Sequence[Interval]) -> list[Place]:
    """Places for entries in board order (by median, then earlier submission).

    A group starts at an entry and takes in each following entry whose interval overlaps the group's
    first entry (its leader). Comparing with the leader, not the previous entry, keeps a long chain of
    slightly overlapping entries from tying the whole board together."""
    places: list[Place] = []
    leader: Interval | None = None
    leader_rank = 0
    for position, interval in enumerate(intervals, start=1):
        if leader is not None and overlaps(leader, interval):
            places.append(Place(leader_rank, True))
            if not places[leader_rank - 1].tied:  # the leader is tied now too
                places[leader_rank - 1] = Place(leader_rank, True)
        else:
            leader, leader_rank = interval, position
            places.append(Place(position, False))
    return places
