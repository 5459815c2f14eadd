"""Camera conventions and helpers: VGGT pose encoding, rigid transforms, camera centres,
look-at cameras, the pixel-centre grid, depth unprojection.

Conventions (see DESIGN.md): extrinsics are world-to-camera ``[R | t]`` with
OpenCV axes (x right, y down, z forward); intrinsics are in pixels of the
model's input image with the principal point at the image centre. Quaternions
in this module are **x, y, z, w** (scalar last), as in VGGT's pose encoding.

The pose encoding ``[..., 9]`` is ``[t_x, t_y, t_z, q_x, q_y, q_z, q_w, fov_h,
fov_w]`` with field-of-view angles in radians.

Pixels follow the continuous convention: an image spans ``[0, W] x [0, H]`` and pixel
``(v, u)`` has its centre at ``(u + 0.5, v + 0.5)`` (`pixel_grid`). Functions that take
cameras take ``(extrinsics_w2c, intrinsics)`` in that order.
"""
from __future__ import annotations

import numpy as np
import torch

__all__ = [
    "quat_xyzw_to_matrix",
    "matrix_to_quat_xyzw",
    "pose_encoding_to_cameras",
    "cameras_to_pose_encoding",
    "to_homogeneous",
    "invert_rigid",
    "camera_centres",
    "look_at",
    "pixel_grid",
    "unproject_depth",
]

Z_UP = (0.0, 0.0, 1.0)
"""Default ``up`` of `look_at`: the synthetic scenes' world is z-up."""


def quat_xyzw_to_matrix(quat: torch.Tensor, eps: float = 0.0) -> torch.Tensor:
    """Rotation matrices from quaternions.

    Args:
        quat: ``[..., 4]`` quaternions (x, y, z, w). They need not be unit
            length: the products are scaled by ``2 / (|q|^2 + eps)``, which yields a
            proper rotation for any non-zero quaternion (the network's raw
            output is not normalised).
        eps: added to ``|q|^2`` (AnySplat's covariances use 1e-8).

    Returns:
        ``[..., 3, 3]`` rotation matrices.
    """
    x, y, z, w = quat.unbind(-1)
    s = 2.0 / ((quat * quat).sum(-1) + eps)
    rows = (
        1 - s * (y * y + z * z), s * (x * y - z * w), s * (x * z + y * w),
        s * (x * y + z * w), 1 - s * (x * x + z * z), s * (y * z - x * w),
        s * (x * z - y * w), s * (y * z + x * w), 1 - s * (x * x + y * y),
    )
    return torch.stack(rows, dim=-1).reshape(quat.shape[:-1] + (3, 3))


def _sqrt_nonneg(x: torch.Tensor) -> torch.Tensor:
    """sqrt(max(x, 0)) whose gradient is zero (not NaN) where x <= 0."""
    positive = x > 0
    return torch.where(positive, torch.sqrt(torch.where(positive, x, torch.ones_like(x))), 0.0)


