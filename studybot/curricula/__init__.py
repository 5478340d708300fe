"""Curricula as data: courses, their lessons and the links for each lesson.

A curriculum is a TOML file (see ``docs/curricula.md``). Two ship with studybot:
``fastai-part1-2022`` and ``fastai-part2-2022``. An organizer adds their own by
dropping ``*.toml`` files into a directory passed as ``extra_dir``.

Files only *link* to course material; they hold titles and short topic
keywords, never copied course prose.
"""

from __future__ import annotations

import functools
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from studybot.errors import CurriculumError, NotFound

__all__ = [
    "LINK_KINDS",
    "Curriculum",
    "Lesson",
    "Link",
    "get_curriculum",
    "load_curricula",
    "load_curriculum_file",
]

#: The kinds a link may have, in the order lesson posts list them.
LINK_KINDS: tuple[str, ...] = (
    "lesson",
    "video",
    "notebook",
    "chapter",
    "kaggle",
    "competition",
    "forum",
    "other",
)

BUILTIN_DIR = Path(__file__).resolve().parent

_ID_RE = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
_KEY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")

_CURRICULUM_KEYS = {"id": True, "title": True, "url": False, "lessons": True}
_LESSON_KEYS = {
    "key": True,
    "title": True,
    "topics": False,
    "datasets": False,
    "exercise": False,
    "links": True,
}
_LINK_KEYS = {"kind": True, "title": True, "url": True}


@dataclass(frozen=True)
class Link:
    """One link from a lesson to course material."""

    kind: str
    title: str
    url: str


@dataclass(frozen=True)
class Lesson:
    """One lesson: what users type (``key``), what it covers and where to find it."""

    key: str
    title: str
    topics: tuple[str, ...]
    links: tuple[Link, ...]
    datasets: tuple[str, ...]
    exercise: str | None

    def link(self, kind: str) -> Link | None:
        """The first link of ``kind``, or None when the lesson has none."""
        _check_kind(kind)
        return next((link for link in self.links if link.kind == kind), None)

    def links_of(self, kind: str) -> tuple[Link, ...]:
        """Every link of ``kind``, in file order."""
        _check_kind(kind)
        return tuple(link for link in self.links if link.kind == kind)


@dataclass(frozen=True)
class Curriculum:
    """A course: its lessons in posting order."""

    id: str
    title: str
    url: str
    lessons: tuple[Lesson, ...]

    def lesson(self, key: str) -> Lesson:
        """The lesson whose key is ``key`` (case and surrounding spaces ignored)."""
        wanted = str(key).strip().casefold()
        for lesson in self.lessons:
            if lesson.key.casefold() == wanted:
                return lesson
        keys = ", ".join(lesson.key for lesson in self.lessons)
        raise NotFound(
            f"{self.title} has no lesson {str(key).strip()!r}. Lessons: {keys}.",
            curriculum=self.id,
            key=key,
            keys=[lesson.key for lesson in self.lessons],
        )

    @property
    def keys(self) -> tuple[str, ...]:
        """The lesson keys in posting order."""
        return tuple(lesson.key for lesson in self.lessons)


def _check_kind(kind: str) -> None:
    if kind not in LINK_KINDS:
        raise ValueError(f"unknown link kind {kind!r}; expected one of {', '.join(LINK_KINDS)}")


# --------------------------------------------------------------------------- loading


