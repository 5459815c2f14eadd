"""3DGS PLY, point-cloud PLY and .splat files against plyfile and the documented layouts."""
from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from plyfile import PlyData, PlyElement

from recon3d.errors import InputError
from recon3d.io.ply import read_gaussians_ply, write_gaussians_ply, write_points_ply
from recon3d.io.splat import read_splat, write_splat
from recon3d.types import SH_C0, Gaussians

# The INRIA 3DGS vertex layout, spelled out independently of recon3d.io.ply.
INRIA_HEAD = ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
INRIA_TAIL = ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]


def random_gaussians(n: int, degree: int, seed: int = 0) -> Gaussians:
    gen = torch.Generator().manual_seed(seed)
    quats = torch.randn(n, 4, generator=gen)
    return Gaussians(
        means=torch.randn(n, 3, generator=gen) * 3,
        quats=quats / quats.norm(dim=-1, keepdim=True),
        scales=torch.rand(n, 3, generator=gen) * 0.5 + 0.01,
        opacities=torch.rand(n, generator=gen) * 0.98 + 0.01,
        sh=torch.randn(n, (degree + 1) ** 2, 3, generator=gen) * 0.5,
    )


def assert_quats_equal_up_to_sign(actual: torch.Tensor, expected: torch.Tensor, atol: float) -> None:
    flip = torch.where((actual * expected).sum(-1, keepdim=True) < 0, -1.0, 1.0)
    torch.testing.assert_close(actual * flip, expected, atol=atol, rtol=0)


@pytest.mark.parametrize("degree", [0, 1, 3])
def test_ply_round_trip(tmp_path: Path, degree: int) -> None:
    gaussians = random_gaussians(200, degree)
    path = tmp_path / "g.ply"
    write_gaussians_ply(path, gaussians)
    back = read_gaussians_ply(path)
    assert len(back) == 200 and back.sh_degree == degree
    for name in ("means", "scales", "opacities", "sh"):
        torch.testing.assert_close(getattr(back, name), getattr(gaussians, name), atol=1e-6, rtol=0)
    assert_quats_equal_up_to_sign(back.quats, gaussians.quats, atol=1e-6)


def test_ply_fields_and_raw_values(tmp_path: Path) -> None:
    gaussians = random_gaussians(4, 3)
    gaussians.opacities[0] = 0.9
    gaussians.scales[1] = torch.tensor([0.5, 2.0, 1.0])
    gaussians.quats[2] = torch.tensor([0.0, 0.6, 0.0, 0.8])
    path = tmp_path / "g.ply"
    write_gaussians_ply(path, gaussians)

    ply = PlyData.read(str(path))
    assert ply.header.splitlines()[1] == "format binary_little_endian 1.0"
    vertex = ply["vertex"]
    names = [prop.name for prop in vertex.properties]
    assert names == INRIA_HEAD + [f"f_rest_{i}" for i in range(45)] + INRIA_TAIL
    assert all(prop.val_dtype == "f4" for prop in vertex.properties)
    # Opacity is a logit in the file: logit(0.9) = ln 9.
    assert abs(float(vertex["opacity"][0]) - 2.1972) < 1e-4
    assert abs(float(vertex["opacity"][0]) - math.log(9.0)) < 1e-6
    np.testing.assert_allclose([vertex[f"scale_{i}"][1] for i in range(3)], np.log([0.5, 2.0, 1.0]), atol=1e-6)
    np.testing.assert_allclose([vertex[f"rot_{i}"][2] for i in range(4)], [0.0, 0.6, 0.0, 0.8], atol=1e-7)
    np.testing.assert_array_equal([vertex[n] for n in ("nx", "ny", "nz")], np.zeros((3, 4)))


