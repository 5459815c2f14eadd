"""Camera geometry against VGGT's golden vectors (pose encoding, unprojection)."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from recon3d.geometry.cameras import (
    cameras_to_pose_encoding,
    invert_rigid,
    matrix_to_quat_xyzw,
    pose_encoding_to_cameras,
    quat_xyzw_to_matrix,
    to_homogeneous,
    unproject_depth,
)

GROUPS = ["g0", "g1", "g2", "g3"]


def assert_close(actual: torch.Tensor, expected: torch.Tensor, rel: float = 1e-4) -> None:
    """|a - b| <= rel * max(1, |b|) elementwise (the parity README's rule)."""
    actual = torch.as_tensor(actual, dtype=torch.float64)
    expected = torch.as_tensor(expected, dtype=torch.float64)
    assert actual.shape == expected.shape
    bound = rel * expected.abs().clamp_min(1.0)
    excess = ((actual - expected).abs() - bound).max().item()
    assert excess <= 0, f"max |a-b| {(actual - expected).abs().max().item():.3g} exceeds tolerance"


@pytest.fixture(scope="module")
def pose_vectors(vggt_parity: Path) -> tuple[dict[str, torch.Tensor], dict[str, tuple[int, int]]]:
    path = vggt_parity / "pose_encoding.safetensors"
    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
    sizes = {g: tuple(int(n) for n in meta[f"{g}.image_size_hw"].split(",")) for g in GROUPS}
    return load_file(str(path)), sizes


@pytest.mark.parametrize("group", GROUPS)
def test_encode_matches_reference(pose_vectors, group: str) -> None:
    vec, sizes = pose_vectors
    enc = cameras_to_pose_encoding(vec[f"{group}.extrinsics"], vec[f"{group}.intrinsics"], sizes[group])
    assert enc.dtype == torch.float32
    assert_close(enc, vec[f"{group}.pose_enc"], rel=1e-6)


def test_encode_180_degree_quaternions_exact(pose_vectors) -> None:
    vec, sizes = pose_vectors
    enc = cameras_to_pose_encoding(vec["g0.extrinsics"], vec["g0.intrinsics"], sizes["g0"])
    quats = enc[..., 3:7].reshape(4, 4)
    expected = torch.tensor([[0, 0, 0, 1], [1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0]], dtype=torch.float32)
    assert torch.equal(quats, expected)
    assert torch.equal(enc, vec["g0.pose_enc"])


@pytest.mark.parametrize("group", GROUPS)
def test_decode_roundtrip_matches_reference(pose_vectors, group: str) -> None:
    vec, sizes = pose_vectors
    extr, intr = pose_encoding_to_cameras(vec[f"{group}.pose_enc"], sizes[group])
    assert_close(extr, vec[f"{group}.roundtrip_extrinsics"])
    assert_close(intr, vec[f"{group}.roundtrip_intrinsics"])


@pytest.mark.parametrize("group", GROUPS)
def test_decode_non_unit_quaternions(pose_vectors, group: str) -> None:
    vec, sizes = pose_vectors
    extr, intr = pose_encoding_to_cameras(vec[f"{group}.rand_pose_enc"], sizes[group])
    assert_close(extr, vec[f"{group}.rand_extrinsics"])
    assert_close(intr, vec[f"{group}.rand_intrinsics"])


def test_decode_any_leading_dims(pose_vectors) -> None:
    vec, sizes = pose_vectors
    enc = vec["g2.rand_pose_enc"]
    extr, intr = pose_encoding_to_cameras(enc.reshape(4, 9), sizes["g2"])
    assert_close(extr, vec["g2.rand_extrinsics"].reshape(4, 3, 4))
    assert_close(intr, vec["g2.rand_intrinsics"].reshape(4, 3, 3))
    extr1, _ = pose_encoding_to_cameras(enc[0, 0], sizes["g2"])
    assert_close(extr1, vec["g2.rand_extrinsics"][0, 0])


def test_quaternion_matrix_roundtrip_random() -> None:
    gen = torch.Generator().manual_seed(0)
    quat = torch.randn(1000, 4, generator=gen, dtype=torch.float64)
    quat = quat / quat.norm(dim=-1, keepdim=True)
    quat = torch.where(quat[:, 3:] < 0, -quat, quat)
    rot = quat_xyzw_to_matrix(3.0 * quat)  # a non-unit scale must not matter
    eye = torch.eye(3, dtype=torch.float64).expand_as(rot)
    assert torch.allclose(rot @ rot.transpose(-1, -2), eye, atol=1e-12)
    assert torch.allclose(torch.linalg.det(rot), torch.ones(1000, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(matrix_to_quat_xyzw(rot), quat, atol=1e-12)


def test_invert_rigid_and_homogeneous() -> None:
    gen = torch.Generator().manual_seed(1)
    rot = quat_xyzw_to_matrix(torch.randn(5, 4, generator=gen, dtype=torch.float64))
    trans = torch.randn(5, 3, 1, generator=gen, dtype=torch.float64)
    w2c = torch.cat((rot, trans), dim=-1)
    hom = to_homogeneous(w2c)
    assert hom.shape == (5, 4, 4)
    assert torch.equal(hom[:, 3], torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=torch.float64).expand(5, 4))
    eye = torch.eye(4, dtype=torch.float64).expand(5, 4, 4)
    assert torch.allclose(invert_rigid(w2c) @ hom, eye, atol=1e-12)
    assert torch.allclose(invert_rigid(hom), torch.linalg.inv(hom), atol=1e-12)


@pytest.mark.parametrize("config", ["tiny_conv", "tiny_dino"])
@pytest.mark.parametrize("views", ["s3", "s1"])
def test_unproject_matches_reference(vggt_parity: Path, config: str, views: str) -> None:
    out = load_file(str(vggt_parity / config / f"outputs_{views}.safetensors"))
    depth, extr, intr = out["depth"][0], out["extrinsic"][0], out["intrinsic"][0]
    expected = out["world_points_from_depth"]

    points = unproject_depth(depth, extr, intr, pixel_centre=0.0)
    assert isinstance(points, torch.Tensor) and points.dtype == torch.float32
    assert_close(points, expected)

    points_np = unproject_depth(depth.numpy(), extr.numpy(), intr.numpy(), pixel_centre=0.0)
    assert isinstance(points_np, np.ndarray) and points_np.dtype == np.float32
    assert_close(torch.from_numpy(points_np), expected)

    points_4x4 = unproject_depth(depth[..., 0], to_homogeneous(extr), intr, pixel_centre=0.0)
    assert_close(points_4x4, expected)


def test_unproject_fronto_parallel_plane() -> None:
    # A camera at world position c looking down world +z (R = I) sees the
    # plane z = c_z + d at constant depth d; w2c translation is t = -c.
    height, width, d = 6, 8, 2.5
    center = torch.tensor([0.3, -1.0, 4.0])
    extr = torch.cat((torch.eye(3), -center[:, None]), dim=-1)[None]
    fx, fy, cx, cy = 10.0, 12.0, width / 2, height / 2
    intr = torch.tensor([[[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]]])
    depth = torch.full((1, height, width, 1), d)

    points = unproject_depth(depth, extr, intr, pixel_centre=0.0)[0]
    assert points.shape == (height, width, 3)
    assert torch.allclose(points[..., 2], torch.full((height, width), center[2] + d))
    u = torch.arange(width, dtype=torch.float32)
    v = torch.arange(height, dtype=torch.float32)
    assert torch.allclose(points[0, :, 0], center[0] + (u - cx) * d / fx)
    assert torch.allclose(points[:, 0, 1], center[1] + (v - cy) * d / fy)
    # Pixel (cx, cy) is on the optical axis.
    assert torch.allclose(points[int(cy), int(cx)], center + torch.tensor([0.0, 0.0, d]))


def test_unproject_rotated_camera_sees_plane() -> None:
    # Same plane seen by a camera rotated 90 degrees about world y: its optical
    # axis is world +x, so every point lands on the plane x = c_x + d.
    half = math.sqrt(0.5)
    rot_c2w = quat_xyzw_to_matrix(torch.tensor([0.0, half, 0.0, half]))
    assert torch.allclose(rot_c2w @ torch.tensor([0.0, 0.0, 1.0]), torch.tensor([1.0, 0.0, 0.0]), atol=1e-6)
    center = torch.tensor([1.0, 2.0, 3.0])
    w2c = invert_rigid(torch.cat((rot_c2w, center[:, None]), dim=-1))[None]
    intr = torch.tensor([[[20.0, 0.0, 5.0], [0.0, 20.0, 4.0], [0.0, 0.0, 1.0]]])
    points = unproject_depth(torch.full((1, 8, 10), 3.0), w2c, intr, pixel_centre=0.0)[0]
    assert torch.allclose(points[..., 0], torch.full((8, 10), 4.0), atol=1e-6)

