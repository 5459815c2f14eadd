"""Cameras solved in closed form from a network's depth and point maps.

A view's depth through its intrinsics gives its surface points in its own camera
frame; its point map gives the same points in the world (reference) frame. The rigid
motion between the two sets is that view's camera-to-world pose, found by weighted
Procrustes (Kabsch) in float64. This is how the embedded model's cameras are read out
when its config says ``cameras_from = "points"``: a pose read from per-pixel geometry
does not collapse to one mean pose the way a pose regressed from one token can.
"""
from __future__ import annotations

import torch

from recon3d.geometry.cameras import invert_rigid


def weighted_rigid_fit(source: torch.Tensor, target: torch.Tensor, weights: torch.Tensor
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotation and translation with ``target ≈ R @ source + t``, per batch entry.

    Args:
        source: ``[B,N,3]`` points.
        target: ``[B,N,3]`` corresponding points.
        weights: ``[B,N]`` non-negative weights (0 ignores a pair).

    Returns:
        ``R [B,3,3]`` (a proper rotation: the determinant sign is fixed, so a mirrored
        fit never comes out) and ``t [B,3]``, in float64. An entry without positive
        weight gets the identity.
    """
    src, dst, w = source.double(), target.double(), weights.double().clamp_min(0.0)
    total = w.sum(dim=1, keepdim=True)
    usable = total[:, 0] > 0
    w = torch.where(usable[:, None], w / total.clamp_min(1e-300), torch.zeros_like(w))
    mean_src = (w[..., None] * src).sum(dim=1)
    mean_dst = (w[..., None] * dst).sum(dim=1)
    cov = torch.einsum("bn,bni,bnj->bij", w, dst - mean_dst[:, None], src - mean_src[:, None])
    u, _, vt = torch.linalg.svd(cov)
    sign = torch.ones_like(mean_src)
    sign[:, 2] = torch.sign(torch.det(u) * torch.det(vt))
    sign[:, 2] = torch.where(sign[:, 2] == 0, torch.ones_like(sign[:, 2]), sign[:, 2])
    rot = (u * sign[:, None, :]) @ vt
    eye = torch.eye(3, dtype=rot.dtype, device=rot.device).expand_as(rot)
    rot = torch.where(usable[:, None, None], rot, eye)
    trans = mean_dst - (rot @ mean_src[..., None])[..., 0]
    return rot, torch.where(usable[:, None], trans, torch.zeros_like(trans))


def cameras_from_points(depth: torch.Tensor, world_points: torch.Tensor, weights: torch.Tensor,
                        intrinsics: torch.Tensor) -> torch.Tensor:
    """World-to-camera transforms that best carry each view's depth onto its point map.

    Args:
        depth: ``[S,H,W]`` z-depth (world units of ``world_points``).
        world_points: ``[S,H,W,3]`` the same pixels' points in the world frame.
        weights: ``[S,H,W]`` per-pixel weights, e.g. the product of the two confidences;
            pixels with non-positive depth are ignored.
        intrinsics: ``[S,3,3]`` pixels, continuous convention (pixel centres at +0.5).

    Returns:
        ``[S,3,4]`` world-to-camera transforms in ``depth``'s dtype.
    """
    s, h, w = depth.shape
    v, u = torch.meshgrid(torch.arange(h, device=depth.device, dtype=torch.float64) + 0.5,
                          torch.arange(w, device=depth.device, dtype=torch.float64) + 0.5, indexing="ij")
    k = intrinsics.double()
    fx, fy, cx, cy = (k[:, 0, 0, None, None], k[:, 1, 1, None, None], k[:, 0, 2, None, None], k[:, 1, 2, None, None])
    z = depth.double()
    camera_points = torch.stack(((u - cx) / fx * z, (v - cy) / fy * z, z), dim=-1)
    fit_weights = torch.where(z > 0, weights.double(), torch.zeros_like(z))
    rot, trans = weighted_rigid_fit(camera_points.reshape(s, -1, 3), world_points.reshape(s, -1, 3),
                                    fit_weights.reshape(s, -1))
    cam_to_world = torch.cat((rot, trans[..., None]), dim=-1)
    return invert_rigid(cam_to_world)[:, :3].to(depth.dtype)
