"""The built-in curricula, the loader's validation, and organizer curricula."""

from __future__ import annotations

import re
import tomllib
from dataclasses import FrozenInstanceError
from pathlib import Path

import pytest

from studybot.curricula import (
    LINK_KINDS,
    Curriculum,
    Lesson,
    Link,
    get_curriculum,
    load_curricula,
    load_curriculum_file,
)
from studybot.errors import CurriculumError, NotFound

PART1 = "fastai-part1-2022"
PART2 = "fastai-part2-2022"
BUILTINS = (PART1, PART2)

LESSON_URL = re.compile(r"^https://course\.fast\.ai/Lessons/lesson(\d+a?)\.html$")
VIDEO_URL = re.compile(r"^https://www\.youtube\.com/watch\?v=[A-Za-z0-9_-]{11}$")

VALID = """\
id = "my-course"
title = "My course"
url = "https://example.org/"

[[lessons]]
key = "1"
title = "First"
topics = ["tensors"]
datasets = ["MNIST"]
exercise = "digits"

[[lessons.links]]
kind = "lesson"
title = "Lesson 1"
url = "https://example.org/1"

[[lessons]]
key = "2"
title = "Second"

[[lessons.links]]
kind = "video"
title = "Lesson 2 video"
url = "https://example.org/2"
"""


def write(directory: Path, text: str, name: str = "mine.toml") -> Path:
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return path


# --------------------------------------------------------------------------- built-ins


def test_builtins_load() -> None:
    curricula = load_curricula()
    assert set(curricula) == set(BUILTINS)
    for cid in BUILTINS:
        assert isinstance(curricula[cid], Curriculum)
        assert curricula[cid].id == cid


def test_part1_keys_in_order() -> None:
    part1 = get_curriculum(PART1)
    assert [lesson.key for lesson in part1.lessons] == [*map(str, range(1, 9)), "8a"]
    assert len(part1.lessons) == 9
    assert part1.lesson("8a").title == "Bonus: Data ethics"


def test_part2_keys_in_order() -> None:
    part2 = get_curriculum(PART2)
    assert [lesson.key for lesson in part2.lessons] == [str(n) for n in range(9, 26)]
    assert len(part2.lessons) == 17


@pytest.mark.parametrize("cid", BUILTINS)
def test_every_lesson_has_lesson_page_and_video(cid: str) -> None:
    for lesson in get_curriculum(cid).lessons:
        page = lesson.link("lesson")
        assert page is not None, lesson.key
        match = LESSON_URL.match(page.url)
        assert match and match.group(1) == lesson.key, page.url
        video = lesson.link("video")
        assert video is not None, lesson.key
        assert VIDEO_URL.match(video.url), video.url
        assert lesson.title and lesson.topics


@pytest.mark.parametrize("cid", BUILTINS)
def test_builtin_links_are_well_formed(cid: str) -> None:
    seen_videos: set[str] = set()
    for lesson in get_curriculum(cid).lessons:
        assert all(link.kind in LINK_KINDS for link in lesson.links)
        assert all(link.url.startswith("https://") for link in lesson.links)
        for link in lesson.links_of("chapter"):
            assert re.match(
                r"^https://github\.com/fastai/fastbook/blob/master/\d\d_\w+\.ipynb$", link.url
            )
        for link in lesson.links_of("notebook"):
            assert link.url.startswith(
                ("https://www.kaggle.com/code/jhoward/", "https://github.com/fastai/")
            ), link.url
        main_video = lesson.link("video")
        assert main_video is not None
        assert main_video.url not in seen_videos, "two lessons share a video"
        seen_videos.add(main_video.url)


def test_part1_known_facts() -> None:
    part1 = get_curriculum(PART1)
    one = part1.lesson("1")
    assert one.link("video") == Link("video", "Lesson 1 video", "https://www.youtube.com/watch?v=8SF_h3xF3cE")
    chapter = one.link("chapter")
    assert chapter is not None and chapter.url.endswith("/01_intro.ipynb")
    notebook = one.link("notebook")
    assert notebook is not None
    assert notebook.url == (
        "https://www.kaggle.com/code/jhoward/is-it-a-bird-creating-a-model-from-your-own-data"
    )
    ethics = part1.lesson("8a")
    assert ethics.link("lesson").url == "https://course.fast.ai/Lessons/lesson8a.html"  # type: ignore[union-attr]
    assert ethics.link("chapter").url.endswith("/03_ethics.ipynb")  # type: ignore[union-attr]
    assert "Titanic" in part1.lesson("5").datasets


@pytest.mark.parametrize(
    ("cid", "key", "exercise"),
    [(PART1, "3", "digits"), (PART1, "8", "mnist1d"), (PART2, "18", "cifar10-94")],
)
def test_exercise_mappings(cid: str, key: str, exercise: str) -> None:
    assert get_curriculum(cid).lesson(key).exercise == exercise


