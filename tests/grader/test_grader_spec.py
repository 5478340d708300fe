"""Exercise specs: loading, and errors that name the bad key."""

import pytest

from grader.errors import SpecError
from grader.spec import find_exercise, list_exercises, load_spec, parse_spec

from tests.grader.grader_support import EXERCISES

GOOD = dict(id="x", title="t", version=1, dataset="d", metric="accuracy",
            target=0.9, runs=2, train_budget_seconds=5, predict_budget_seconds=1, warmup=True, device="cpu",
            memory_limit_mb=512, summary="s")


def test_tiny_fixture_loads(tiny_spec):
    assert tiny_spec.id == "tiny" and tiny_spec.runs == 1 and tiny_spec.warmup
    assert tiny_spec.reference_notebook.is_file()
    assert tiny_spec.warmup_cap_seconds == 30.0


def test_defaults_for_optional_keys():
    spec = parse_spec(GOOD)
    assert spec.too_slow_factor == 10.0
    assert spec.warmup_cap_seconds == 6.0  # train + predict budgets
    assert spec.as_config()["warmup_budget_seconds"] == 6.0


@pytest.mark.parametrize("change, fragment", [
    ({"runs": None}, "missing key 'runs'"),
    ({"runs": True}, "'runs' must be an integer"),
    ({"runs": 0}, "'runs' must be at least 1"),
    ({"target": 94}, "'target' is a fraction"),
    ({"target": "high"}, "'target' must be a number"),
    ({"device": "tpu"}, "'device' must be one of"),
    ({"metric": "f1"}, "'metric' must be one of"),
    ({"train_budget_seconds": -1}, "'train_budget_seconds' must be positive"),
    ({"warmup": "yes"}, "'warmup' must be true or false"),
    ({"memory_limit_mb": 1}, "'memory_limit_mb' must be at least 64"),
    ({"title": " "}, "'title' must not be empty"),
    ({"train_budget": 3}, "unknown key 'train_budget'"),
])
def test_bad_keys_are_named(change, fragment):
    data = {**GOOD, **change}
    data = {k: v for k, v in data.items() if v is not None}
    with pytest.raises(SpecError, match=fragment):
        parse_spec(data, source="exercises/x/spec.toml")


def test_invalid_toml_and_id_mismatch(tmp_path):
    bad = tmp_path / "broken"
    bad.mkdir()
    (bad / "spec.toml").write_text("id = \n")
    with pytest.raises(SpecError, match="not valid TOML"):
        load_spec(bad)
    other = tmp_path / "other"
    other.mkdir()
    (other / "spec.toml").write_text("\n".join(f"{k} = {v!r}".replace("True", "true") for k, v in GOOD.items()))
    with pytest.raises(SpecError, match="'id' is 'x' but the exercise directory is 'other'"):
        load_spec(other)


def test_find_and_list():
    assert [s.id for s in list_exercises(EXERCISES)] == ["tiny", "tiny_folder", "tiny_ratings", "tiny_tabular",
                                                         "tiny_text"]  # one tiny exercise per data kind
    with pytest.raises(SpecError, match=r"no exercise 'nope' .*known: tiny"):
        find_exercise("nope", EXERCISES)
    with pytest.raises(SpecError, match="not an exercise id"):
        find_exercise("../tiny", EXERCISES)