def matrix_to_quat_xyzw(rot: torch.Tensor) -> torch.Tensor:
    """Quaternions (x, y, z, w) from rotation matrices, with w >= 0.

    Each of the four quaternion components can be recovered from the trace
    terms; dividing by the largest one is numerically stable, so the four
    candidate quaternions are formed and the one whose pivot component has the
    largest magnitude is kept (first index on ties). The sign is then flipped
    only where w < 0, so 180-degree rotations (w == 0) keep their positive
    axis component, e.g. Rx(180) -> (1, 0, 0, 0).

    Args:
        rot: ``[..., 3, 3]`` rotation matrices.

    Returns:
        ``[..., 4]`` unit quaternions (x, y, z, w).
    """
    m = rot.unbind(-1)
    m00, m10, m20 = m[0].unbind(-1)
    m01, m11, m21 = m[1].unbind(-1)
    m02, m12, m22 = m[2].unbind(-1)

    # 4|w|^2, 4|x|^2, 4|y|^2, 4|z|^2 up to the sqrt; all four sum to 4, so the
    # largest is >= 1 and the chosen denominator never comes near zero.
    pivot = _sqrt_nonneg(
        torch.stack(
            (
                1 + m00 + m11 + m22,
                1 + m00 - m11 - m22,
                1 - m00 + m11 - m22,
                1 - m00 - m11 + m22,
            ),
            dim=-1,
        )
    )
    # Candidate k (as w, x, y, z) scaled by 4*q_k; its own entry is pivot_k^2.
    wxyz_candidates = torch.stack(
        (
            torch.stack((pivot[..., 0] ** 2, m21 - m12, m02 - m20, m10 - m01), dim=-1),
            torch.stack((m21 - m12, pivot[..., 1] ** 2, m10 + m01, m02 + m20), dim=-1),
            torch.stack((m02 - m20, m10 + m01, pivot[..., 2] ** 2, m12 + m21), dim=-1),
            torch.stack((m10 - m01, m20 + m02, m21 + m12, pivot[..., 3] ** 2), dim=-1),
        ),
        dim=-2,
    )
    # The floor only guards the candidates that are discarded below.
    wxyz_candidates = wxyz_candidates / (2.0 * pivot[..., None].clamp_min(0.1))
    best = pivot.argmax(dim=-1)
    index = best[..., None, None].expand(best.shape + (1, 4))
    wxyz = wxyz_candidates.gather(-2, index).squeeze(-2)
    xyzw = wxyz[..., (1, 2, 3, 0)]
    return torch.where(xyzw[..., 3:4] < 0, -xyzw, xyzw)


