"""`recon3d batch`: manifest, broken scenes, resuming, SIGKILL, worker processes, Ray."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from helpers.cli import run_cli
from PIL import Image
from plyfile import PlyData

from recon3d.batch import run_batch
from recon3d.exports import ExportOptions
from recon3d.settings import ReconstructionSettings

pytestmark = pytest.mark.slow  # subprocesses, worker pools, Ray, a SIGKILL

MODEL = "vggt-untrained-small"


def make_root(root: Path, good: int, broken: bool = True) -> Path:
    """``good`` scenes of two random photos each, plus (optionally) an empty scene and
    one whose only image is truncated."""
    rng = np.random.default_rng(0)
    for index in range(good):
        scene = root / f"scene_{index}"
        scene.mkdir(parents=True)
        for view in range(2):
            Image.fromarray(rng.integers(0, 255, (96, 128, 3), dtype=np.uint8)).save(scene / f"{view}.png")
    if broken:
        (root / "empty_scene").mkdir(parents=True)
        (root / "corrupt_scene").mkdir(parents=True)
        data = (root / "scene_0" / "0.png").read_bytes()
        (root / "corrupt_scene" / "0.png").write_bytes(data[: len(data) // 3])
    return root


def manifest_of(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text())["scenes"]


def test_broken_scenes_fail_alone_and_a_rerun_skips_what_is_done(tmp_path):
    root, out = make_root(tmp_path / "root", good=3), tmp_path / "out"
    args = ("batch", str(root), "-o", str(out), "--model", MODEL, "--export", "ply", "--conf-percentile", "10")
    first = run_cli(*args)
    assert first.returncode == 1, first.stderr  # some scenes failed
    scenes = manifest_of(out)
    assert sorted(n for n, e in scenes.items() if e["status"] == "done") == ["scene_0", "scene_1", "scene_2"]
    assert sorted(n for n, e in scenes.items() if e["status"] == "failed") == ["corrupt_scene", "empty_scene"]
    assert "no images" in scenes["empty_scene"]["error"]
    assert "0.png" in scenes["corrupt_scene"]["error"]
    for name in ("scene_0", "scene_1", "scene_2"):
        # The random-weight model's cameras may be degenerate (no points): the file
        # must still be complete and parse.
        PlyData.read(out / name / "points.ply")
        assert scenes[name]["outputs"] == ["points.ply"] and scenes[name]["views"] == 2
    assert not (out / "empty_scene").exists()

    second = run_cli(*args)
    assert "skipping 3 scene(s) already done" in second.stderr
    rerun = manifest_of(out)
    for name in ("scene_0", "scene_1", "scene_2"):
        assert rerun[name] == scenes[name]  # untouched, not redone


def test_a_batch_killed_midway_reruns_to_complete_valid_outputs(tmp_path):
    root, out = make_root(tmp_path / "root", good=4, broken=False), tmp_path / "out"
    args = [sys.executable, "-m", "recon3d", "batch", str(root), "-o", str(out), "--model", MODEL,
            "--export", "ply,npz", "--conf-percentile", "10"]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    # Kill once at least one scene is recorded and another one is being written.
    while time.time() < deadline:
        done = manifest_of(out) if (out / "manifest.json").exists() else {}
        if done and list(out.glob(".*.part")):
            break
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    killed_manifest = manifest_of(out)
    assert 1 <= len(killed_manifest) < 4

    result = run_cli("batch", str(root), "-o", str(out), "--model", MODEL, "--export", "ply,npz", "--conf-percentile", "10")
    assert result.returncode == 0, result.stderr
    scenes = manifest_of(out)
    assert all(entry["status"] == "done" for entry in scenes.values()) and len(scenes) == 4
    assert not list(out.glob(".*"))
    from recon3d.types import Prediction

    for name in scenes:
        PlyData.read(out / name / "points.ply")
        assert Prediction.load_npz(out / name / "prediction.npz").num_views == 2


def test_worker_processes_share_the_scenes(tmp_path):
    root, out = make_root(tmp_path / "root", good=3, broken=False), tmp_path / "out"
    result = run_cli("batch", str(root), "-o", str(out), "--model", MODEL, "--export", "ply", "--workers", "2")
    assert result.returncode == 0, result.stderr
    assert [e["status"] for e in manifest_of(out).values()] == ["done"] * 3


def test_ray_executor_on_a_local_instance(tmp_path):
    ray = pytest.importorskip("ray")
    root, out = make_root(tmp_path / "root", good=3, broken=False), tmp_path / "out"
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        manifest = run_batch(root, out, ReconstructionSettings(model=MODEL, formats=["ply"], export=ExportOptions(conf_percentile=10)),
                             workers=2, executor="ray")
    finally:
        ray.shutdown()
    assert sorted(manifest["scenes"]) == ["scene_0", "scene_1", "scene_2"]
    assert all(e["status"] == "done" for e in manifest["scenes"].values())
    assert all((out / n / "points.ply").is_file() for n in manifest["scenes"])


def test_manifest_records_each_scenes_refinement(tmp_path):
    root, out = make_root(tmp_path / "root", good=1, broken=False), tmp_path / "out"
    result = run_cli("batch", str(root), "-o", str(out), "--model", MODEL, "--export", "npz", "--refine", "ba")
    assert result.returncode == 0, result.stderr
    refinement = manifest_of(out)["scene_0"]["refinement"]
    # A random-weight network (degenerate cameras) on two unrelated noise images: nothing
    # to refine, the prediction is kept and the manifest says why.
    assert refinement["status"] == "failed" and refinement["reason"]
    assert sorted(refinement["views"]) == ["0.png", "1.png"]
    assert all(view["status"] == "failed" for view in refinement["views"].values())
    assert refinement["reprojection_after_px"] is None


def test_batch_root_errors_are_one_line(tmp_path):
    (tmp_path / "nothing").mkdir()
    result = run_cli("batch", str(tmp_path / "nothing"), "-o", str(tmp_path / "out"))
    assert result.returncode == 1
    assert [line for line in result.stderr.splitlines() if line.strip()] == [
        line for line in result.stderr.splitlines() if "no scene subfolders" in line]


def test_manifest_lists_the_files_a_scene_skipped(tmp_path):
    import dataclasses

    from recon3d.io.inputs import InputOptions

    root, out = make_root(tmp_path / "root", good=2, broken=False), tmp_path / "out"
    data = (root / "scene_1" / "0.png").read_bytes()
    (root / "scene_1" / "2_cut.png").write_bytes(data[:100])
    settings = ReconstructionSettings(model=MODEL, formats=["npz"])
    scenes = run_batch(root, out, settings)["scenes"]
    assert scenes["scene_0"]["status"] == "done" and scenes["scene_0"]["skipped"] == []
    assert scenes["scene_1"]["status"] == "done" and scenes["scene_1"]["views"] == 2
    (skipped,) = scenes["scene_1"]["skipped"]
    assert Path(skipped["path"]).name == "2_cut.png" and "cannot read" in skipped["reason"]
    assert manifest_of(out)["scene_1"]["skipped"] == scenes["scene_1"]["skipped"]  # as written to disk

    strict = run_batch(root, tmp_path / "strict", dataclasses.replace(settings, inputs=InputOptions(strict=True)))
    assert strict["scenes"]["scene_0"]["status"] == "done"
    assert strict["scenes"]["scene_1"]["status"] == "failed" and "2_cut.png" in strict["scenes"]["scene_1"]["error"]
