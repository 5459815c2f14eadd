"""Training samples streamed from procedural scenes.

Scenes are rendered by background processes into a bounded queue; the trainer keeps a
rolling pool of recent scenes and draws each sample from it (a view subset plus
photometric augmentation), so rendering and training overlap and every rendered scene
is used a few times in different ways.

Ground truth follows VGGT's normalisation: the first view of a sample is the world
frame, and the scene is scaled so that the mean distance of its valid points to that
camera is 1. The network learns to predict in this frame and scale.
"""
from __future__ import annotations

import multiprocessing as mp
import queue
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from recon3d.geometry.cameras import cameras_to_pose_encoding, pixel_grid
from recon3d.synth import make_scene

# Evaluation uses scene seeds below this; training seeds start here, so no held-out
# scene is ever seen in training.
TRAIN_SEED_OFFSET = 1_000_000


@dataclass
class SceneRequest:
    kind: str
    seed: int
    num_views: int
    size_wh: tuple[int, int]


@dataclass
class Sample:
    """One training example of S views, every tensor in the sample's normalised frame.

    images ``[S,3,H,W]`` in [0,1]; pose_enc ``[S,9]``; depth ``[S,H,W]`` (0 = invalid);
    points ``[S,H,W,3]`` world points; valid ``[S,H,W]`` bool.
    """

    images: torch.Tensor
    pose_enc: torch.Tensor
    depth: torch.Tensor
    points: torch.Tensor
    valid: torch.Tensor

    def to(self, device: torch.device | str) -> Sample:
        return Sample(*(t.to(device, non_blocking=True) for t in
                        (self.images, self.pose_enc, self.depth, self.points, self.valid)))


