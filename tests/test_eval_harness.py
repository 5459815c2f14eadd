"""COLMAP reference reading, the evaluation harness's plumbing, the model path and the baseline."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from rich.table import Table

from recon3d.errors import InputError
from recon3d.eval.colmap_reference import read_colmap_model
from recon3d.eval.harness import (
    evaluate_baseline,
    evaluate_prediction,
    format_report,
    load_scene_reference,
    run_eval_cli,
    select_views,
)
from recon3d.geometry.align import Sim3
from recon3d.settings import ReconstructionSettings
from recon3d.synth import make_scene, write_scene
from recon3d.types import Prediction


def parse_images_txt(path: Path) -> dict[int, tuple[str, np.ndarray]]:
    """image id -> (name, ``[K,2]`` keypoint coordinates), read from the text file by hand."""
    lines = [ln for ln in path.read_text().splitlines() if not ln.startswith("#")]
    images = {}
    for header, points in zip(lines[0::2], lines[1::2]):
        fields = header.split()
        coords = np.array(points.split(), dtype=np.float64).reshape(-1, 3)[:, :2]
        images[int(fields[0])] = (fields[9], coords)
    return images


def parse_points3d_txt(path: Path, limit: int) -> list[tuple[np.ndarray, float, list[tuple[int, int]]]]:
    """The first ``limit`` points: (xyz, mean reprojection error, [(image id, keypoint index), ...])."""
    points = []
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            continue
        fields = line.split()
        track = np.array(fields[8:], dtype=np.int64).reshape(-1, 2)
        points.append((np.array(fields[1:4], dtype=np.float64), float(fields[7]), [tuple(t) for t in track]))
        if len(points) == limit:
            break
    return points


def test_colmap_reference_of_llff_fern_reprojects(shared_dir: Path) -> None:
    folder = shared_dir / "data" / "llff_fern" / "colmap_reference"
    model = read_colmap_model(folder)

    assert model.num_images == 20
    assert model.names[0] == "000.png"
    rotations = model.extrinsics_w2c[:, :3, :3]
    np.testing.assert_allclose(rotations @ rotations.transpose(0, 2, 1), np.broadcast_to(np.eye(3), (20, 3, 3)), atol=1e-9)
    np.testing.assert_allclose(np.linalg.det(rotations), 1.0, atol=1e-9)
    np.testing.assert_array_equal(model.image_sizes, np.tile([529, 706], (20, 1)))
    assert model.camera_models == ["SIMPLE_RADIAL"] * 20
    assert len(model.points) == 3081

    # Independent check of the conventions: project points3D.txt through the parsed
    # w2c and K (plus SIMPLE_RADIAL's k1, applied by hand) onto the keypoints in images.txt.
    # Each point's mean error must equal its ERROR column (COLMAP's own mean reprojection
    # error); single observations may reach COLMAP's 4 px filter limit.
    keypoints = parse_images_txt(folder / "images.txt")
    all_errors = []
    for xyz, listed_error, track in parse_points3d_txt(folder / "points3D.txt", limit=50):
        errors = []
        for image_id, point2d_idx in track:
            name, coords = keypoints[image_id]
            i = model.names.index(name)
            x_cam = model.extrinsics_w2c[i, :3, :3] @ xyz + model.extrinsics_w2c[i, :3, 3]
            normalised = x_cam[:2] / x_cam[2]
            k1 = model.camera_params[i][3]
            distorted = normalised * (1 + k1 * (normalised**2).sum())
            K = model.intrinsics[i]
            pixel = K[:2, :2] @ distorted + K[:2, 2]
            errors.append(np.linalg.norm(pixel - coords[point2d_idx]))
        assert np.mean(errors) == pytest.approx(listed_error, abs=1e-6)
        all_errors += errors
    assert len(all_errors) > 200
    assert np.median(all_errors) < 1.0
    assert np.percentile(all_errors, 90) < 2.0
    assert max(all_errors) < 4.0


def test_colmap_reference_errors_are_one_line(tmp_path: Path, shared_dir: Path) -> None:
    with pytest.raises(InputError, match="not found"):
        read_colmap_model(tmp_path / "missing")
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("cameras.txt", "points3D.txt"):
        (broken / name).write_text((shared_dir / "data" / "llff_fern" / "colmap_reference" / name).read_text())
    (broken / "images.txt").write_text("1 not numbers at all\n\n")
    with pytest.raises(InputError) as info:
        read_colmap_model(broken)
    assert "\n" not in str(info.value)


def test_kitchen_reference_lists_only_registered_images(shared_dir: Path) -> None:
    model = read_colmap_model(shared_dir / "data" / "kitchen" / "colmap_reference")
    assert model.num_images == 24
    assert len(set(model.names)) == 24


def test_select_views_spreads_evenly() -> None:
    paths = [Path(f"{i}.png") for i in range(10)]
    assert [p.stem for p in select_views(paths, 4)] == ["0", "3", "6", "9"]
    assert select_views(paths, None) == paths
    assert select_views(paths, 50) == paths
    with pytest.raises(InputError):
        select_views(paths, 0)


def test_non_scene_folder_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cameras.json"):
        load_scene_reference(tmp_path)


@pytest.fixture(scope="module")
def tiny_scene(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 views of a synthetic object scene at 64x48, written in the synth folder layout."""
    return write_scene(make_scene("object", 3, 3, (64, 48)), tmp_path_factory.mktemp("scene") / "object_3")


