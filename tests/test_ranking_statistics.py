"""The ranking statistic on known samples (services/ranking_statistics.py), and how a result's times
become the stored ranking time (studybot/queue.py, rank_times): pure functions, no database."""

from __future__ import annotations

import pytest

from studybot.queue import rank_times
from studybot.services.ranking_statistics import Interval, Place, faster_beyond_noise, overlaps, tie_groups


def iv(median, low, high) -> Interval:
    return Interval(median, low, high)


def test_overlap_includes_touching_ends_and_excludes_a_gap():
    assert overlaps(iv(3.2, 3.05, 3.40), iv(3.5, 3.40, 3.60))  # they share 3.40: a tie
    assert overlaps(iv(3.5, 3.40, 3.60), iv(3.2, 3.05, 3.40))  # symmetric
    assert not overlaps(iv(3.2, 3.05, 3.39), iv(3.5, 3.40, 3.60))
    assert overlaps(iv(5.0, 1.0, 9.0), iv(5.0, 4.9, 5.1))  # one inside the other
    assert overlaps(iv(4.0, 4.0, 4.0), iv(4.0, 4.0, 4.0))  # the same point ([x, x], old rows)


def test_a_record_needs_the_whole_new_interval_below_the_old_one():
    old = iv(3.21, 3.05, 3.40)
    assert faster_beyond_noise(iv(2.80, 2.70, 3.04), old)
    assert not faster_beyond_noise(iv(2.80, 2.70, 3.05), old)  # touching the old low end: noise
    assert not faster_beyond_noise(iv(2.50, 2.00, 3.30), old)  # a faster median, but a lucky one
    assert not faster_beyond_noise(old, old)
    assert faster_beyond_noise(iv(39.0, 39.0, 39.0), iv(40.0, 40.0, 40.0))  # old rows: [x, x] behaves as before


def test_tie_groups_share_the_leaders_rank_and_do_not_chain():
    board = [iv(3.0, 2.9, 3.2), iv(3.1, 3.0, 3.3), iv(3.25, 3.15, 3.5), iv(4.0, 3.9, 4.1), iv(4.05, 4.0, 4.2),
             iv(6.0, 6.0, 6.0)]
    # The third overlaps the leader too (3.15 <= 3.2): one group of three; then a group of two.
    assert tie_groups(board) == [Place(1, True), Place(1, True), Place(1, True), Place(4, True), Place(4, True),
                                 Place(6, False)]
    chain = [iv(1.0, 0.9, 1.1), iv(1.15, 1.05, 1.25), iv(1.3, 1.2, 1.4)]  # each overlaps the next only
    assert tie_groups(chain) == [Place(1, True), Place(1, True), Place(3, False)]
    assert tie_groups([iv(1, 1, 1), iv(2, 2, 2)]) == [Place(1, False), Place(2, False)]
    assert tie_groups([]) == []


def test_missing_interval_ends_collapse_onto_the_median():
    assert Interval.of(3.0) == iv(3.0, 3.0, 3.0)
    assert Interval.of(3.0, 3.5, 2.0) == iv(3.0, 3.0, 3.0)  # an inconsistent interval still holds its median


@pytest.mark.parametrize("result, expected", [
    ({"rank_seconds": 3.2, "rank_seconds_low": 3.05, "rank_seconds_high": 3.4, "train_seconds": 1.0}, (3.2, 3.05, 3.4)),
    ({"train_seconds": 2.0, "predict_seconds": 0.5}, (2.5, 2.5, 2.5)),  # no rank time: train + predict
    ({"train_seconds": 2.0}, (2.0, 2.0, 2.0)),  # an old result: train seconds
    ({"status": "noop"}, (None, None, None)),  # --noop-jobs: nothing to rank
    ({"rank_seconds": float("nan"), "train_seconds": 2.0}, (2.0, 2.0, 2.0)),
])
def test_rank_times_fall_back_for_results_without_them(result, expected):
    assert rank_times(result) == expected
