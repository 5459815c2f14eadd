"""Frame curation for videos and photo bursts: drop blurred and near-duplicate frames.

A frame is scored on a small grey copy of itself: its sharpness is the variance of the
discrete Laplacian (motion and focus blur remove the high frequencies it measures), and
a 64 px thumbnail is kept to compare it with its neighbours. Blur is judged relative to
the frames around it, not by an absolute threshold, because the Laplacian's variance
also depends on how much texture the scene has.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

SELECT_MODES: tuple[str, ...] = ("all", "sharp")
"""``all`` keeps every frame; ``sharp`` drops blurred and near-duplicate ones."""

SCORE_SIDE = 480
"""Long side, in pixels, of the grey copy on which sharpness is measured."""

THUMB_SIDE = 64
"""Long side, in pixels, of the thumbnail compared between frames."""

BLUR_RATIO = 0.4
"""A frame is blurred when its sharpness is below this fraction of the median
sharpness of the ``BLUR_WINDOW`` frames centred on it."""

BLUR_WINDOW = 9

DUPLICATE_DIFFERENCE = 1.5
"""A frame is a near-duplicate when its thumbnail differs from the previous kept frame's
by less than this mean absolute grey level (0..255)."""

SHARPER = 1.1
"""A near-duplicate replaces the kept frame only when this many times sharper (lossy
video coding alone changes the sharpness of identical frames by a few per cent)."""


@dataclass
class FrameScore:
    """What frame selection needs to know of one frame."""

    sharpness: float
    thumbnail: np.ndarray  # [h, w] float32 grey levels 0..255


def _grey(image: Image.Image, long_side: int) -> np.ndarray:
    scale = min(1.0, long_side / max(image.size))
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return np.asarray(image.convert("L").resize(size, Image.Resampling.BILINEAR), dtype=np.float32)


def laplacian_variance(grey: np.ndarray) -> float:
    """Variance of the 4-neighbour Laplacian of ``grey [H, W]`` over its interior pixels."""
    if min(grey.shape) < 3:
        return 0.0
    lap = (grey[1:-1, :-2] + grey[1:-1, 2:] + grey[:-2, 1:-1] + grey[2:, 1:-1]) - 4.0 * grey[1:-1, 1:-1]
    return float(lap.var())


def score_frame(image: Image.Image) -> FrameScore:
    """Sharpness (at ``SCORE_SIDE``) and thumbnail (at ``THUMB_SIDE``) of one frame."""
    return FrameScore(laplacian_variance(_grey(image, SCORE_SIDE)), _grey(image, THUMB_SIDE))


def curate(scores: list[FrameScore]) -> tuple[list[int], dict[int, str]]:
    """Decide which frames of a sequence to keep.

    Blurred frames go first (sharpness below ``BLUR_RATIO`` times the local median);
    then, walking the sharp frames in order, a frame whose thumbnail is within
    ``DUPLICATE_DIFFERENCE`` of the previous kept frame is a near-duplicate. The first
    sharp frame is always kept, so a sequence never loses every frame.

    Args:
        scores: one per frame, in sequence order.

    Returns:
        The kept frame positions (ascending) and, for each dropped position, the reason.
    """
    sharpness = np.array([s.sharpness for s in scores], dtype=np.float64)
    dropped: dict[int, str] = {}
    half = BLUR_WINDOW // 2
    for i, value in enumerate(sharpness):
        local = float(np.median(sharpness[max(0, i - half): i + half + 1]))
        if value < BLUR_RATIO * local:
            dropped[i] = f"blurred (sharpness {value:.0f}, {value / local:.0%} of its neighbours')"
    kept: list[int] = []
    for i, score in enumerate(scores):
        if i in dropped:
            continue
        if kept and score.thumbnail.shape == scores[kept[-1]].thumbnail.shape:
            difference = float(np.abs(score.thumbnail - scores[kept[-1]].thumbnail).mean())
            if difference < DUPLICATE_DIFFERENCE:
                # Of two near-duplicates keep the clearly sharper one, else the earlier.
                loser = kept[-1] if score.sharpness > SHARPER * scores[kept[-1]].sharpness else i
                if loser != i:
                    kept[-1] = i
                dropped[loser] = f"near-duplicate of a neighbouring frame (difference {difference:.2f})"
                continue
        kept.append(i)
    return kept, dropped


def evenly_spaced(count: int, k: int) -> list[int]:
    """``min(k, count)`` distinct indices into ``range(count)``, evenly spaced, first and last
    included (positions ``linspace(0, count-1, k)`` rounded half up)."""
    k = min(k, count)
    if k == 1:
        return [0]
    # Half-up rounding keeps indices distinct when the spacing is exactly 1 (k == count).
    return [int(math.floor(x + 0.5)) for x in np.linspace(0, count - 1, k)]


def sharpest_per_slot(slots: list[int], sharpness: list[float]) -> list[int]:
    """Per slot (e.g. a 1/fps time window), the position of its sharpest frame.

    Args:
        slots: slot number of each candidate frame, non-decreasing.
        sharpness: sharpness of each candidate frame.

    Returns:
        Positions into the candidate list, one per distinct slot, in order.
    """
    best: dict[int, int] = {}
    for position, slot in enumerate(slots):
        if slot not in best or sharpness[position] > sharpness[best[slot]]:
            best[slot] = position
    return [best[slot] for slot in sorted(best)]
