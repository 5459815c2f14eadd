"""Token merging in global attention: exactness when off, plan invariants against brute force."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from recon3d.networks.token_merging import MergeConfig, parse_merge_option, plan_merge
from recon3d.networks.vggt import VGGT
from recon3d.zoo import REGISTRY

SPECIAL = 5


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return VGGT(REGISTRY["vggt-untrained-small"].config).init_weights(seed=0).eval()


def run(model, images, merging):
    model.set_token_merging(merging)
    with torch.no_grad():
        return model(images)


@pytest.mark.parametrize("merging", [None, MergeConfig(ratio=0.0)])
def test_off_or_ratio_zero_equals_dense(model, merging):
    images = torch.rand(1, 3, 3, 56, 84, generator=torch.Generator().manual_seed(1))
    dense = run(model, images, None)
    other = run(model, images, merging)
    for key in ("pose_enc", "depth", "depth_conf"):
        assert (dense[key] - other[key]).abs().max() <= 1e-6


def test_single_frame_is_never_merged(model):
    images = torch.rand(1, 1, 3, 56, 70, generator=torch.Generator().manual_seed(2))
    dense = run(model, images, None)
    merged = run(model, images, MergeConfig(ratio=1.0))
    assert torch.equal(dense["depth"], merged["depth"])


def test_merging_changes_outputs_a_little_and_is_seeded(model):
    images = torch.rand(1, 4, 3, 70, 98, generator=torch.Generator().manual_seed(3))
    dense = run(model, images, None)
    first = run(model, images, MergeConfig(ratio=1.0, seed=7))
    again = run(model, images, MergeConfig(ratio=1.0, seed=7))
    other = run(model, images, MergeConfig(ratio=1.0, seed=8))
    assert torch.equal(first["depth"], again["depth"]) and torch.equal(first["pose_enc"], again["pose_enc"])
    assert not torch.equal(first["depth"], other["depth"])
    assert not torch.equal(first["depth"], dense["depth"])
    assert first["depth"].shape == dense["depth"].shape


def random_plan(frames=4, grid=(5, 7), ratio=1.0, protect=0.1, batch=2, dim=16, seed=0):
    n = frames * (SPECIAL + grid[0] * grid[1])
    x = torch.randn(batch, n, dim, generator=torch.Generator().manual_seed(seed))
    config = MergeConfig(ratio=ratio, protect_fraction=protect, stride=(2, 2), seed=seed, chunk_size=17)
    return x, plan_merge(x, frames, SPECIAL, grid, config)


def token_kinds(frames, grid):
    per_frame = SPECIAL + grid[0] * grid[1]
    index = torch.arange(frames * per_frame)
    frame, within = index // per_frame, index % per_frame
    return frame, within


def test_frame_zero_and_special_tokens_keep_their_own_slots():
    frames, grid = 4, (5, 7)
    x, plan = random_plan(frames, grid)
    frame, within = token_kinds(frames, grid)
    must_keep = (frame == 0) | (within < SPECIAL)
    for b in range(x.shape[0]):
        slots = plan.slot[b, must_keep]
        assert len(set(slots.tolist())) == int(must_keep.sum())  # no two share a slot
        # ...and no other kept token shares theirs except sources merged into them.
        owners = {}
        for token in range(x.shape[1]):
            owners.setdefault(int(plan.slot[b, token]), []).append(token)
        for slot in slots.tolist():
            assert sum(1 for t in owners[slot] if must_keep[t]) == 1


def test_merge_is_the_slot_mean_and_unmerge_copies_back():
    x, plan = random_plan(frames=3, grid=(4, 5), ratio=0.6)
    merged = plan.merge(x)
    assert merged.shape == (x.shape[0], plan.reduced_length, x.shape[2])
    for b in range(x.shape[0]):
        for slot in range(plan.reduced_length):
            members = (plan.slot[b] == slot).nonzero().squeeze(1)
            assert len(members) >= 1
            torch.testing.assert_close(merged[b, slot], x[b, members].mean(0), rtol=1e-5, atol=1e-6)
    back = plan.unmerge(merged)
    assert back.shape == x.shape
    for b in range(x.shape[0]):
        torch.testing.assert_close(back[b], merged[b, plan.slot[b]])


def test_each_merged_source_joins_its_most_similar_destination():
    frames, grid = 3, (6, 6)
    x, plan = random_plan(frames, grid, ratio=1.0, protect=0.0, batch=1, seed=4)
    slot, kept = plan.slot[0], plan.kept[0]
    owner_of_slot = {int(slot[t]): t for t in torch.nonzero(kept).squeeze(1).tolist()}
    assert len(owner_of_slot) == plan.reduced_length
    destinations = sorted(owner_of_slot.values())
    features = F.normalize(x[0], dim=-1)
    for token in torch.nonzero(~kept).squeeze(1).tolist():
        owner = owner_of_slot[int(slot[token])]
        similarity = features[token] @ features[destinations].T
        assert torch.isclose(features[token] @ features[owner], similarity.max(), atol=1e-6)


def test_one_destination_per_cell_on_an_odd_grid_and_the_expected_length():
    frames, grid = 3, (5, 7)  # odd rows and columns: border cells are 1 wide or high
    x, plan = random_plan(frames, grid, ratio=1.0, protect=0.0, batch=1)
    is_destination = plan.kept[0]
    per_frame = SPECIAL + grid[0] * grid[1]
    cells = 3 * 4
    assert plan.reduced_length == per_frame + (frames - 1) * (SPECIAL + cells)
    for f in range(1, frames):
        patches = is_destination[f * per_frame + SPECIAL:(f + 1) * per_frame].reshape(grid)
        for r in range(0, grid[0], 2):
            for c in range(0, grid[1], 2):
                assert int(patches[r:r + 2, c:c + 2].sum()) == 1


def test_parse_merge_option():
    assert parse_merge_option("off") is None
    assert parse_merge_option("auto").min_frames > 1
    assert parse_merge_option("0.5").ratio == 0.5
    with pytest.raises(ValueError):
        parse_merge_option("fast")
    with pytest.raises(ValueError):
        parse_merge_option("1.5")
