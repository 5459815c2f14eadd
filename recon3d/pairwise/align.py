"""Global alignment of pairwise point maps into one scene (cameras, depths, world points).

Written from the DUSt3R paper's description, not from its code. Unknowns, per view
``v``: a log-depth map, a camera-to-world pose (quaternion x,y,z,w + translation), a
focal length stored as ``FOCAL_BREAK * log f`` (a slower, better conditioned step for
Adam) and optionally the principal point; per pair ``e = (i, j)``: a similarity
(quaternion, translation, log-scale) from view ``i``'s frame, where both of the
pair's point maps live, to the world. The loss is, per pair, the ``log(conf)``-weighted
Euclidean distance between the global points of views ``i`` and ``j`` (unprojected
from their depths, pixel centres at ``+0.5``) and the pair's point maps moved by its
similarity, averaged over pixels and then over pairs. The log-scales of the pairs
are kept at zero mean (their product is 1), so the scene cannot shrink to a point.

The result is expressed with view 0's camera as the world frame.

On large images the optimisation runs on every ``stride``-th pixel of each view (the
same problem restricted to a pixel grid: its cost falls with ``stride²``), and each
view's full-resolution depth is then solved in closed form from all of its pixels'
pairwise points moved by the optimised pair similarities (`_dense_depth`).
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from recon3d.errors import InputError
from recon3d.geometry.cameras import matrix_to_quat_xyzw, pixel_grid, quat_xyzw_to_matrix, unproject_depth
from recon3d.pairwise.init import InitialSolution, initialise_mst, pinhole_intrinsics
from recon3d.pairwise.pointmaps import PairwisePointmaps

__all__ = ["AUTO_STRIDE_PIXELS", "FOCAL_BREAK", "GlobalAlignment", "global_align", "resolve_stride"]

FOCAL_BREAK = 20.0
LR_MIN = 1e-6
AUTO_STRIDE_PIXELS = 6_144
"""``stride="auto"`` optimises about this many pixels per view (e.g. 96x64): stride 6 at
512x384, 3 at 224x224, 1 (every pixel) for images up to about 110x110. Cameras stay within
0.2 degrees and 0.5 % focal of the every-pixel result down to 768 pixels per view
(tests/test_global_alignment.py)."""
ProgressFn = Callable[[int, int, float], None]


@dataclass
class GlobalAlignment:
    """Aligned scene, float32 NumPy, world frame = view 0's camera (OpenCV axes).

    Attributes:
        extrinsics_w2c: ``[S,4,4]`` world-to-camera (``extrinsics_w2c[0]`` is the identity).
        intrinsics: ``[S,3,3]`` K in pixels, pixel centres at ``(u + 0.5, v + 0.5)``.
        depth: ``[S,H,W]`` z-depth along each optical axis (the scene's own scale).
        depth_conf: ``[S,H,W]`` raw confidence (>= 1): per pixel the maximum over the pairs
            containing the view of that view's confidence.
        points: ``[S,H,W,3]`` world points of every pixel.
        loss_history: loss after each optimisation step (empty for the closed form).
    """

    extrinsics_w2c: np.ndarray
    intrinsics: np.ndarray
    depth: np.ndarray
    depth_conf: np.ndarray
    points: np.ndarray
    loss_history: list[float] = field(default_factory=list)


def _lr_at(step: int, total: int, lr: float, schedule: str) -> float:
    """Learning rate for ``step`` in ``[0, total)``: cosine or linear decay to ``LR_MIN``."""
    t = step / max(total, 1)
    if schedule == "cosine":
        return LR_MIN + (lr - LR_MIN) * 0.5 * (1.0 + math.cos(math.pi * t))
    return lr + (LR_MIN - lr) * t


class _Scene(torch.nn.Module):
    """Learnable parameters of the alignment, initialised from an ``InitialSolution``."""

    def __init__(self, init: InitialSolution, optimize_pp: bool, device: torch.device, pixels: np.ndarray,
                 size_wh: tuple[int, int]) -> None:
        """``init.depths`` and ``pixels [h,w,2]`` (pixel centres in full-image pixels) are on the
        optimised grid; ``size_wh`` is the full image size (the principal point's unit)."""
        super().__init__()

        def param(x: np.ndarray, grad: bool = True) -> torch.nn.Parameter:
            return torch.nn.Parameter(torch.as_tensor(x, dtype=torch.float32, device=device), requires_grad=grad)

        rot = torch.as_tensor(init.cam2world[:, :3, :3])
        self.log_depth = param(np.log(init.depths))
        self.cam_quat = param(matrix_to_quat_xyzw(rot).numpy())
        self.cam_trans = param(init.cam2world[:, :3, 3])
        self.focal = param(FOCAL_BREAK * np.log(init.focals))
        self.pp = param(np.zeros((len(init.focals), 2)), grad=optimize_pp)  # offset, in image sizes
        self.edge_quat = param(matrix_to_quat_xyzw(torch.as_tensor(init.edge_rotation)).numpy())
        self.edge_trans = param(init.edge_translation)
        self.edge_log_scale = param(np.log(init.edge_scale))
        self.register_buffer("pixels", torch.as_tensor(pixels, dtype=torch.float32, device=device))
        self.size_wh = size_wh

    def intrinsics(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``focals [S]`` and principal points ``[S,2]`` in pixels."""
        width, height = self.size_wh
        size = self.pixels.new_tensor([width, height])
        return torch.exp(self.focal / FOCAL_BREAK), size * (0.5 + self.pp)

    def world_points(self) -> torch.Tensor:
        """``[S,3,H*W]`` world points of every view's depth map (channels first, pixels row-major)."""
        focal, pp = self.intrinsics()
        depth = torch.exp(self.log_depth).flatten(1)[:, None]  # [S,1,H*W]
        rays = (self.pixels.reshape(1, -1, 2) - pp[:, None]).transpose(1, 2) / focal[:, None, None]
        cam = torch.cat([rays * depth, depth], dim=1)
        return torch.baddbmm(self.cam_trans[:, :, None], quat_xyzw_to_matrix(self.cam_quat), cam)

    def edge_transform(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Edge scales ``[P]`` (product 1), rotations ``[P,3,3]`` and translations ``[P,3]``."""
        log_scale = self.edge_log_scale - self.edge_log_scale.mean()
        return torch.exp(log_scale), quat_xyzw_to_matrix(self.edge_quat), self.edge_trans


def _pair_loss(scene: _Scene, pairs: torch.Tensor, pts: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Mean over pairs and pixels of the weighted Euclidean distance, both views of each pair.

    Channels come first because a reduction over a contiguous last axis of size 3 is slow
    on the CPU.

    Args:
        scene: the parameters.
        pairs: ``[P,2]`` view indices.
        pts: ``[P,3,2*H*W]`` each pair's ``pts_i`` then ``pts_j`` (pixels flattened).
        weights: ``[P,2*H*W]`` the matching ``log(conf)``.
    """
    world = scene.world_points()  # [S,3,H*W]
    target = world[pairs].transpose(1, 2).flatten(2)  # [P,3,2*H*W]
    scale, rot, trans = scene.edge_transform()
    error = target - torch.baddbmm(trans[:, :, None], scale[:, None, None] * rot, pts)
    dist = ((error * error).sum(1) + 1e-20).sqrt()
    return torch.dot(weights.flatten(), dist.flatten()) / (0.5 * weights.numel())


def _optimise(
    scene: _Scene, pm: PairwisePointmaps, niter: int, lr: float, schedule: str, on_progress: ProgressFn | None
) -> list[float]:
    """Adam (betas 0.9, 0.9) on the scene's parameters; returns the loss of every step."""
    device = scene.pixels.device
    pairs = pm.pairs.to(device=device, dtype=torch.long)
    pts = torch.stack([pm.pts_i, pm.pts_j], dim=1).to(device, torch.float32).flatten(2, 3)  # [P,2,H*W,3]
    pts = torch.nan_to_num(pts).permute(0, 3, 1, 2).flatten(2).contiguous()  # [P,3,2*H*W]
    conf = torch.stack([pm.conf_i, pm.conf_j], dim=1).to(device, torch.float32).flatten(1)  # [P,2*H*W]
    weights = torch.nan_to_num(conf, nan=1.0).clamp_min(1.0).log()
    params = [p for p in scene.parameters() if p.requires_grad]
    optimiser = torch.optim.Adam(params, lr=lr, betas=(0.9, 0.9))
    history = []
    for step in range(niter):
        for group in optimiser.param_groups:
            group["lr"] = _lr_at(step, niter, lr, schedule)
        optimiser.zero_grad(set_to_none=True)
        loss = _pair_loss(scene, pairs, pts, weights)
        loss.backward()
        optimiser.step()
        history.append(float(loss.detach()))
        if on_progress is not None:
            on_progress(step + 1, niter, history[-1])
    return history


def resolve_stride(stride: int | str, height: int, width: int) -> int:
    """The pixel stride of the optimisation grid: ``"auto"`` → about ``AUTO_STRIDE_PIXELS`` per view."""
    if stride == "auto":
        return max(1, round(math.sqrt(height * width / AUTO_STRIDE_PIXELS)))
    if not isinstance(stride, int) or stride < 1:
        raise ValueError(f"stride must be 'auto' or a positive integer, got {stride!r}")
    return stride


def _grid_offset(stride: int) -> int:
    """First pixel of each stride cell that is sampled: its centre, so samples cover the image evenly."""
    return stride // 2


def _on_grid(pm: PairwisePointmaps, stride: int) -> PairwisePointmaps:
    """The point maps at every ``stride``-th pixel."""
    o = _grid_offset(stride)
    return PairwisePointmaps(pairs=pm.pairs, num_views=pm.num_views, pts_i=pm.pts_i[:, o::stride, o::stride],
                             conf_i=pm.conf_i[:, o::stride, o::stride], pts_j=pm.pts_j[:, o::stride, o::stride],
                             conf_j=pm.conf_j[:, o::stride, o::stride])


@torch.no_grad()
def _dense_depth(scene: _Scene, pm: PairwisePointmaps, stride: int) -> np.ndarray:
    """``[S,H,W]`` float64 full-resolution depth, from the optimised cameras and pair similarities.

    For each pixel, the depth ``d`` along its ray ``r`` (from camera centre ``c``) that
    minimises ``sum_e w_e |c + d r - y_e|^2`` over the pairs ``e`` holding the view, where
    ``y_e`` is the pair's point for the pixel moved to the world by the pair's similarity
    and ``w_e = log(conf)``: ``d = sum w r.(y - c) / sum w |r|^2``. Pixels no pair gives a
    positive depth keep the optimised grid's depth of their cell.
    """
    height, width = pm.image_size_hw
    device = scene.pixels.device
    focal, pp = scene.intrinsics()
    rotations = quat_xyzw_to_matrix(scene.cam_quat)
    centres = scene.cam_trans
    pixels = torch.as_tensor(pixel_grid(height, width), dtype=torch.float32, device=device).reshape(-1, 2)
    numerator = torch.zeros(pm.num_views, height * width, dtype=torch.float64, device=device)
    denominator = torch.zeros_like(numerator)
    scale, rot, trans = scene.edge_transform()
    for e, (i, j) in enumerate(pm.pairs.tolist()):
        for view, pts, conf in ((i, pm.pts_i[e], pm.conf_i[e]), (j, pm.pts_j[e], pm.conf_j[e])):
            pts = torch.nan_to_num(pts.to(device, torch.float32)).reshape(-1, 3)
            world = (scale[e] * pts) @ rot[e].T + trans[e]  # [H*W,3]
            rays = torch.cat([(pixels - pp[view]) / focal[view], torch.ones_like(pixels[:, :1])], dim=1)
            rays = rays @ rotations[view].T
            weight = torch.nan_to_num(conf.to(device, torch.float32), nan=1.0).clamp_min(1.0).log().reshape(-1)
            numerator[view] += (weight * ((world - centres[view]) * rays).sum(1)).double()
            denominator[view] += (weight * (rays * rays).sum(1)).double()
    depth = numerator / denominator.clamp_min(1e-12)
    coarse = torch.exp(scene.log_depth.double())[:, None]
    o = _grid_offset(stride)
    # Each full-resolution pixel takes its cell's sample (the cell of pixel u is (u - o + s/2) // s).
    rows = ((torch.arange(height, device=device) - o + stride // 2).div(stride, rounding_mode="floor")
            .clamp(0, coarse.shape[-2] - 1))
    cols = ((torch.arange(width, device=device) - o + stride // 2).div(stride, rounding_mode="floor")
            .clamp(0, coarse.shape[-1] - 1))
    fallback = coarse[:, 0][:, rows][:, :, cols].reshape(pm.num_views, -1)
    usable = (denominator > 0) & (depth > 0) & torch.isfinite(depth)
    return torch.where(usable, depth, fallback).reshape(pm.num_views, height, width).cpu().numpy()


def _depth_conf(pm: PairwisePointmaps) -> np.ndarray:
    """``[S,H,W]`` maximum over pairs of each view's confidence."""
    height, width = pm.image_size_hw
    out = torch.ones(pm.num_views, height, width, dtype=torch.float32)
    pairs = pm.pairs.cpu().long()
    for conf, column in ((pm.conf_i, 0), (pm.conf_j, 1)):
        index = pairs[:, column, None].expand(-1, height * width)
        values = conf.detach().float().cpu().reshape(len(pairs), -1)
        out.view(pm.num_views, -1).scatter_reduce_(0, index, values, "amax")
    return out.numpy()


def _result(
    cam2world: np.ndarray,
    focals: np.ndarray,
    pp: np.ndarray,
    depth: np.ndarray,
    pm: PairwisePointmaps,
    history: list[float],
) -> GlobalAlignment:
    """Re-express the cameras with view 0 as the world and assemble the float32 result.

    ``cam2world [S,4,4]``, ``focals [S]``, ``pp [S,2]``, ``depth [S,H,W]`` (float64).
    """
    w2c = np.linalg.inv(cam2world) @ cam2world[0]
    intrinsics = pinhole_intrinsics(focals, pp)
    points = unproject_depth(depth, w2c, intrinsics)
    return GlobalAlignment(
        extrinsics_w2c=w2c.astype(np.float32),
        intrinsics=intrinsics.astype(np.float32),
        depth=depth.astype(np.float32),
        depth_conf=_depth_conf(pm),
        points=points,
        loss_history=history,
    )


def _check(pm: PairwisePointmaps, schedule: str, init: str) -> None:
    if schedule not in ("cosine", "linear"):
        raise ValueError(f"schedule must be 'cosine' or 'linear', got {schedule!r}")
    if init != "mst":
        raise ValueError(f"init must be 'mst', got {init!r}")
    if pm.num_views < 2:
        raise InputError(f"global alignment needs at least 2 views, got {pm.num_views}")
    pairs = pm.pairs.cpu()
    if pairs.ndim != 2 or pairs.shape[1] != 2 or len(pairs) == 0:
        raise InputError(f"pairs must be a non-empty [P,2] array, got shape {tuple(pairs.shape)}")
    if pairs.min() < 0 or pairs.max() >= pm.num_views or bool((pairs[:, 0] == pairs[:, 1]).any()):
        raise InputError(f"pairs must hold two different view indices in 0..{pm.num_views - 1}")


def global_align(
    pointmaps: PairwisePointmaps,
    *,
    niter: int = 300,
    lr: float = 0.01,
    schedule: str = "cosine",
    optimize_pp: bool = False,
    init: str = "mst",
    on_progress: ProgressFn | None = None,
    closed_form_two_views: bool = True,
    device: torch.device | str | None = None,
    stride: int | str = "auto",
) -> GlobalAlignment:
    """Fuse pairwise point maps into cameras, depth maps and world points.

    Args:
        pointmaps: predictions for ``P`` ordered pairs of ``S`` views (see ``PairwisePointmaps``).
        niter: Adam steps (0 returns the initialisation).
        lr: peak learning rate, decayed to ``1e-6`` by ``schedule``.
        schedule: ``"cosine"`` or ``"linear"``.
        optimize_pp: also optimise the principal points (else fixed at the image centre).
        init: ``"mst"``: maximum-spanning-tree initialisation.
        on_progress: called as ``on_progress(step, niter, loss)`` after every step.
        closed_form_two_views: with 2 views, return the closed-form solution (focals from
            each view's own point map, relative pose by Procrustes of the more confident
            direction) without optimising.
        device: where the optimisation runs (default: the device of ``pointmaps.pts_i``);
            the point maps are moved there.
        stride: optimise on every ``stride``-th pixel of each view, then solve the full-
            resolution depth in closed form; ``"auto"`` picks it from the image size
            (`resolve_stride`), 1 optimises every pixel.

    Returns:
        The ``GlobalAlignment`` (float32 NumPy; world = view 0's camera). The optimisation
        runs in float32.

    Raises:
        InputError: fewer than 2 views, bad pair indices, or pairs that leave a view unconnected.
    """
    _check(pointmaps, schedule, init)
    pm = pointmaps
    pts_i, conf_i, pts_j, conf_j = (
        x.detach().cpu().double().numpy() for x in (pm.pts_i, pm.conf_i, pm.pts_j, pm.conf_j)
    )
    start = initialise_mst(pointmaps.pairs.cpu().numpy(), pts_i, conf_i, pts_j, conf_j, pointmaps.num_views)
    height, width = pointmaps.image_size_hw
    centre = np.tile([width / 2, height / 2], (pointmaps.num_views, 1))
    if niter <= 0 or (pointmaps.num_views == 2 and closed_form_two_views):
        return _result(start.cam2world, start.focals, centre, start.depths, pointmaps, [])

    step = resolve_stride(stride, height, width)
    o = _grid_offset(step)
    grid_start = dataclasses.replace(start, depths=start.depths[:, o::step, o::step])
    scene = _Scene(grid_start, optimize_pp, torch.device(device) if device is not None else pointmaps.pts_i.device,
                   pixel_grid(height, width)[o::step, o::step], (width, height))
    history = _optimise(scene, _on_grid(pointmaps, step) if step > 1 else pointmaps, niter, lr, schedule, on_progress)
    with torch.no_grad():
        focals, pp = (x.double().cpu().numpy() for x in scene.intrinsics())
        cam2world = np.tile(np.eye(4), (pointmaps.num_views, 1, 1))
        cam2world[:, :3, :3] = quat_xyzw_to_matrix(scene.cam_quat.double()).cpu().numpy()
        cam2world[:, :3, 3] = scene.cam_trans.double().cpu().numpy()
        depth = (_dense_depth(scene, pointmaps, step) if step > 1 else
                 torch.exp(scene.log_depth.double()).cpu().numpy())
    return _result(cam2world, focals, pp, depth, pointmaps, history)