def pose_encoding_to_cameras(
    pose_enc: torch.Tensor, image_size_hw: tuple[int, int], focal_eps: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode VGGT pose encodings into extrinsics and intrinsics.

    Args:
        pose_enc: ``[..., 9]`` = translation (3), quaternion x,y,z,w (4, any
            non-zero norm), fov_h, fov_w (radians).
        image_size_hw: (H, W) of the network input in pixels.
        focal_eps: added to the tangents (AnySplat decodes with 1e-3).

    Returns:
        extrinsics_w2c ``[..., 3, 4]`` (world-to-camera ``[R | t]``) and
        intrinsics ``[..., 3, 3]`` in pixels, with fx = (W/2)/tan(fov_w/2),
        fy = (H/2)/tan(fov_h/2) and principal point (W/2, H/2).
    """
    height, width = image_size_hw
    trans = pose_enc[..., :3]
    rot = quat_xyzw_to_matrix(pose_enc[..., 3:7])
    extrinsics = torch.cat((rot, trans[..., None]), dim=-1)

    fy = (height / 2.0) / (torch.tan(pose_enc[..., 7] / 2.0) + focal_eps)
    fx = (width / 2.0) / (torch.tan(pose_enc[..., 8] / 2.0) + focal_eps)
    intrinsics = pose_enc.new_zeros(pose_enc.shape[:-1] + (3, 3))
    intrinsics[..., 0, 0] = fx
    intrinsics[..., 1, 1] = fy
    intrinsics[..., 0, 2] = width / 2.0
    intrinsics[..., 1, 2] = height / 2.0
    intrinsics[..., 2, 2] = 1.0
    return extrinsics, intrinsics


def cameras_to_pose_encoding(
    extrinsics_w2c: torch.Tensor, intrinsics: torch.Tensor, image_size_hw: tuple[int, int]
) -> torch.Tensor:
    """Encode cameras as VGGT pose encodings (inverse of `pose_encoding_to_cameras`).

    The principal point is assumed to be the image centre and is not encoded.

    Args:
        extrinsics_w2c: ``[..., 3, 4]`` (or ``[..., 4, 4]``) world-to-camera.
        intrinsics: ``[..., 3, 3]`` in pixels.
        image_size_hw: (H, W) in pixels.

    Returns:
        ``[..., 9]`` float32: t (3), quaternion x,y,z,w with w >= 0 (4),
        fov_h = 2 atan((H/2)/fy), fov_w = 2 atan((W/2)/fx) (radians).
    """
    height, width = image_size_hw
    quat = matrix_to_quat_xyzw(extrinsics_w2c[..., :3, :3])
    trans = extrinsics_w2c[..., :3, 3]
    fov_h = 2 * torch.atan((height / 2) / intrinsics[..., 1, 1])
    fov_w = 2 * torch.atan((width / 2) / intrinsics[..., 0, 0])
    return torch.cat((trans, quat, fov_h[..., None], fov_w[..., None]), dim=-1).float()


def to_homogeneous(extrinsics: torch.Tensor) -> torch.Tensor:
    """Append the row ``[0, 0, 0, 1]``: ``[..., 3, 4]`` -> ``[..., 4, 4]``."""
    bottom = extrinsics.new_zeros(extrinsics.shape[:-2] + (1, 4))
    bottom[..., 0, 3] = 1.0
    return torch.cat((extrinsics, bottom), dim=-2)


def invert_rigid(transform: torch.Tensor) -> torch.Tensor:
    """Inverse of rigid transforms ``[R | t]`` in closed form, ``[R^T | -R^T t]``.

    Args:
        transform: ``[..., 3, 4]`` or ``[..., 4, 4]`` (the last row is ignored;
            R is assumed orthonormal, e.g. w2c -> c2w).

    Returns:
        ``[..., 4, 4]`` inverse, in the input dtype.
    """
    rot_t = transform[..., :3, :3].transpose(-1, -2)
    trans = -(rot_t @ transform[..., :3, 3:4])
    return to_homogeneous(torch.cat((rot_t, trans), dim=-1))


def camera_centres(extrinsics_w2c: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
    """Camera centres ``C = -Rᵀ t`` (world units) of world-to-camera transforms.

    Args:
        extrinsics_w2c: ``[..., 4, 4]`` or ``[..., 3, 4]``.

    Returns:
        ``[..., 3]``: a tensor in the input's dtype and device (differentiable) for a
        tensor, otherwise a float64 NumPy array.
    """
    if isinstance(extrinsics_w2c, torch.Tensor):
        rot, trans = extrinsics_w2c[..., :3, :3], extrinsics_w2c[..., :3, 3]
        return -(rot.transpose(-1, -2) @ trans[..., None])[..., 0]
    w2c = np.asarray(extrinsics_w2c, dtype=np.float64)
    # einsum, not @: 3x3 BLAS matmuls raise spurious 'invalid value' warnings on some CPUs.
    return -np.einsum("...ji,...j->...i", w2c[..., :3, :3], w2c[..., :3, 3])


def look_at(
    eye: np.ndarray, target: np.ndarray, up: np.ndarray | tuple[float, float, float] = Z_UP, roll: float = 0.0
) -> np.ndarray:
    """``[4,4]`` float64 world-to-camera transform of a camera at ``eye`` looking at ``target``.

    The camera's -y axis (up in the image) is ``up`` made orthogonal to the viewing
    direction, so the horizon of a level ``up`` stays level; ``roll`` (radians) then turns
    the camera about its optical axis, its x axis towards its y axis.

    Args:
        eye, target: ``[3]`` world points (world units).
        up: ``[3]`` world direction that appears up in the image (need not be unit).
        roll: rotation about the optical axis (radians).

    Raises:
        ValueError: ``eye == target`` or the viewing direction is parallel to ``up``.
    """
    eye = np.asarray(eye, dtype=np.float64)
    forward = np.asarray(target, dtype=np.float64) - eye
    distance = np.linalg.norm(forward)
    if distance < 1e-12:
        raise ValueError("camera position and look-at target coincide")
    forward = forward / distance
    right = np.cross(forward, up)
    if np.linalg.norm(right) < 1e-9:
        raise ValueError("viewing direction is parallel to the up axis; the camera roll is undefined")
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    cos, sin = np.cos(roll), np.sin(roll)
    right, down = cos * right + sin * down, -sin * right + cos * down
    w2c = np.eye(4)
    w2c[:3, :3] = np.stack((right, down, forward))
    w2c[:3, 3] = -w2c[:3, :3] @ eye
    return w2c


def pixel_grid(height: int, width: int, *, homogeneous: bool = False) -> np.ndarray:
    """Continuous coordinates of the pixel centres, ``(u + 0.5, v + 0.5)`` at pixel ``(v, u)``.

    Returns:
        ``[H, W, 2]`` float64 ``(x, y)`` in pixels, or ``[H, W, 3]`` ``(x, y, 1)`` with
        ``homogeneous`` (ready for ``K⁻¹`` or an affine pixel map).
    """
    u, v = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
    channels = (u, v, np.ones_like(u)) if homogeneous else (u, v)
    return np.stack(channels, axis=-1)


def unproject_depth(
    depth: np.ndarray | torch.Tensor,
    extrinsics_w2c: np.ndarray | torch.Tensor,
    intrinsics: np.ndarray | torch.Tensor,
    pixel_centre: float = 0.5,
) -> np.ndarray | torch.Tensor:
    """World points from per-view depth maps (VGGT's "points from depth").

    Pixel (u, v) sits at ``(u + pixel_centre, v + pixel_centre)`` for integer
    indices u = 0..W-1, v = 0..H-1. The default 0.5 is recon3d's continuous
    convention (the image spans [0, W] x [0, H], so a principal point at
    (W/2, H/2) is the exact image centre); 0 is VGGT's own unprojection
    (integer indices, no half-pixel offset), which its parity tests use. The
    camera point ((x-cx) d/fx, (y-cy) d/fy, d) is rounded to float32 and moved
    to the world with R^T (X_cam - t), the inverse pose taken in float64, which
    reproduces the reference's numbers. Depth <= 0 is not masked.

    Args:
        depth: ``[S, H, W]`` or ``[S, H, W, 1]`` depth along the optical axis.
        extrinsics_w2c: ``[S, 3, 4]`` or ``[S, 4, 4]`` world-to-camera.
        intrinsics: ``[S, 3, 3]`` in pixels.
        pixel_centre: offset of pixel centres from integer indices (0 or 0.5).

    Returns:
        ``[S, H, W, 3]`` float32 world points: a NumPy array if ``depth`` is a
        NumPy array, otherwise a tensor on ``depth``'s device.
    """
    as_numpy = isinstance(depth, np.ndarray)
    depth_t = torch.as_tensor(depth)
    device = depth_t.device
    # MPS has no float64; there the result is float32-accurate only.
    wide = torch.float32 if device.type == "mps" else torch.float64
    depth_t = depth_t.to(wide)
    if depth_t.ndim == 4:
        depth_t = depth_t[..., 0]
    extr = torch.as_tensor(extrinsics_w2c, device=device).to(wide)
    intr = torch.as_tensor(intrinsics, device=device).to(wide)

    _, height, width = depth_t.shape
    u = torch.arange(width, device=device, dtype=wide) + pixel_centre
    v = torch.arange(height, device=device, dtype=wide) + pixel_centre
    fx, fy = intr[:, 0, 0, None, None], intr[:, 1, 1, None, None]
    cx, cy = intr[:, 0, 2, None, None], intr[:, 1, 2, None, None]
    x_cam = (u[None, None, :] - cx) * depth_t / fx
    y_cam = (v[None, :, None] - cy) * depth_t / fy
    # The reference stores camera points as float32 before the rigid transform.
    cam = torch.stack((x_cam, y_cam, depth_t), dim=-1).float().to(wide)

    cam_to_world = invert_rigid(extr)
    rot = cam_to_world[:, None, None, :3, :3]
    trans = cam_to_world[:, None, None, :3, 3]
    world = (rot @ cam[..., None])[..., 0] + trans
    world = world.float()
    return world.numpy() if as_numpy else world
