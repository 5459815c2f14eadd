"""Multi-view tracks from verified pairwise matches (union-find over keypoints)."""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np


def build_tracks(num_keypoints: list[int], matches: Mapping[tuple[int, int], np.ndarray]) -> list[np.ndarray]:
    """Connected components of the match graph, as tracks.

    Args:
        num_keypoints: keypoints per view.
        matches: ``(i, j) -> [M,2]`` verified keypoint index pairs between views i and j.

    Returns:
        One ``[L,2]`` int64 array of (view, keypoint) per track, L >= 2, sorted by view.
        A component holding two keypoints of the same view is ambiguous (a repeated
        pattern or a wrong match) and is dropped, as COLMAP does.
    """
    offsets = np.concatenate([[0], np.cumsum(num_keypoints)]).astype(np.int64)
    parent = np.arange(offsets[-1], dtype=np.int64)

    def root(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for (i, j), pairs in matches.items():
        for a, b in zip(offsets[i] + pairs[:, 0], offsets[j] + pairs[:, 1]):
            ra, rb = root(int(a)), root(int(b))
            if ra != rb:
                parent[max(ra, rb)] = min(ra, rb)
    matched = np.unique(np.concatenate([np.concatenate([offsets[i] + p[:, 0], offsets[j] + p[:, 1]])
                                        for (i, j), p in matches.items()] or [np.zeros(0, np.int64)]))
    if matched.size == 0:
        return []
    roots = np.array([root(int(x)) for x in matched])
    views = np.searchsorted(offsets, matched, side="right") - 1
    order = np.lexsort((views, roots))
    roots, views, nodes = roots[order], views[order], matched[order]
    starts = np.flatnonzero(np.r_[True, roots[1:] != roots[:-1]])
    tracks = []
    for members_v, members_n in zip(np.split(views, starts[1:]), np.split(nodes, starts[1:])):
        if len(members_v) < 2 or np.any(members_v[1:] == members_v[:-1]):
            continue
        tracks.append(np.stack([members_v, members_n - offsets[members_v]], axis=1))
    return tracks