@pytest.mark.parametrize("degree", [1, 2, 3])
def test_ply_f_rest_is_channel_major(tmp_path: Path, degree: int) -> None:
    num_coeffs = (degree + 1) ** 2
    sh = torch.zeros(1, num_coeffs, 3)
    for k in range(num_coeffs):
        for c in range(3):
            sh[0, k, c] = 100 * c + k  # distinct: channel in the hundreds, coefficient in the units
    gaussians = random_gaussians(1, degree)
    gaussians.sh = sh
    path = tmp_path / "g.ply"
    write_gaussians_ply(path, gaussians)

    vertex = PlyData.read(str(path))["vertex"]
    expected = [100 * c + k for c in range(3) for k in range(1, num_coeffs)]
    stored = [float(vertex[f"f_rest_{j}"][0]) for j in range(3 * (num_coeffs - 1))]
    assert stored == expected
    assert [float(vertex[f"f_dc_{c}"][0]) for c in range(3)] == [0.0, 100.0, 200.0]


def test_ply_reader_accepts_files_without_normals(tmp_path: Path) -> None:
    names = ["x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2"] + [f"f_rest_{i}" for i in range(9)] + INRIA_TAIL
    row = [1, 2, 3, 0.1, 0.2, 0.3] + list(range(9)) + [0.0, 0.0, math.log(2), -1.0, 0, 3, 0, 4]
    vertices = np.array([tuple(row)], dtype=[(n, "<f4") for n in names])
    path = tmp_path / "gsplat.ply"
    PlyData([PlyElement.describe(vertices, "vertex")]).write(str(path))

    back = read_gaussians_ply(path)
    assert back.sh_degree == 1
    torch.testing.assert_close(back.means, torch.tensor([[1.0, 2.0, 3.0]]))
    torch.testing.assert_close(back.opacities, torch.tensor([0.5]))
    torch.testing.assert_close(back.scales, torch.tensor([[1.0, 2.0, math.exp(-1.0)]]))
    torch.testing.assert_close(back.quats, torch.tensor([[0.0, 0.6, 0.0, 0.8]]))
    torch.testing.assert_close(back.sh[0, 0], torch.tensor([0.1, 0.2, 0.3]))
    torch.testing.assert_close(back.sh[0, 1:, 0], torch.tensor([0.0, 1.0, 2.0]))  # R: f_rest_0..2
    torch.testing.assert_close(back.sh[0, 1:, 2], torch.tensor([6.0, 7.0, 8.0]))  # B: f_rest_6..8


@pytest.mark.parametrize(
    ("names", "message"),
    [
        (["x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2"] + [f"f_rest_{i}" for i in range(10)] + INRIA_TAIL, "f_rest"),
        (["x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity"], "missing"),
    ],
)
def test_ply_reader_rejects_bad_layouts(tmp_path: Path, names: list[str], message: str) -> None:
    path = tmp_path / "bad.ply"
    PlyData([PlyElement.describe(np.zeros(2, dtype=[(n, "<f4") for n in names]), "vertex")]).write(str(path))
    with pytest.raises(InputError, match=message):
        read_gaussians_ply(path)


def test_ply_reader_rejects_non_ply(tmp_path: Path) -> None:
    path = tmp_path / "junk.ply"
    path.write_bytes(b"not a ply file")
    with pytest.raises(InputError):
        read_gaussians_ply(path)