def test_the_graded_lessons_are_these() -> None:
    graded = {
        (cid, lesson.key): lesson.exercise
        for cid in BUILTINS
        for lesson in get_curriculum(cid).lessons
        if lesson.exercise is not None
    }
    assert graded == {(PART1, "1"): "pets", (PART1, "2"): "deploy", (PART1, "3"): "digits", (PART1, "4"): "imdb", (PART1, "5"): "titanic", (PART1, "6"): "titanic-forest", (PART1, "7"): "movielens",
                      (PART1, "8"): "mnist1d", (PART2, "16"): "fashion-mnist", (PART2, "18"): "cifar10-94"}


def test_objects_are_frozen_and_hashable() -> None:
    lesson = get_curriculum(PART1).lesson("1")
    with pytest.raises(FrozenInstanceError):
        lesson.title = "changed"  # type: ignore[misc]
    assert isinstance(lesson.topics, tuple) and isinstance(lesson.links, tuple)
    assert hash(lesson) == hash(get_curriculum(PART1).lesson("1"))


def test_lesson_lookup_is_forgiving_about_case_and_spaces() -> None:
    part1 = get_curriculum(PART1)
    assert part1.lesson(" 8A ").key == "8a"


def test_link_missing_kind_returns_none_and_bad_kind_raises() -> None:
    ethics = get_curriculum(PART1).lesson("8a")
    assert ethics.link("competition") is None
    with pytest.raises(ValueError, match="slides"):
        ethics.link("slides")


# --------------------------------------------------------------------------- lookups


def test_unknown_lesson_lists_valid_keys() -> None:
    with pytest.raises(NotFound) as info:
        get_curriculum(PART1).lesson("99")
    message = str(info.value)
    assert "'99'" in message
    assert "1, 2, 3, 4, 5, 6, 7, 8, 8a" in message
    assert info.value.context["keys"][-1] == "8a"


def test_unknown_curriculum_lists_known_ids() -> None:
    with pytest.raises(NotFound) as info:
        get_curriculum("fastai-part3-2030")
    message = str(info.value)
    assert "fastai-part3-2030" in message
    assert PART1 in message and PART2 in message
    assert info.value.context["known"] == [PART1, PART2]


# --------------------------------------------------------------------------- organizer files


def test_organizer_file_loads_via_extra_dir(tmp_path: Path) -> None:
    write(tmp_path, VALID)
    (tmp_path / "notes.txt").write_text("not a curriculum")
    curricula = load_curricula(tmp_path)
    assert set(curricula) == {*BUILTINS, "my-course"}
    mine = get_curriculum("my-course", tmp_path)
    assert mine.url == "https://example.org/"
    assert [lesson.key for lesson in mine.lessons] == ["1", "2"]
    first = mine.lesson("1")
    assert first == Lesson(
        key="1",
        title="First",
        topics=("tensors",),
        links=(Link("lesson", "Lesson 1", "https://example.org/1"),),
        datasets=("MNIST",),
        exercise="digits",
    )
    second = mine.lesson("2")
    assert second.topics == () and second.datasets == () and second.exercise is None
    # The built-ins alone do not see it.
    assert "my-course" not in load_curricula()


def test_load_curricula_is_cached_per_dir(tmp_path: Path) -> None:
    write(tmp_path, VALID)
    first = load_curricula(tmp_path)
    assert load_curricula(tmp_path) == first
    assert load_curricula(str(tmp_path)) == first  # type: ignore[arg-type]
    assert get_curriculum("my-course", tmp_path) is first["my-course"]
    # Callers may not corrupt the cache by mutating the dict they get.
    first.clear()
    assert "my-course" in load_curricula(tmp_path)


def test_empty_exercise_means_none(tmp_path: Path) -> None:
    path = write(tmp_path, VALID.replace('exercise = "digits"', 'exercise = ""'))
    assert load_curriculum_file(path).lesson("1").exercise is None


def test_missing_extra_dir_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(CurriculumError, match="does not exist"):
        load_curricula(tmp_path / "nope")


def test_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(CurriculumError) as info:
        load_curriculum_file(tmp_path / "absent.toml")
    assert "absent.toml" in str(info.value)


# --------------------------------------------------------------------------- malformed files

