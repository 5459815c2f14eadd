"""3DGS PLY, compressed PLY, point-cloud PLY and .splat files against plyfile and the
documented layouts."""
from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers.gaussians import random_gaussians
from plyfile import PlyData, PlyElement

from recon3d.errors import InputError
from recon3d.io.ply import read_gaussians_ply, write_gaussians_ply, write_points_ply
from recon3d.io.ply_compressed import morton_order, read_ply_compressed, write_ply_compressed
from recon3d.io.splat import read_splat, write_splat
from recon3d.types import SH_C0, Gaussians

# The INRIA 3DGS vertex layout, spelled out independently of recon3d.io.ply.
INRIA_HEAD = ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
INRIA_TAIL = ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]


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


# ---------------------------------------------------------------- compressed PLY

COMPRESSED_CHUNK = (
    [f"{m}_{a}" for m in ("min", "max") for a in "xyz"]
    + [f"{m}_scale_{a}" for m in ("min", "max") for a in "xyz"]
    + [f"{m}_{c}" for m in ("min", "max") for c in "rgb"]
)


def _chunk_bounds(ply: PlyData, prefix: str, axes: str, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-Gaussian ``[N,3]`` min and max of its chunk (Gaussian i is in chunk i // 256)."""
    chunk = ply["chunk"]
    low = np.stack([np.asarray(chunk[f"min_{prefix}{a}"], np.float64) for a in axes], axis=1)
    high = np.stack([np.asarray(chunk[f"max_{prefix}{a}"], np.float64) for a in axes], axis=1)
    index = np.arange(count) // 256
    return low[index], high[index]


def check_compressed_round_trip(path: Path, original: Gaussians, back: Gaussians) -> None:
    """Every field of ``back`` within the quantisation bound of ``original``, the bounds
    derived from the chunk ranges stored in the file (read with plyfile)."""
    ply = PlyData.read(str(path))
    n = len(back)
    # Half a quantisation step of 11, 10, 11 bits over the chunk's range, plus float32
    # rounding.
    steps = np.array([2047.0, 1023.0, 2047.0])
    low, high = _chunk_bounds(ply, "", "xyz", n)
    means = original.means.double().numpy()
    error = np.abs(back.means.double().numpy() - means)
    assert (error <= (high - low) / (2 * steps) + 3e-7 * np.abs(means) + 1e-7).all()
    low, high = _chunk_bounds(ply, "scale_", "xyz", n)
    error = np.abs(back.scales.double().log().numpy() - original.scales.double().log().numpy())
    assert (error <= (high - low) / (2 * steps) + 1e-6).all()
    low, high = _chunk_bounds(ply, "", "rgb", n)
    rgb = lambda g: 0.5 + SH_C0 * g.sh[:, 0].double().numpy()  # noqa: E731
    assert (np.abs(rgb(back) - rgb(original)) <= (high - low) / 510 + 1e-6).all()
    assert ((back.opacities.double() - original.opacities.double()).abs() <= 1 / 510 + 1e-6).all()
    # Three components stored with steps of sqrt(2)/1023; the largest (>= 1/2) recovered
    # from them, with at most 3x their error.
    assert_quats_equal_up_to_sign(back.quats.double(), original.quats.double(), atol=3 * math.sqrt(2) / 2046 + 1e-6)
    # SH bands >= 1: bins of 8/256 read back at their centres.
    if original.sh.shape[1] > 1:
        assert (torch.abs(back.sh[:, 1:] - original.sh[:, 1:]) <= 1 / 64 + 1e-6).all()


@pytest.mark.parametrize("degree", [0, 2])
def test_ply_compressed_layout_and_round_trip(tmp_path: Path, degree: int) -> None:
    n = 600  # two full chunks and a partial one
    gaussians = random_gaussians(n, degree)
    path = tmp_path / "g.compressed.ply"
    write_ply_compressed(path, gaussians, sort=False)

    ply = PlyData.read(str(path))
    assert ply.header.splitlines()[1] == "format binary_little_endian 1.0"
    assert [e.name for e in ply.elements] == ["chunk", "vertex"] + (["sh"] if degree else [])
    assert ply["chunk"].count == math.ceil(n / 256) == 3
    assert [(p.name, p.val_dtype) for p in ply["chunk"].properties] == [(name, "f4") for name in COMPRESSED_CHUNK]
    assert [(p.name, p.val_dtype) for p in ply["vertex"].properties] == [
        ("packed_position", "u4"), ("packed_rotation", "u4"), ("packed_scale", "u4"), ("packed_color", "u4")]
    if degree:
        assert [(p.name, p.val_dtype) for p in ply["sh"].properties] == [(f"f_rest_{k}", "u1") for k in range(24)]
        assert ply["sh"].count == n
    # Chunk 1 holds Gaussians 256..511 (unsorted): its ranges are theirs.
    part = gaussians.means[256:512].numpy()
    np.testing.assert_allclose([ply["chunk"][f"min_{a}"][1] for a in "xyz"], part.min(0), rtol=1e-6)
    np.testing.assert_allclose([ply["chunk"][f"max_{a}"][1] for a in "xyz"], part.max(0), rtol=1e-6)

    back = read_ply_compressed(path)
    assert len(back) == n and back.sh.shape == gaussians.sh.shape
    check_compressed_round_trip(path, gaussians, back)
    # 16 bytes per Gaussian (+ 3 per SH coefficient beyond DC) and 72 per chunk.
    data_bytes = 72 * 3 + n * (16 + 3 * ((degree + 1) ** 2 - 1))
    assert data_bytes < path.stat().st_size < data_bytes + 2000


def test_ply_compressed_packs_known_values(tmp_path: Path) -> None:
    # Two Gaussians, so every chunk range is spanned by them: one sits at the minimum of
    # every field (packed zeros), the other at the maximum (packed all ones).
    gaussians = Gaussians(
        means=torch.tensor([[0.0, -1.0, 2.0], [4.0, 1.0, 3.0]]),
        quats=torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.0, -0.6, 0.0, 0.8]]),
        scales=torch.tensor([[0.1, 0.2, 0.3], [1.0, 2.0, 3.0]]),
        opacities=torch.tensor([0.0 + 1 / 255, 1.0]),
        sh=torch.tensor([[[-0.4, -0.2, 0.0]], [[0.6, 0.8, 1.0]]]) / SH_C0,
    )
    path = tmp_path / "two.compressed.ply"
    write_ply_compressed(path, gaussians, sort=False)
    vertex = PlyData.read(str(path))["vertex"]
    assert int(vertex["packed_position"][0]) == 0 and int(vertex["packed_position"][1]) == 0xFFFFFFFF
    assert int(vertex["packed_scale"][0]) == 0 and int(vertex["packed_scale"][1]) == 0xFFFFFFFF
    assert int(vertex["packed_color"][0]) == 0x00000001 and int(vertex["packed_color"][1]) == 0xFFFFFFFF
    # (1,0,0,0): w (index 0) is largest; x, y, z = 0 map to 0.5 -> round(511.5) = 512.
    assert int(vertex["packed_rotation"][0]) == (0 << 30) | (512 << 20) | (512 << 10) | 512
    # (0,-0.6,0,0.8): z (index 3) is largest and positive; w, x, y = 0, -0.6, 0 map to
    # 0.5 + v/sqrt(2): 512, round(1023 * 0.07574) = 77, 512.
    assert int(vertex["packed_rotation"][1]) == (3 << 30) | (512 << 20) | (77 << 10) | 512


