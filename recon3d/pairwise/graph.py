"""Scene graphs: which ordered image pairs a two-view network (DUSt3R) is run on.

A graph string names the undirected edges between ``S`` views; ``make_pairs``
returns them as ordered pairs ``(i, j)``, and with ``symmetrize`` also ``(j, i)``,
because a pair's point maps are expressed in its first view's frame.
"""
from __future__ import annotations

import re

from recon3d.errors import InputError

__all__ = ["GRAPH_FORMS", "GRAPH_HELP", "check_scene_graph", "make_pairs"]

GRAPH_FORMS = ("complete", "swin-N", "swin-N-noncyclic", "logwin-N", "logwin-N-noncyclic", "oneref-ID")

GRAPH_HELP = (
    "Scene graph (which image pairs are compared): "
    "'complete' = every pair; "
    "'swin-N' = each view with the next N views, wrapping around (add '-noncyclic' to stop at the last view); "
    "'logwin-N' = each view with the views 1, 2, 4, ..., 2^(N-1) further on, wrapping around "
    "(add '-noncyclic' to stop at the last view); "
    "'oneref-ID' = every view with view ID (0-based)."
)

_PATTERN = re.compile(r"^(complete)$|^(swin|logwin)-(\d+)(-noncyclic)?$|^(oneref)-(\d+)$")


def check_scene_graph(scene_graph: str) -> str:
    """The normalised graph string, or an InputError when it is malformed (checked
    before any work; whether it fits the number of views is checked by `make_pairs`)."""
    normalised = scene_graph.strip().lower()
    match = _PATTERN.match(normalised)
    if match is None:
        raise _bad(scene_graph)
    if match.group(3) is not None and int(match.group(3)) < 1:
        raise _bad(scene_graph, "window size must be at least 1 in scene graph")
    return normalised


def _bad(scene_graph: str, why: str = "unknown scene graph") -> InputError:
    return InputError(f"{why} {scene_graph!r}; valid forms: {', '.join(GRAPH_FORMS)} (N >= 1, ID a view index)")


def _offset_edges(num_views: int, offsets: list[int], cyclic: bool) -> list[tuple[int, int]]:
    """Edges ``(i, i + k)`` for every view ``i`` and offset ``k`` (modulo ``S`` when cyclic)."""
    edges = []
    for i in range(num_views):
        for k in offsets:
            j = (i + k) % num_views if cyclic else i + k
            if j < num_views and j != i:
                edges.append((i, j))
    return edges


def _edges(num_views: int, scene_graph: str) -> list[tuple[int, int]]:
    match = _PATTERN.match(scene_graph)
    if match is None:
        raise _bad(scene_graph)
    if match.group(1):
        return [(i, j) for i in range(num_views) for j in range(i + 1, num_views)]
    if match.group(5):
        ref = int(match.group(6))
        if ref >= num_views:
            raise InputError(
                f"scene graph {scene_graph!r} names reference view {ref}, but there are only {num_views} views "
                f"(0..{num_views - 1}), which would leave them unconnected; valid forms: {', '.join(GRAPH_FORMS)}"
            )
        return [(ref, j) for j in range(num_views) if j != ref]
    kind, size, cyclic = match.group(2), int(match.group(3)), match.group(4) is None
    if size < 1:
        raise _bad(scene_graph, "window size must be at least 1 in scene graph")
    if kind == "swin":
        offsets = list(range(1, size + 1))
    else:
        offsets = [2**k for k in range(size)]
    return _offset_edges(num_views, offsets, cyclic)


def _check_connected(num_views: int, edges: list[tuple[int, int]], scene_graph: str) -> None:
    parent = list(range(num_views))

    def root(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for i, j in edges:
        parent[root(i)] = root(j)
    lonely = sorted({v for v in range(num_views) if root(v) != root(0)})
    if lonely:
        shown = ", ".join(map(str, lonely[:10])) + (", ..." if len(lonely) > 10 else "")
        raise InputError(
            f"scene graph {scene_graph!r} leaves view(s) {shown} of {num_views} unconnected; "
            f"valid forms: {', '.join(GRAPH_FORMS)}"
        )


def make_pairs(num_views: int, scene_graph: str = "complete", symmetrize: bool = True) -> list[tuple[int, int]]:
    """Ordered image pairs of a scene graph over views ``0 .. num_views - 1``.

    Args:
        num_views: number of views ``S`` (at least 2).
        scene_graph: ``complete``, ``swin-N``, ``swin-N-noncyclic``, ``logwin-N``,
            ``logwin-N-noncyclic`` or ``oneref-ID`` (see ``GRAPH_HELP``).
        symmetrize: also return ``(j, i)`` for every ``(i, j)``.

    Returns:
        Unique pairs ``(i, j)``, ``i != j``: each undirected edge once in the order the
        graph generates it, followed (when ``symmetrize``) by the reversed pairs in the
        same order.

    Raises:
        InputError: fewer than 2 views, a malformed graph string, or a graph that
            leaves some view unconnected from the others.
    """
    if num_views < 2:
        raise InputError(f"a scene graph needs at least 2 views, got {num_views}")
    scene_graph = scene_graph.strip().lower()
    seen: set[frozenset[int]] = set()
    pairs = []
    for i, j in _edges(num_views, scene_graph):
        key = frozenset((i, j))
        if key not in seen:
            seen.add(key)
            pairs.append((i, j))
    _check_connected(num_views, pairs, scene_graph)
    if symmetrize:
        pairs = pairs + [(j, i) for i, j in pairs]
    return pairs
