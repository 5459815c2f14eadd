"""SIFT keypoints on the original photos, descriptor matching and geometric verification.

Keypoints are in original-image pixels with the continuous convention (the upper-left
pixel's centre at (0.5, 0.5)), which is what COLMAP's SIFT returns and what
``Prediction.to_original`` maps model pixels into.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import PIL.Image
import torch

from recon3d.devices import available_cores
from recon3d.refine.sift import detect_all

# Photos whose (detection-size) long side is below this get SIFT's upsampled first octave.
UPSAMPLE_BELOW_PX = 1000


@dataclass
class ViewFeatures:
    """keypoints ``[N,2]`` float64 original pixels; descriptors ``[N,128]`` float32, unit
    length, largest-scale keypoints first."""

    keypoints: np.ndarray
    descriptors: torch.Tensor

    def __len__(self) -> int:
        return int(self.keypoints.shape[0])


def extract_features(images: Sequence[PIL.Image.Image], max_features: int = 4096, max_image_size: int = 1600,
                     peak_threshold: float = 0.001, workers: int | None = None,
                     on_image: Callable[[int], None] | None = None) -> list[ViewFeatures]:
    """SIFT (COLMAP's CPU implementation, RootSIFT-normalised) on each image's grey levels.

    ``peak_threshold`` is about a seventh of COLMAP's default (0.0067): low-contrast surfaces
    (smooth walls, rendered textures) then still give keypoints; ``max_features`` keeps
    the count bounded on busy photos.

    Images larger than ``max_image_size`` on their long side are shrunk for detection;
    keypoints are scaled back to the original pixels. ``workers`` processes share the
    images (None: one per CPU core available, at most 8; 1: in this process, as also
    when processes cannot be started). ``on_image`` hears the number of images done
    after each one.
    """
    workers = _worker_count(workers, len(images))
    features: list[ViewFeatures] = []
    # A chunk of images at a time: a thousand grey photos would otherwise sit in memory
    # (and in the workers' input files) at once.
    chunk = 32 * workers
    for first in range(0, len(images), chunk):
        part = images[first:first + chunk]
        greys, octaves = [], []
        for image in part:
            grey = image.convert("L")
            factor = min(1.0, max_image_size / max(grey.size))
            if factor < 1.0:
                grey = grey.resize((max(1, round(grey.width * factor)), max(1, round(grey.height * factor))),
                                   PIL.Image.Resampling.LANCZOS)
            greys.append(np.asarray(grey))
            # COLMAP's upsampled first octave finds the small keypoints a small photo needs;
            # on a large one it costs 5x the time for keypoints that `detect`'s scale cut drops.
            octaves.append(-1 if max(grey.size) < UPSAMPLE_BELOW_PX else 0)
        progress = None if on_image is None else (lambda done, offset=first: on_image(offset + done))
        detected = detect_all(greys, octaves, max_features, peak_threshold, _worker_count(workers, len(part)),
                              progress)
        for image, grey, (xy, desc) in zip(part, greys, detected):
            xy = xy * np.array([image.width / grey.shape[1], image.height / grey.shape[0]])
            features.append(ViewFeatures(xy, torch.nn.functional.normalize(torch.from_numpy(desc), dim=1)))
    return features


def _worker_count(workers: int | None, num_images: int) -> int:
    if workers is None:
        workers = available_cores()
    # Starting a worker costs about a third of a second: not worth it for a few images.
    return max(1, min(workers, num_images // 2))


def match_descriptors(desc_a: torch.Tensor, desc_b: torch.Tensor, ratio: float = 0.8, block: int = 512) -> np.ndarray:
    """Mutual nearest neighbours passing Lowe's ratio test in both directions.

    Args:
        desc_a, desc_b: ``[Na,D]``, ``[Nb,D]`` unit-length descriptors.
        ratio: largest allowed distance ratio of the best to the second-best match.
        block: rows of the similarity matrix built at a time.

    Returns:
        ``[M,2]`` int64 index pairs (into a, into b).
    """
    if len(desc_a) < 2 or len(desc_b) < 2:
        return np.zeros((0, 2), dtype=np.int64)
    # Each direction's best two, from the similarity built a block of rows at a time and
    # reduced along rows: for 3,072 x 3,072 keypoints 1.5x faster than one whole matrix
    # reduced along rows and then (transposed) along columns, which stays out of cache.
    top_ab, index_ab = _best_two(desc_a, desc_b, block)
    top_ba, index_ba = _best_two(desc_b, desc_a, block)
    # For unit vectors |a-b|^2 = 2 - 2 a.b.
    dist_ab = (2 - 2 * top_ab).clamp_min(0).sqrt()
    dist_ba = (2 - 2 * top_ba).clamp_min(0).sqrt()
    best_b = index_ab[:, 0]
    a_index = torch.arange(len(desc_a))
    mutual = index_ba[best_b, 0] == a_index
    passes = (dist_ab[:, 0] < ratio * dist_ab[:, 1]) & (dist_ba[best_b, 0] < ratio * dist_ba[best_b, 1])
    keep = mutual & passes
    return torch.stack([a_index[keep], best_b[keep]], dim=1).numpy().astype(np.int64)


def _best_two(queries: torch.Tensor, keys: torch.Tensor, block: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Similarities ``[N,2]`` and indices ``[N,2]`` of each query's two most similar keys."""
    values = torch.empty(len(queries), 2, dtype=queries.dtype)
    indices = torch.empty(len(queries), 2, dtype=torch.long)
    for start in range(0, len(queries), block):
        top = (queries[start:start + block] @ keys.T).topk(2, dim=1)
        values[start:start + block], indices[start:start + block] = top.values, top.indices
    return values, indices


def ransac_options(max_error_px: float, seed: int, min_trials: int = 1000, max_trials: int | None = None):
    """pycolmap's RANSAC settings with an inlier threshold in pixels, a fixed seed
    (repeatable runs), at least ``min_trials`` hypotheses (COLMAP's default 1,000) and at
    most ``max_trials`` (None: COLMAP's 100,000; a cap also caps ``min_trials``)."""
    import pycolmap

    options = pycolmap.RANSACOptions()
    options.max_error = max_error_px
    options.random_seed = seed
    options.min_num_trials = min_trials
    if max_trials is not None:
        options.max_num_trials = max_trials
        options.min_num_trials = min(min_trials, max_trials)
    return options


def verify_matches(xy_a: np.ndarray, xy_b: np.ndarray, matches: np.ndarray, max_error_px: float = 4.0,
                   min_inliers: int = 15, seed: int = 0) -> np.ndarray:
    """Matches consistent with one fundamental matrix (LO-RANSAC); empty when fewer than ``min_inliers``."""
    import pycolmap

    if len(matches) < max(8, min_inliers):
        return matches[:0]
    result = pycolmap.estimate_fundamental_matrix(xy_a[matches[:, 0]], xy_b[matches[:, 1]],
                                                  ransac_options(max_error_px, seed))
    if result is None:
        return matches[:0]
    inliers = np.asarray(result["inlier_mask"], dtype=bool)
    return matches[inliers] if inliers.sum() >= min_inliers else matches[:0]


def retrieve_pairs(features: Sequence[ViewFeatures], per_view: int = 8, coarse: int = 512,
                   ratio: float = 0.8) -> list[tuple[int, int]]:
    """Pairs worth matching, chosen by a cheap matching of each view's ``coarse``
    largest-scale keypoints against every other view's.

    Each view keeps its ``per_view`` best partners (most coarse matches); a pair is
    matched in full when either view chose it.
    """
    num_views = len(features)
    score = np.zeros((num_views, num_views))
    for i in range(num_views):
        for j in range(i + 1, num_views):
            score[i, j] = score[j, i] = len(match_descriptors(features[i].descriptors[:coarse],
                                                              features[j].descriptors[:coarse], ratio))
    np.fill_diagonal(score, -1.0)
    pairs = set()
    for i in range(num_views):
        for j in np.argsort(-score[i], kind="stable")[:per_view]:
            pairs.add((min(i, int(j)), max(i, int(j))))
    return sorted(pairs)


def select_pairs(extrinsics_w2c: np.ndarray, points: np.ndarray, intrinsics: np.ndarray, image_hw: tuple[int, int],
                 neighbours: int = 8, sequential: int = 3) -> list[tuple[int, int]]:
    """Pairs of views to match for long sequences, near-linear in the views.

    Each view is paired with the ``neighbours`` views that see most of its predicted
    points (projected through the predicted cameras) and with its ``sequential``
    successors in input order (videos, and a fallback when the predicted cameras are poor).

    Args:
        extrinsics_w2c: ``[S,4,4]`` predicted cameras; points ``[S,h,w,3]`` a coarse grid
            of each view's predicted world points; intrinsics ``[S,3,3]`` model pixels;
            image_hw: model image size.
    """
    num_views = len(extrinsics_w2c)
    height, width = image_hw
    overlap = np.zeros((num_views, num_views))
    flat = points.reshape(num_views, -1, 3).astype(np.float64)
    for j in range(num_views):
        cam = flat @ extrinsics_w2c[j, :3, :3].T.astype(np.float64) + extrinsics_w2c[j, :3, 3]
        with np.errstate(divide="ignore", invalid="ignore"):
            pix = cam @ intrinsics[j].T.astype(np.float64)
            u, v = pix[..., 0] / pix[..., 2], pix[..., 1] / pix[..., 2]
            inside = (cam[..., 2] > 0) & (u >= 0) & (u < width) & (v >= 0) & (v < height)
        overlap[:, j] = inside.mean(axis=1)
    # Views with the same predicted centre (a collapsed prediction) cannot be told
    # apart by overlap; sequential pairs still connect them.
    np.fill_diagonal(overlap, -1.0)
    pairs = set()
    for i in range(num_views):
        for j in np.argsort(-(overlap[i] + overlap[:, i]))[:neighbours]:
            pairs.add((min(i, int(j)), max(i, int(j))))
        for j in range(i + 1, min(num_views, i + 1 + sequential)):
            pairs.add((i, j))
    return sorted(pairs)