def test_morton_order_of_a_cube() -> None:
    corners = np.array([[x, y, z] for z in (0, 1) for y in (0, 1) for x in (0, 1)], dtype=float)
    shuffled = corners[[5, 2, 7, 0, 3, 6, 1, 4]]
    # Z-order visits x fastest, then y, then z (x in the lowest bit of each triple).
    np.testing.assert_array_equal(shuffled[morton_order(shuffled)], corners)
    # The curve finishes the half y < 1/2 of the z < 1/2 half before entering y >= 1/2.
    points = np.array([[0.0, 1.0, 0.0], [0.6, 0.0, 0.0], [0.4, 0.0, 0.0], [1.0, 1.0, 1.0], [0.0, 0.0, 0.0]])
    np.testing.assert_array_equal(morton_order(points), [4, 2, 1, 0, 3])


def test_ply_compressed_sorting_and_size(tmp_path: Path) -> None:
    from scipy.spatial import cKDTree

    from recon3d.gaussians import gaussians_from_prediction
    from recon3d.synth import make_scene
    from recon3d.synth.truth import scene_prediction as gt_prediction

    scene = make_scene("object", 0, 3, (96, 72))
    gaussians = gaussians_from_prediction(gt_prediction(scene), keep=scene.masks)
    shuffle = torch.as_tensor(np.random.default_rng(0).permutation(len(gaussians)))
    gaussians = Gaussians(*(getattr(gaussians, f)[shuffle] for f in ("means", "quats", "scales", "opacities", "sh")))
    paths = {name: tmp_path / f"{name}.compressed.ply" for name in ("sorted", "unsorted")}
    write_ply_compressed(paths["sorted"], gaussians)
    write_ply_compressed(paths["unsorted"], gaussians, sort=False)
    write_gaussians_ply(tmp_path / "g.ply", gaussians)

    def chunk_diagonals(path: Path) -> np.ndarray:
        chunk = PlyData.read(str(path))["chunk"]
        return np.linalg.norm([chunk[f"max_{a}"] - chunk[f"min_{a}"] for a in "xyz"], axis=0)

    # Morton order makes chunks compact (each holds 1/80 of a surface: about a ninth of
    # the scene across), hence the quantisation steps small; shuffled chunks span it all.
    assert np.median(chunk_diagonals(paths["sorted"])) < 0.2 * np.median(chunk_diagonals(paths["unsorted"]))
    back = read_ply_compressed(paths["sorted"])
    assert len(back) == len(gaussians)
    # The file is a permutation of the input: match every read Gaussian to its nearest input.
    _, match = cKDTree(gaussians.means.numpy()).query(back.means.numpy())
    assert len(np.unique(match)) == len(gaussians)
    check_compressed_round_trip(paths["sorted"], select_rows(gaussians, match), back)
    assert paths["sorted"].stat().st_size < 0.3 * (tmp_path / "g.ply").stat().st_size