def test_ply_drops_nonfinite_rows_and_writes_empty_files(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    gaussians = random_gaussians(5, 0)
    gaussians.means[1, 0] = float("nan")
    gaussians.scales[3, 2] = float("inf")
    with caplog.at_level(logging.WARNING):
        write_gaussians_ply(tmp_path / "g.ply", gaussians)
    assert "dropped 2 of 5" in caplog.text
    back = read_gaussians_ply(tmp_path / "g.ply")
    torch.testing.assert_close(back.means, gaussians.means[[0, 2, 4]])

    empty = random_gaussians(0, 1)
    write_gaussians_ply(tmp_path / "empty.ply", empty)
    assert PlyData.read(str(tmp_path / "empty.ply"))["vertex"].count == 0
    assert len(read_gaussians_ply(tmp_path / "empty.ply")) == 0
    assert not list(tmp_path.glob(".*.part"))


def test_points_ply_layout(tmp_path: Path) -> None:
    points = np.array([[0.0, 1.0, 2.0], [3.0, 4.0, 5.0], [np.nan, 0.0, 0.0]])
    colors = np.array([[0.0, 0.5, 1.0], [1.0, 0.25, 0.0], [0.0, 0.0, 0.0]])
    normals = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    write_points_ply(tmp_path / "p.ply", points, colors, normals=normals)
    vertex = PlyData.read(str(tmp_path / "p.ply"))["vertex"]
    assert [(p.name, p.val_dtype) for p in vertex.properties] == [
        ("x", "f4"), ("y", "f4"), ("z", "f4"), ("nx", "f4"), ("ny", "f4"), ("nz", "f4"),
        ("red", "u1"), ("green", "u1"), ("blue", "u1"),
    ]
    assert vertex.count == 2
    np.testing.assert_array_equal(vertex["red"], [0, 255])
    np.testing.assert_array_equal(vertex["green"], [128, 64])
    np.testing.assert_array_equal(vertex["z"], [2.0, 5.0])

    write_points_ply(tmp_path / "q.ply", points[:2], np.array([[1, 2, 3], [4, 5, 6]], dtype=np.uint8))
    vertex = PlyData.read(str(tmp_path / "q.ply"))["vertex"]
    assert [p.name for p in vertex.properties] == ["x", "y", "z", "red", "green", "blue"]
    np.testing.assert_array_equal(vertex["blue"], [3, 6])


def test_splat_round_trip(tmp_path: Path) -> None:
    gaussians = random_gaussians(300, 2)
    # Keep colours inside [0,1] so that only quantisation, not clamping, is measured.
    gaussians.sh = gaussians.sh.clamp(-1.5, 1.5)
    path = tmp_path / "g.splat"
    write_splat(path, gaussians)
    assert path.stat().st_size == 32 * 300

    back = read_splat(path)
    score = gaussians.opacities * gaussians.scales.prod(-1)
    order = torch.argsort(score, descending=True)
    expected = [gaussians.means[order], gaussians.scales[order]]
    torch.testing.assert_close(back.means, expected[0], atol=0, rtol=0)
    torch.testing.assert_close(back.scales, expected[1], atol=0, rtol=0)
    torch.testing.assert_close(back.opacities, gaussians.opacities[order], atol=1 / 255, rtol=0)
    rgb_back = 0.5 + SH_C0 * back.sh[:, 0]
    rgb = 0.5 + SH_C0 * gaussians.sh[order, 0]
    torch.testing.assert_close(rgb_back, rgb, atol=1 / 255, rtol=0)
    assert back.sh.shape == (300, 1, 3)
    assert_quats_equal_up_to_sign(back.quats, gaussians.quats[order], atol=1 / 128)


def test_splat_raw_bytes(tmp_path: Path) -> None:
    gaussians = Gaussians(
        means=torch.tensor([[1.0, 2.0, 3.0]]),
        quats=torch.tensor([[2.0, 0.0, 0.0, 0.0]]),
        scales=torch.tensor([[0.1, 0.2, 0.3]]),
        opacities=torch.tensor([1.0]),
        sh=torch.tensor([[[-0.5 / SH_C0, 0.0, 0.5 / SH_C0]]]),
    )
    write_splat(tmp_path / "one.splat", gaussians)
    raw = (tmp_path / "one.splat").read_bytes()
    assert len(raw) == 32
    np.testing.assert_array_equal(np.frombuffer(raw[:24], "<f4"), np.float32([1, 2, 3, 0.1, 0.2, 0.3]))
    assert list(raw[24:28]) == [0, 128, 255, 255]
    assert list(raw[28:32]) == [255, 128, 128, 128]  # w = 1 → 256, clamped


def test_splat_empty_and_bad_size(tmp_path: Path) -> None:
    write_splat(tmp_path / "empty.splat", random_gaussians(0, 0))
    assert (tmp_path / "empty.splat").stat().st_size == 0
    assert len(read_splat(tmp_path / "empty.splat")) == 0
    (tmp_path / "bad.splat").write_bytes(b"\0" * 33)
    with pytest.raises(InputError, match="multiple of 32"):
        read_splat(tmp_path / "bad.splat")