def ground_truth_prediction(scene_dir: Path, similarity: Sim3, step: int) -> Prediction:
    """A Prediction that is the scene's ground truth in another similarity frame.

    ``step`` > 1 samples every ``step``-th original pixel (at offset step // 2), as a
    model grid ``step`` times coarser whose pixel centres land on those pixels.
    """
    reference = load_scene_reference(scene_dir)
    depths = reference.depths[:, step // 2 :: step, step // 2 :: step]
    points = reference.surface_points[:, step // 2 :: step, step // 2 :: step]
    views, height, width = depths.shape
    K = np.array([[50.0 / step, 0, width / 2], [0, 50.0 / step, height / 2], [0, 0, 1]])
    ones = np.ones((views, height, width), dtype=np.float32)
    return Prediction(
        images=np.zeros((views, 3, height, width), dtype=np.float32),
        extrinsics_w2c=similarity.apply_to_w2c(reference.extrinsics_w2c).astype(np.float32),
        intrinsics=np.repeat(K[None], views, axis=0).astype(np.float32),
        depth=(depths * similarity.scale).astype(np.float32),
        depth_conf=ones,
        points=similarity.apply(points).astype(np.float32),
        points_conf=ones,
        to_original=np.repeat(np.diag([float(step), float(step), 1.0])[None], views, axis=0).astype(np.float32),
        original_sizes=np.repeat([[48, 64]], views, axis=0),
        names=[p.name for p in reference.image_paths],
        model_name="ground truth",
    )


def test_ground_truth_prediction_scores_perfectly(tiny_scene: Path) -> None:
    reference = load_scene_reference(tiny_scene)
    # The prediction lives in a scaled, rotated, shifted world frame: metrics must not care.
    frame = Sim3(0.25, np.array([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]]), np.array([3.0, -1.0, 2.0]))
    prediction = ground_truth_prediction(tiny_scene, frame, step=1)

    result = evaluate_prediction(prediction, reference)

    assert result["registered_views"] == 3
    camera = result["camera"]
    assert camera["auc@5"] == camera["auc@30"] == 1.0
    assert camera["ate_normalised"] < 1e-5
    for variant in ("median_scaled", "scene_scaled"):
        assert result["depth"][variant]["abs_rel"] < 1e-6
        assert result["depth"][variant]["delta1"] == 1.0
    point_map = result["geometry"]["point_map"]
    assert point_map["chamfer"] < 1e-5
    assert point_map["scene_size"] > 0
    # The depth-map cloud goes through Prediction.points_from_depth, which unprojects at
    # integer pixel coordinates (VGGT's convention) while the reference sees pixel centres:
    # half a pixel apart, so close but not exact.
    assert result["geometry"]["depth_map"]["chamfer"] < 0.02


def test_coarser_model_grid_is_compared_through_to_original(tiny_scene: Path) -> None:
    reference = load_scene_reference(tiny_scene)
    prediction = ground_truth_prediction(tiny_scene, Sim3.identity(), step=4)
    assert prediction.image_size_hw == (12, 16)

    result = evaluate_prediction(prediction, reference)

    # Nearest-neighbour resampling picks exactly the pixels the prediction was cut from.
    assert result["depth"]["median_scaled"]["abs_rel"] < 1e-6
    assert result["depth"]["median_scaled"]["num_pixels"] == int((reference.depths[:, 2::4, 2::4] > 0).sum())
    # Every predicted point lies on the surface; a 4x sparser cloud leaves gaps.
    point_map = result["geometry"]["point_map"]
    assert point_map["accuracy"] < 1e-5
    assert point_map["completeness"] > point_map["accuracy"]


def test_views_without_reference_are_left_out(tiny_scene: Path) -> None:
    reference = load_scene_reference(tiny_scene)
    prediction = ground_truth_prediction(tiny_scene, Sim3.identity(), step=1)
    prediction.names[1] = "unknown.png"

    result = evaluate_prediction(prediction, reference)

    assert result["registered_views"] == 2
    assert result["camera"]["num_pairs"] == 1
    assert result["camera"]["auc@30"] == 1.0


def test_model_path_runs_and_reports(tiny_scene: Path, tmp_path: Path) -> None:
    out = tmp_path / "reports" / "eval.json"
    settings = ReconstructionSettings(model="vggt-untrained-small", device="cpu")
    report = run_eval_cli(tiny_scene, settings, out, baseline=False, max_points=5000)

    assert json.loads(out.read_text()) == report
    assert report["kind"] == "synthetic"
    assert report["views"] == ["000.png", "001.png", "002.png"]
    (method,) = report["methods"]
    assert method["method"] == "recon3d" and method["registered_views"] == 3
    numbers = [method["camera"]["auc@30"], method["camera"]["ate"], method["depth"]["median_scaled"]["abs_rel"],
               method["depth"]["scene_scaled"]["delta1"], method["geometry"]["point_map"]["chamfer"], method["time_s"]]
    assert all(isinstance(x, float) and np.isfinite(x) for x in numbers)

    table = format_report(report)
    assert isinstance(table, Table)
    assert table.row_count == 1


def test_pycolmap_baseline_on_a_tiny_trajectory(tmp_path: Path) -> None:
    # Six 256x192 views along a smooth path: COLMAP registers them in about a second.
    scene_dir = write_scene(make_scene("trajectory", 2, 6, (256, 192)), tmp_path / "trajectory_6")
    reference = load_scene_reference(scene_dir)

    block = evaluate_baseline(reference.image_paths, reference)

    assert block["method"] == "pycolmap"
    assert block["registered_views"] >= 5
    assert block["time_s"] > 0
    assert block["camera"]["auc@30"] > 0.8
    assert block["camera"]["ate_normalised"] < 0.05