def select_rows(gaussians: Gaussians, index: np.ndarray) -> Gaussians:
    index = torch.as_tensor(index)
    return Gaussians(*(getattr(gaussians, f)[index] for f in ("means", "quats", "scales", "opacities", "sh")))


def test_ply_compressed_drops_invisible_and_nonfinite_and_writes_empty_files(tmp_path: Path) -> None:
    gaussians = random_gaussians(6, 1)
    gaussians.opacities[1] = 0.5 / 255
    gaussians.means[4, 2] = float("inf")
    write_ply_compressed(tmp_path / "g.compressed.ply", gaussians, sort=False)
    back = read_ply_compressed(tmp_path / "g.compressed.ply")
    check_compressed_round_trip(tmp_path / "g.compressed.ply", select_rows(gaussians, np.array([0, 2, 3, 5])), back)

    write_ply_compressed(tmp_path / "empty.compressed.ply", random_gaussians(0, 0))
    ply = PlyData.read(str(tmp_path / "empty.compressed.ply"))
    assert ply["chunk"].count == 0 and ply["vertex"].count == 0
    assert len(read_ply_compressed(tmp_path / "empty.compressed.ply")) == 0
    write_gaussians_ply(tmp_path / "plain.ply", random_gaussians(3, 0))
    with pytest.raises(InputError, match="compressed"):
        read_ply_compressed(tmp_path / "plain.ply")
    assert not list(tmp_path.glob(".*.part"))