class _Reader:
    """Validates one parsed file; every error names the file, the field and the lesson."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, field: str, problem: str, lesson: str | None = None) -> CurriculumError:
        where = f"lesson {lesson!r}: " if lesson is not None else ""
        return CurriculumError(
            f"{self.path}: {where}{field}: {problem}",
            file=str(self.path),
            field=field,
            lesson=lesson,
        )

    def table(
        self, data: Any, spec: dict[str, bool], prefix: str, lesson: str | None = None
    ) -> dict[str, Any]:
        where = prefix or "top level"
        if not isinstance(data, dict):
            raise self.fail(where, "must be a table", lesson)
        unknown = sorted(set(data) - set(spec))
        if unknown:
            allowed = ", ".join(sorted(spec))
            raise self.fail(
                _join(prefix, unknown[0]),
                f"unknown key{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} "
                f"(allowed: {allowed})",
                lesson,
            )
        for name, required in spec.items():
            if required and name not in data:
                raise self.fail(_join(prefix, name), "required field is missing", lesson)
        return data

    def text(self, value: Any, field: str, lesson: str | None = None) -> str:
        if not isinstance(value, str):
            raise self.fail(field, f"must be a string, not {_type_name(value)}", lesson)
        value = value.strip()
        if not value:
            raise self.fail(field, "must not be empty", lesson)
        return value

    def texts(self, value: Any, field: str, lesson: str | None) -> tuple[str, ...]:
        if not isinstance(value, list):
            raise self.fail(field, f"must be a list of strings, not {_type_name(value)}", lesson)
        return tuple(self.text(item, f"{field}[{i}]", lesson) for i, item in enumerate(value))

    def url(self, value: Any, field: str, lesson: str | None = None) -> str:
        url = self.text(value, field, lesson)
        if not url.startswith("https://") or len(url) == len("https://") or any(
            c.isspace() for c in url
        ):
            raise self.fail(field, f"must be an https:// URL, not {url!r}", lesson)
        return url

    def curriculum(self, data: dict[str, Any]) -> Curriculum:
        self.table(data, _CURRICULUM_KEYS, "")
        cid = self.text(data["id"], "id")
        if not _ID_RE.match(cid):
            raise self.fail(
                "id", f"{cid!r} must be lowercase letters, digits, '.', '_' or '-'"
            )
        title = self.text(data["title"], "title")
        url = self.url(data["url"], "url") if "url" in data else ""
        raw_lessons = data["lessons"]
        if not isinstance(raw_lessons, list) or not raw_lessons:
            raise self.fail("lessons", "must be a non-empty array of [[lessons]] tables")
        lessons: list[Lesson] = []
        seen: dict[str, int] = {}
        for index, raw in enumerate(raw_lessons):
            lesson = self.lesson(raw, index)
            folded = lesson.key.casefold()
            if folded in seen:
                raise self.fail(
                    f"lessons[{index}].key",
                    f"duplicate lesson key {lesson.key!r} (also lessons[{seen[folded]}])",
                    lesson.key,
                )
            seen[folded] = index
            lessons.append(lesson)
        return Curriculum(id=cid, title=title, url=url, lessons=tuple(lessons))

    def lesson(self, raw: Any, index: int) -> Lesson:
        prefix = f"lessons[{index}]"
        # Read the key first so later errors can name the lesson.
        key: str | None = None
        if isinstance(raw, dict) and "key" in raw:
            key = self.text(raw["key"], f"{prefix}.key")
            if not _KEY_RE.match(key):
                raise self.fail(
                    f"{prefix}.key", "must be letters, digits, '.', '_' or '-' (no spaces)", key
                )
        self.table(raw, _LESSON_KEYS, prefix, key)
        assert key is not None  # table() checked that it is present
        title = self.text(raw["title"], f"{prefix}.title", key)
        topics = self.texts(raw.get("topics", []), f"{prefix}.topics", key)
        datasets = self.texts(raw.get("datasets", []), f"{prefix}.datasets", key)
        exercise: str | None = None
        if "exercise" in raw:
            if not isinstance(raw["exercise"], str):
                raise self.fail(
                    f"{prefix}.exercise",
                    f"must be a string, not {_type_name(raw['exercise'])}",
                    key,
                )
            exercise = raw["exercise"].strip() or None
        raw_links = raw["links"]
        if not isinstance(raw_links, list) or not raw_links:
            raise self.fail(f"{prefix}.links", "needs at least one [[lessons.links]] table", key)
        links = tuple(
            self.link(item, f"{prefix}.links[{i}]", key) for i, item in enumerate(raw_links)
        )
        return Lesson(
            key=key, title=title, topics=topics, links=links, datasets=datasets, exercise=exercise
        )

    def link(self, raw: Any, prefix: str, lesson: str) -> Link:
        self.table(raw, _LINK_KEYS, prefix, lesson)
        kind = self.text(raw["kind"], f"{prefix}.kind", lesson)
        if kind not in LINK_KINDS:
            raise self.fail(
                f"{prefix}.kind",
                f"{kind!r} is not one of {', '.join(LINK_KINDS)}",
                lesson,
            )
        title = self.text(raw["title"], f"{prefix}.title", lesson)
        url = self.url(raw["url"], f"{prefix}.url", lesson)
        return Link(kind=kind, title=title, url=url)


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _type_name(value: Any) -> str:
    return {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        list: "an array",
        dict: "a table",
    }.get(type(value), type(value).__name__)


def load_curriculum_file(path: Path) -> Curriculum:
    """Read and validate one curriculum file.

    Raises CurriculumError naming the file and the bad or missing field (and the
    lesson key when the problem is inside a lesson).
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise CurriculumError(
            f"{path}: cannot read file: {exc.strerror or exc}", file=str(path), field=None
        ) from exc
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise CurriculumError(
            f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})",
            file=str(path),
            field=None,
        ) from exc
    except tomllib.TOMLDecodeError as exc:
        raise CurriculumError(
            f"{path}: invalid TOML syntax: {exc}", file=str(path), field=None
        ) from exc
    return _Reader(path).curriculum(data)