def normalise_views(extrinsics_w2c: np.ndarray, depths: np.ndarray, intrinsics: np.ndarray,
                    masks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Move views into the first camera's frame and scale to unit mean point distance.

    Args:
        extrinsics_w2c: ``[S,4,4]`` float64 world→camera.
        depths: ``[S,H,W]`` z-depth (metres), valid where ``masks``.
        intrinsics: ``[S,3,3]`` pixels, continuous convention (centres at +0.5).
        masks: ``[S,H,W]`` bool.

    Returns:
        extrinsics ``[S,4,4]`` (view 0 = identity), depths ``[S,H,W]`` and world points
        ``[S,H,W,3]``, all divided by the scale.
    """
    s, h, w = depths.shape
    rel = extrinsics_w2c @ np.linalg.inv(extrinsics_w2c[0])
    rays = np.einsum("sij,hwj->shwi", np.linalg.inv(intrinsics), pixel_grid(h, w, homogeneous=True))
    cam_points = rays * depths[..., None]
    c2w = np.linalg.inv(rel)
    world = np.einsum("sij,shwj->shwi", c2w[:, :3, :3], cam_points) + c2w[:, None, None, :3, 3]
    scale = float(np.linalg.norm(world[masks], axis=-1).mean()) if masks.any() else 1.0
    rel = rel.copy()
    rel[:, :3, 3] /= scale
    return rel, depths / scale, np.where(masks[..., None], world / scale, 0.0)


def photometric_augment(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Colour jitter, blur and noise, drawn independently per view. ``[S,3,H,W]`` in [0,1]."""
    s = images.shape[0]

    def uniform(lo: float, hi: float, *shape: int) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(*shape, generator=generator)

    out = images * uniform(0.7, 1.3, s, 1, 1, 1)  # brightness
    mean = out.mean(dim=(1, 2, 3), keepdim=True)
    out = (out - mean) * uniform(0.7, 1.3, s, 1, 1, 1) + mean  # contrast
    grey = out.mean(dim=1, keepdim=True)
    out = (out - grey) * uniform(0.6, 1.4, s, 1, 1, 1) + grey  # saturation
    out = out * uniform(0.9, 1.1, s, 3, 1, 1)  # white balance
    blur = torch.rand(s, generator=generator) < 0.3
    if blur.any():
        sigma = float(uniform(0.5, 1.5, 1))
        radius = 2
        x = torch.arange(-radius, radius + 1, dtype=images.dtype)
        kernel = torch.exp(-0.5 * (x / sigma) ** 2)
        kernel = kernel / kernel.sum()
        blurred = F.conv2d(F.pad(out[blur].flatten(0, 1)[:, None], (radius,) * 4, mode="replicate"),
                           (kernel[:, None] * kernel[None, :])[None, None])
        out[blur] = blurred.view(-1, 3, *out.shape[-2:])
    noise = uniform(0.0, 0.03, s, 1, 1, 1)
    out = out + noise * torch.randn(out.shape, generator=generator)
    return out.clamp(0.0, 1.0)


def sample_from_scene(scene, view_ids: np.ndarray, generator: torch.Generator, augment: bool = True) -> Sample:
    """A ``Sample`` made of ``scene``'s views ``view_ids`` (first one = reference frame)."""
    h, w = scene.depths.shape[1:]
    ext, depth, points = normalise_views(
        scene.extrinsics_w2c[view_ids], scene.depths[view_ids].astype(np.float64),
        scene.intrinsics[view_ids], scene.masks[view_ids],
    )
    images = torch.from_numpy(scene.images[view_ids]).permute(0, 3, 1, 2).float() / 255.0
    if augment:
        images = photometric_augment(images, generator)
    pose_enc = cameras_to_pose_encoding(
        torch.from_numpy(ext[:, :3]).float(), torch.from_numpy(scene.intrinsics[view_ids]).float(), (h, w)
    )
    return Sample(images, pose_enc, torch.from_numpy(depth).float(), torch.from_numpy(points).float(),
                  torch.from_numpy(scene.masks[view_ids]))


def _render_worker(requests: mp.Queue, scenes: mp.Queue) -> None:
    torch.set_num_threads(1)
    while True:
        request = requests.get()
        if request is None:
            return
        scenes.put(make_scene(request.kind, request.seed, request.num_views, request.size_wh))


class ScenePool:
    """Rolling pool of rendered scenes fed by ``workers`` background processes.

    Args:
        kinds: scene kinds and their sampling weights.
        sizes_wh: image sizes (multiples of the patch size) drawn per scene.
        views_per_scene: views rendered per scene (samples take subsets).
        pool_size: scenes kept; a new scene replaces the oldest.
        seed: base seed; scene seeds are ``TRAIN_SEED_OFFSET + seed * 10**6 + counter``.
        workers: render processes (0 renders in the calling process, for tests).
    """

    def __init__(self, kinds: dict[str, float], sizes_wh: list[tuple[int, int]], views_per_scene: int,
                 pool_size: int, seed: int, workers: int = 1, start_counter: int = 0):
        self.kinds = list(kinds)
        self.kind_p = np.asarray(list(kinds.values()), dtype=float) / sum(kinds.values())
        self.sizes_wh = sizes_wh
        self.views_per_scene = views_per_scene
        self.pool_size = pool_size
        self.seed = seed
        self.counter = start_counter
        self.rng = np.random.default_rng([seed, start_counter])
        self.pool: list = []
        self.workers = workers
        self._procs: list[mp.Process] = []
        if workers:
            ctx = mp.get_context("spawn")
            self._requests: mp.Queue = ctx.Queue()
            self._scenes: mp.Queue = ctx.Queue(maxsize=2 * workers + 2)
            self._procs = [ctx.Process(target=_render_worker, args=(self._requests, self._scenes), daemon=True)
                           for _ in range(workers)]
            for proc in self._procs:
                proc.start()
            for _ in range(2 * workers + 2):
                self._request()

    def _next_request(self) -> SceneRequest:
        kind = self.kinds[self.rng.choice(len(self.kinds), p=self.kind_p)]
        size = self.sizes_wh[self.rng.integers(len(self.sizes_wh))]
        request = SceneRequest(kind, TRAIN_SEED_OFFSET + self.seed * 10**6 + self.counter,
                               self.views_per_scene, tuple(size))
        self.counter += 1
        return request

    def _request(self) -> None:
        self._requests.put(self._next_request())

    def refill(self, block: bool, max_new: int | None = None) -> None:
        """Take up to ``max_new`` finished scenes into the pool (waiting for one if ``block``)."""
        taken = 0
        while max_new is None or taken < max_new:
            taken += 1
            if self.workers == 0:
                r = self._next_request()
                scene = make_scene(r.kind, r.seed, r.num_views, r.size_wh)
            else:
                try:
                    scene = self._scenes.get(block=block, timeout=600 if block else None)
                except queue.Empty:
                    return
                self._request()
            self.pool.append(scene)
            if len(self.pool) > self.pool_size:
                self.pool.pop(0)
            block = False
            if self.workers == 0:
                return

    def draw(self, num_views: int, generator: torch.Generator, augment: bool = True) -> Sample:
        """A sample of ``num_views`` views from a random pooled scene.

        The pool only grows here when it is empty: the caller decides how often new
        scenes come in (``refill``), so rendering never silently takes over the CPU.
        """
        if not self.pool:
            self.refill(block=True, max_new=1)
        scene = self.pool[int(torch.randint(len(self.pool), (1,), generator=generator))]
        total = scene.num_views
        if scene.kind == "trajectory":
            # Video-like: a contiguous window, in order or reversed.
            start = int(torch.randint(total - num_views + 1, (1,), generator=generator))
            ids = np.arange(start, start + num_views)
            if torch.rand(1, generator=generator) < 0.5:
                ids = ids[::-1].copy()
        else:
            ids = torch.randperm(total, generator=generator)[:num_views].numpy()
        return sample_from_scene(scene, ids, generator, augment)

    def close(self) -> None:
        for _ in self._procs:
            self._requests.put(None)
        for proc in self._procs:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.terminate()
