"""The digest's picture: submissions and passes per week, and the completion funnel across lessons.

Drawn with Pillow's ImageDraw, not matplotlib: matplotlib needs numpy, and the bot never imports numpy
(pyproject's import-linter contract; numpy and matplotlib are the grader extra's). Pillow is a bot
dependency of its own: a plain wheel, no numpy, and its default font (FreeType, bundled) labels the axes.
Two bar charts side by side, deterministic for the same numbers (the tests open the PNG and read it)."""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import Sequence

from PIL import Image, ImageDraw, ImageFont

# The picture, in pixels.
WIDTH, HEIGHT = 1200, 520
MARGIN_TOP, MARGIN_BOTTOM, MARGIN_SIDE = 80, 70, 60
PANEL_GAP = 90
FONT_SIZE, TITLE_SIZE = 15, 20
MAX_TICKS = 6  # y-axis labels per panel, at most

# Colours (RGB). The tests look for the bar colours: change them together.
BACKGROUND = (255, 255, 255)
INK = (33, 37, 41)
GRID = (222, 226, 230)
SUBMITTED = (69, 123, 157)  # blue: submissions (per week), members who submitted (funnel)
PASSED = (42, 157, 95)  # green: passes (per week), members who passed (funnel)
MEMBERS = (230, 57, 70)  # red: the cohort's size, the funnel's ceiling


@dataclass(frozen=True)
class WeekBar:
    label: str  # "05 Jan": the week's first day
    submissions: int
    passes: int


@dataclass(frozen=True)
class FunnelBar:
    label: str  # the lesson key
    submitted: int  # members who submitted its exercise
    passed: int  # members who passed it


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # a Pillow without FreeType: the fixed bitmap font, unscaled
        return ImageFont.load_default()


def nice_step(top: float, max_ticks: int = MAX_TICKS) -> int:
    """A tick step of 1, 2 or 5 times a power of ten that labels 0..top in at most ``max_ticks`` steps."""
    if top <= 0:
        return 1
    raw = top / max_ticks
    power = 10 ** math.floor(math.log10(raw)) if raw >= 1 else 1
    for factor in (1, 2, 5, 10):
        if factor * power >= raw:
            return max(1, int(factor * power))
    return int(10 * power)


class _Panel:
    def __init__(self, draw: ImageDraw.ImageDraw, box: tuple[int, int, int, int], top_value: int, title: str,
                 font, title_font) -> None:
        self.draw, self.font = draw, font
        self.left, self.top, self.right, self.bottom = box
        self.step = nice_step(top_value)
        self.ceiling = max(self.step, math.ceil(top_value / self.step) * self.step)
        draw.text((self.left, self.top - 34), title, fill=INK, font=title_font)
        for value in range(0, self.ceiling + 1, self.step):
            y = self.y(value)
            draw.line((self.left, y, self.right, y), fill=GRID, width=1)
            draw.text((self.left - 8, y), str(value), fill=INK, font=font, anchor="rm")
        draw.line((self.left, self.top, self.left, self.bottom), fill=INK, width=1)
        draw.line((self.left, self.bottom, self.right, self.bottom), fill=INK, width=1)

    def y(self, value: float) -> float:
        return self.bottom - (self.bottom - self.top) * value / self.ceiling

    def bars(self, groups: Sequence[tuple[str, Sequence[tuple[int, tuple[int, int, int]]]]]) -> None:
        """Groups of bars side by side, one label under each group."""
        if not groups:
            self.draw.text(((self.left + self.right) / 2, (self.top + self.bottom) / 2), "nothing yet",
                           fill=INK, font=self.font, anchor="mm")
            return
        slot = (self.right - self.left) / len(groups)
        per_group = max(len(bars) for _, bars in groups)
        bar_width = max(2.0, min(40.0, slot * 0.8 / per_group))
        every = max(1, math.ceil(len(groups) * 60 / (self.right - self.left)))  # labels at least 60 px apart
        for i, (label, bars) in enumerate(groups):
            start = self.left + slot * i + (slot - bar_width * len(bars)) / 2
            for j, (value, colour) in enumerate(bars):
                x0 = start + j * bar_width
                if value > 0:
                    self.draw.rectangle((x0 + 1, self.y(value), x0 + bar_width - 1, self.bottom - 1), fill=colour)
            if i % every == 0:
                self.draw.text((self.left + slot * (i + 0.5), self.bottom + 8), label, fill=INK, font=self.font,
                               anchor="mt")

    def level(self, value: int, colour: tuple[int, int, int], label: str) -> None:
        """A dashed horizontal line at ``value``, labelled at its right end."""
        y = self.y(value)
        for x in range(self.left, self.right, 12):
            self.draw.line((x, y, min(x + 6, self.right), y), fill=colour, width=2)
        self.draw.text((self.right, y - 4), label, fill=colour, font=self.font, anchor="rb")


def _legend(draw: ImageDraw.ImageDraw, x: int, y: int, items: Sequence[tuple[str, tuple[int, int, int]]], font) -> None:
    for label, colour in items:
        draw.rectangle((x, y - 6, x + 12, y + 6), fill=colour)
        draw.text((x + 18, y), label, fill=INK, font=font, anchor="lm")
        x += 30 + int(draw.textlength(label, font=font))


def digest_png(title: str, weeks: Sequence[WeekBar], funnel: Sequence[FunnelBar], members: int) -> bytes:
    """The picture as PNG bytes: per week (left) and the funnel across lessons (right)."""
    image = Image.new("RGB", (WIDTH, HEIGHT), BACKGROUND)
    draw = ImageDraw.Draw(image)
    font, title_font = _font(FONT_SIZE), _font(TITLE_SIZE)
    draw.text((MARGIN_SIDE, 14), title, fill=INK, font=title_font)
    half = (WIDTH - 2 * MARGIN_SIDE - PANEL_GAP) // 2
    top, bottom = MARGIN_TOP + 20, HEIGHT - MARGIN_BOTTOM
    left_box = (MARGIN_SIDE, top, MARGIN_SIDE + half, bottom)
    right_box = (MARGIN_SIDE + half + PANEL_GAP, top, WIDTH - MARGIN_SIDE, bottom)

    weekly_top = max([w.submissions for w in weeks] + [w.passes for w in weeks] + [1])
    per_week = _Panel(draw, left_box, weekly_top, "Submissions and passes per week", font, font)
    per_week.bars([(w.label, ((w.submissions, SUBMITTED), (w.passes, PASSED))) for w in weeks])

    funnel_top = max([members] + [f.submitted for f in funnel] + [1])
    completion = _Panel(draw, right_box, funnel_top, "Members who submitted and passed, per lesson", font, font)
    completion.bars([(f"L{f.label}", ((f.submitted, SUBMITTED), (f.passed, PASSED))) for f in funnel])
    if members:
        completion.level(members, MEMBERS, f"{members} members")
    _legend(draw, MARGIN_SIDE, HEIGHT - 22, (("submitted", SUBMITTED), ("passed", PASSED), ("members", MEMBERS)),
            font)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()