def _builtin_files() -> list[Path]:
    return sorted(BUILTIN_DIR.glob("*.toml"))


@functools.lru_cache(maxsize=32)
def _load_all(extra_dir: Path | None) -> dict[str, tuple[Curriculum, Path]]:
    files = _builtin_files()
    if extra_dir is not None:
        if not extra_dir.is_dir():
            raise CurriculumError(
                f"{extra_dir}: curriculum directory does not exist",
                file=str(extra_dir),
                field=None,
            )
        files += sorted(p for p in extra_dir.glob("*.toml") if p.is_file())
    found: dict[str, tuple[Curriculum, Path]] = {}
    for path in files:
        curriculum = load_curriculum_file(path)
        if curriculum.id in found:
            other = found[curriculum.id][1]
            raise CurriculumError(
                f"{path}: id: duplicate curriculum id {curriculum.id!r} (already defined in {other})",
                file=str(path),
                field="id",
                other_file=str(other),
            )
        found[curriculum.id] = (curriculum, path)
    return found


def _normalise(extra_dir: Path | str | None) -> Path | None:
    return None if extra_dir is None else Path(extra_dir).expanduser().resolve()


def load_curricula(extra_dir: Path | None = None) -> dict[str, Curriculum]:
    """The built-in curricula plus every ``*.toml`` in ``extra_dir``, keyed by id.

    Results are cached per directory; call ``load_curricula.cache_clear()`` after
    editing files in a running process.
    """
    return {cid: pair[0] for cid, pair in _load_all(_normalise(extra_dir)).items()}


load_curricula.cache_clear = _load_all.cache_clear  # type: ignore[attr-defined]


def get_curriculum(curriculum_id: str, extra_dir: Path | None = None) -> Curriculum:
    """The curriculum with this id; NotFound (listing the known ids) otherwise."""
    curricula = load_curricula(extra_dir)
    wanted = str(curriculum_id).strip()
    try:
        return curricula[wanted]
    except KeyError:
        known = sorted(curricula)
        raise NotFound(
            f"Unknown curriculum {wanted!r}. Known curricula: {', '.join(known)}.",
            curriculum=wanted,
            known=known,
        ) from None