MALFORMED = {
    "missing id": (VALID.replace('id = "my-course"\n', ""), "id", None),
    "missing title": (VALID.replace('title = "My course"\n', ""), "title", None),
    "missing lessons": (VALID.split("[[lessons]]")[0], "lessons", None),
    "duplicate lesson key": (VALID.replace('key = "2"', 'key = "1"'), "lessons[1].key", "1"),
    "bad link kind": (VALID.replace('kind = "video"', 'kind = "slides"'), "lessons[1].links[0].kind", "2"),
    "non-https url": (
        VALID.replace("https://example.org/2", "http://example.org/2"),
        "lessons[1].links[0].url",
        "2",
    ),
    "unknown top-level key": (VALID.replace('url = "https://example.org/"', 'homepage = "x"'), "homepage", None),
    "unknown lesson key": (VALID.replace('topics = ["tensors"]', 'topic = ["tensors"]'), "lessons[0].topic", "1"),
    "unknown link key": (
        VALID.replace('title = "Lesson 1"\n', 'title = "Lesson 1"\nlabel = "x"\n'),
        "lessons[0].links[0].label",
        "1",
    ),
    "lesson without links": (VALID.split("[[lessons.links]]")[0], "lessons[0].links", "1"),
    "lesson without key": (VALID.replace('key = "2"\n', ""), "lessons[1].key", None),
    "lesson without title": (VALID.replace('title = "Second"\n', ""), "lessons[1].title", "2"),
    "link without url": (VALID.replace('url = "https://example.org/2"\n', ""), "lessons[1].links[0].url", "2"),
    "integer key": (VALID.replace('key = "2"', "key = 2"), "lessons[1].key", None),
    "topics not a list": (VALID.replace('topics = ["tensors"]', 'topics = "tensors"'), "lessons[0].topics", "1"),
    "empty title": (VALID.replace('title = "Second"', 'title = "  "'), "lessons[1].title", "2"),
    "key with a space": (VALID.replace('key = "2"', 'key = "week 2"'), "lessons[1].key", "week 2"),
    "bad curriculum id": (VALID.replace('id = "my-course"', 'id = "My Course"'), "id", None),
    "no lessons": (VALID.split("[[lessons]]")[0] + "lessons = []\n", "lessons", None),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_file_names_file_and_field(tmp_path: Path, case: str) -> None:
    text, field, lesson = MALFORMED[case]
    path = write(tmp_path, text)
    with pytest.raises(CurriculumError) as info:
        load_curriculum_file(path)
    error = info.value
    message = str(error)
    assert str(path) in message
    assert field in message
    assert error.context["file"] == str(path)
    assert error.context["field"] == field
    if lesson is not None:
        assert f"lesson {lesson!r}" in message
        assert error.context["lesson"] == lesson
    # The same file in an extra dir fails load_curricula the same way.
    with pytest.raises(CurriculumError):
        load_curricula(tmp_path)


def test_unknown_keys_are_all_named(tmp_path: Path) -> None:
    path = write(tmp_path, 'homepage = "x"\nauthor = "y"\n' + VALID)
    with pytest.raises(CurriculumError) as info:
        load_curriculum_file(path)
    assert "author, homepage" in str(info.value)


def test_invalid_toml_syntax(tmp_path: Path) -> None:
    path = write(tmp_path, VALID.replace('title = "First"', 'title = "First'))
    with pytest.raises(CurriculumError) as info:
        load_curriculum_file(path)
    message = str(info.value)
    assert str(path) in message
    assert "TOML" in message and "line" in message
    assert info.value.context["file"] == str(path)


def test_duplicate_curriculum_id_with_builtin(tmp_path: Path) -> None:
    path = write(tmp_path, VALID.replace('id = "my-course"', f'id = "{PART1}"'))
    with pytest.raises(CurriculumError) as info:
        load_curricula(tmp_path)
    message = str(info.value)
    assert str(path) in message
    assert "id" in message and PART1 in message
    assert info.value.context["field"] == "id"
    assert info.value.context["other_file"].endswith(f"{PART1}.toml")


def test_duplicate_curriculum_id_between_organizer_files(tmp_path: Path) -> None:
    write(tmp_path, VALID, "a.toml")
    second = write(tmp_path, VALID, "b.toml")
    with pytest.raises(CurriculumError) as info:
        load_curricula(tmp_path)
    assert str(second) in str(info.value) and "my-course" in str(info.value)


def test_every_scheduled_exercise_has_a_folder_and_every_folder_is_scheduled() -> None:
    """The curriculum is the one source of which lesson has which exercise; exercises/<id>/ says how
    it is graded. The bot cannot import the grader, so the link is checked here, by the id alone."""
    exercises = Path(__file__).resolve().parents[1] / "exercises"
    folders = {spec.parent.name: tomllib.loads(spec.read_text())["id"] for spec in exercises.glob("*/spec.toml")}
    assert all(folder == spec_id for folder, spec_id in folders.items())
    scheduled = {lesson.exercise for cid in BUILTINS for lesson in get_curriculum(cid).lessons if lesson.exercise}
    assert scheduled == set(folders)
