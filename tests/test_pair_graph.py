"""Scene graphs for pairwise inference: hand-computed pair sets and error messages."""
from __future__ import annotations

import pytest

from recon3d.errors import InputError
from recon3d.pairwise.graph import GRAPH_HELP, check_scene_graph, make_pairs


def undirected(pairs: list[tuple[int, int]]) -> set[frozenset[int]]:
    return {frozenset(p) for p in pairs}


def both_ways(edges: set[tuple[int, int]]) -> set[tuple[int, int]]:
    return edges | {(j, i) for i, j in edges}


def test_complete_four_views_gives_twelve_ordered_pairs():
    pairs = make_pairs(4, "complete")
    assert len(pairs) == 12 == len(set(pairs))
    assert set(pairs) == {(i, j) for i in range(4) for j in range(4) if i != j}
    assert make_pairs(4, "complete", symmetrize=False) == [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)]


def test_swin_cyclic_and_noncyclic_on_five_views():
    # swin-1: a ring vs a chain.
    assert set(make_pairs(5, "swin-1")) == both_ways({(0, 1), (1, 2), (2, 3), (3, 4), (4, 0)})
    assert set(make_pairs(5, "swin-1-noncyclic")) == both_ways({(0, 1), (1, 2), (2, 3), (3, 4)})
    # swin-2 on 5 views wraps around to every pair (3-0, 3-... 4-0, 4-1 close the gaps).
    cyclic = make_pairs(5, "swin-2")
    assert len(cyclic) == 20 and set(cyclic) == set(make_pairs(5, "complete"))
    noncyclic = make_pairs(5, "swin-2-noncyclic")
    expected = {(0, 1), (0, 2), (1, 2), (1, 3), (2, 3), (2, 4), (3, 4)}
    assert len(noncyclic) == 14 and set(noncyclic) == both_ways(expected)
    in_order = [(0, 1), (0, 2), (1, 2), (1, 3), (2, 3), (2, 4), (3, 4)]
    assert make_pairs(5, "swin-2-noncyclic", symmetrize=False) == in_order


def test_swin_wider_than_the_ring_deduplicates():
    pairs = make_pairs(4, "swin-3", symmetrize=False)  # (0,3) and (3,0) are the same edge
    assert len(pairs) == 6 and undirected(pairs) == undirected(make_pairs(4, "complete"))


def test_logwin_offsets_are_powers_of_two():
    # 8 views, offsets 1, 2, 4.
    cyclic = make_pairs(8, "logwin-3", symmetrize=False)
    expected = {frozenset((i, (i + k) % 8)) for i in range(8) for k in (1, 2, 4)}
    assert len(expected) == 20  # offset 4 pairs each edge twice (0-4 and 4-0)
    assert len(cyclic) == 20 and undirected(cyclic) == expected
    noncyclic = make_pairs(8, "logwin-3-noncyclic", symmetrize=False)
    assert undirected(noncyclic) == {frozenset((i, i + k)) for i in range(8) for k in (1, 2, 4) if i + k < 8}
    assert len(noncyclic) == 7 + 6 + 4
    assert set(make_pairs(5, "logwin-2-noncyclic")) == both_ways(
        {(0, 1), (1, 2), (2, 3), (3, 4), (0, 2), (1, 3), (2, 4)}
    )


def test_oneref():
    assert make_pairs(4, "oneref-2", symmetrize=False) == [(2, 0), (2, 1), (2, 3)]
    assert set(make_pairs(4, "oneref-2")) == both_ways({(2, 0), (2, 1), (2, 3)})
    assert len(make_pairs(4, "oneref-0")) == 6


def test_two_views_and_case_and_spaces():
    assert make_pairs(2, "complete") == [(0, 1), (1, 0)]
    assert make_pairs(2, "swin-1") == [(0, 1), (1, 0)]
    assert make_pairs(3, " Complete ") == make_pairs(3, "complete")


BAD_GRAPHS = [
    "", "full", "swin", "swin-", "swin-0", "swin-x", "logwin-2-cyclic", "oneref", "oneref--1", "complete-3",
    "swin-2-noncyclic-noncyclic",
]


@pytest.mark.parametrize("bad", BAD_GRAPHS)
def test_bad_graph_strings_name_the_string_and_the_valid_forms(bad):
    with pytest.raises(InputError) as err:
        make_pairs(5, bad)
    message = str(err.value)
    assert "\n" not in message and repr(bad.strip().lower()) in message
    for form in ("complete", "swin-N", "logwin-N", "oneref-ID", "noncyclic"):
        assert form in message


def test_too_few_views_and_unconnected_views():
    for n in (0, 1):
        with pytest.raises(InputError, match="at least 2 views"):
            make_pairs(n, "complete")
    with pytest.raises(InputError, match=r"oneref-5.*unconnected"):
        make_pairs(5, "oneref-5")
    with pytest.raises(InputError, match="oneref-9"):
        make_pairs(3, "oneref-9")


def test_syntax_check_before_the_number_of_views_is_known():
    assert check_scene_graph(" Swin-3-NonCyclic ") == "swin-3-noncyclic"
    assert check_scene_graph("oneref-40") == "oneref-40"  # fits or not once the views are counted
    for bad in ("ring-4", "swin-0", "swin", "logwin-2-cyclic", ""):
        with pytest.raises(InputError, match="valid forms"):
            check_scene_graph(bad)


def test_help_lists_every_form():
    for form in ("complete", "swin-N", "noncyclic", "logwin-N", "oneref-ID"):
        assert form in GRAPH_HELP
