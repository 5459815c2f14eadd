"""Batched pair inference against one ``model(view1, view2)`` call per pair."""
from __future__ import annotations

import torch

from recon3d.networks.dust3r import DUSt3R, DUSt3RConfig
from recon3d.pairwise.inference import predict_pairs


def test_batched_pairs_equal_single_pair_forward_calls():
    config = DUSt3RConfig(enc_embed_dim=32, enc_depth=2, enc_num_heads=2, dec_embed_dim=32, dec_depth=4,
                          dec_num_heads=2, head_type="dpt",
                          dpt={"feature_dim": 16, "last_dim": 8, "layer_dims": (8, 8, 16, 16), "hooks_idx": (0, 2, 3, 4)})
    model = DUSt3R(config).init_weights(seed=1).eval()
    images = torch.rand(4, 3, 32, 48, generator=torch.Generator().manual_seed(0))
    pairs = [(0, 1), (1, 0), (2, 3), (3, 1), (0, 2)]
    progress = []
    out = predict_pairs(model, images, pairs, batch_size=2, on_progress=lambda done, total: progress.append((done, total)))
    assert progress == [(2, 5), (4, 5), (5, 5)]
    assert out.pairs.tolist() == [list(p) for p in pairs] and out.num_views == 4
    for p, (i, j) in enumerate(pairs):
        with torch.no_grad():
            res1, res2 = model({"img": images[i:i + 1] * 2 - 1}, {"img": images[j:j + 1] * 2 - 1})
        torch.testing.assert_close(out.pts_i[p], res1["pts3d"][0], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(out.conf_i[p], res1["conf"][0], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(out.pts_j[p], res2["pts3d_in_other_view"][0], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(out.conf_j[p], res2["conf"][0], rtol=1e-5, atol=1e-5)
