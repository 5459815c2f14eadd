"""SIFT on grey images, spread over worker processes that import neither torch nor the caller.

COLMAP's extractor holds the GIL, so threads cannot share the work; a forked process can
deadlock on torch's thread pools, and a spawned multiprocessing worker re-runs the
caller's main script when it lacks a ``__main__`` guard. Workers are therefore plain
``python -m recon3d.refine.sift`` processes: each reads its images from an ``.npz`` file,
prints the index of every image it finishes (progress) and writes its keypoints to
another ``.npz`` (no pickles either way).
"""
from __future__ import annotations

import os
import queue
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

_EXTRACTORS: dict[tuple[int, float, int], object] = {}


def detect(grey: np.ndarray, max_features: int, peak_threshold: float,
           first_octave: int) -> tuple[np.ndarray, np.ndarray]:
    """COLMAP's CPU SIFT on ``grey [H,W]`` uint8.

    Returns:
        ``[N,2]`` float64 keypoint centres (pixels of ``grey``, continuous convention) and
        ``[N,128]`` float32 descriptors, the ``max_features`` largest-scale keypoints in
        order of decreasing scale (they survive viewpoint changes best; the extractor
        returns more than asked, one per orientation and octave).
    """
    import pycolmap

    key = (max_features, peak_threshold, first_octave)
    if key not in _EXTRACTORS:
        options = pycolmap.FeatureExtractionOptions()
        options.num_threads = 1
        options.sift.max_num_features = max_features
        options.sift.peak_threshold = peak_threshold
        options.sift.first_octave = first_octave
        _EXTRACTORS[key] = pycolmap.FeatureExtractor.create(options, device=pycolmap.Device.cpu)
    keypoints, descriptors = _EXTRACTORS[key].extract_from_uint8_array(np.ascontiguousarray(grey))
    shape = np.array([(k.x, k.y, k.compute_scale()) for k in keypoints], dtype=np.float64).reshape(-1, 3)
    desc = np.asarray(descriptors.data, dtype=np.float32).reshape(-1, 128)
    keep = np.argsort(-shape[:, 2], kind="stable")[:max_features]
    return shape[keep, :2], desc[keep]


def detect_all(greys: Sequence[np.ndarray], first_octaves: Sequence[int], max_features: int,
               peak_threshold: float, workers: int,
               on_image: Callable[[int], None] | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """`detect` on every image, in order, in ``workers`` processes (1: in this one).

    Images are dealt round-robin. A worker that fails (it could not start, or died) only
    costs time: its images are then done in this process. ``on_image`` hears the number
    of images done after each one.
    """
    results: list[tuple[np.ndarray, np.ndarray] | None] = [None] * len(greys)
    if workers > 1:
        _detect_in_workers(greys, first_octaves, max_features, peak_threshold, workers, results, on_image)
    for index, grey in enumerate(greys):
        if results[index] is None:
            results[index] = detect(grey, max_features, peak_threshold, first_octaves[index])
            if on_image is not None:
                on_image(sum(r is not None for r in results))
    return results


def _detect_in_workers(greys, first_octaves, max_features, peak_threshold, workers, results, on_image) -> None:
    import pycolmap

    # The workers import recon3d from wherever this process found it.
    package_root = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")])))
    finished: queue.Queue = queue.Queue()
    with tempfile.TemporaryDirectory(prefix="recon3d-sift-") as folder:
        processes = []
        for worker in range(workers):
            indices = list(range(worker, len(greys), workers))
            inputs, outputs = Path(folder) / f"in{worker}.npz", Path(folder) / f"out{worker}.npz"
            np.savez(inputs, indices=np.array(indices), first_octaves=np.array([first_octaves[i] for i in indices]),
                     settings=np.array([max_features, peak_threshold, int(pycolmap.logging.minloglevel)]),
                     **{f"grey{i}": greys[i] for i in indices})
            try:
                process = subprocess.Popen([sys.executable, "-m", "recon3d.refine.sift", str(inputs), str(outputs)],
                                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                           env=env, text=True)
            except OSError:
                continue
            threading.Thread(target=_forward_lines, args=(process.stdout, finished), daemon=True).start()
            processes.append((process, outputs))
        done, running = 0, len(processes)
        while running:
            line = finished.get()
            if line is None:
                running -= 1
            elif on_image is not None:
                done += 1
                on_image(done)
        for process, outputs in processes:
            if process.wait() != 0 or not outputs.is_file():
                continue
            with np.load(outputs, allow_pickle=False) as data:
                for index in data["indices"]:
                    results[int(index)] = (data[f"xy{index}"], data[f"desc{index}"])


def _forward_lines(stream, finished: queue.Queue) -> None:
    for line in stream:
        finished.put(line)
    finished.put(None)


def _worker(inputs: str, outputs: str) -> None:
    import pycolmap

    with np.load(inputs, allow_pickle=False) as data:
        max_features, peak_threshold, log_level = data["settings"]
        pycolmap.logging.minloglevel = int(log_level)
        found = {}
        for index, first_octave in zip(data["indices"], data["first_octaves"]):
            xy, desc = detect(data[f"grey{index}"], int(max_features), float(peak_threshold), int(first_octave))
            found[f"xy{index}"], found[f"desc{index}"] = xy, desc
            print(index, flush=True)
        indices = data["indices"]
    partial = outputs + ".part"
    with open(partial, "wb") as fh:
        np.savez(fh, indices=indices, **found)
    os.replace(partial, outputs)


if __name__ == "__main__":
    _worker(sys.argv[1], sys.argv[2])
