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

import dataclasses
import multiprocessing as mp
import queue
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from recon3d.geometry.cameras import cameras_to_pose_encoding, pixel_grid
from recon3d.io.atomic import atomic_path
from recon3d.networks.vggt.descriptor_head import DESCRIPTOR_STRIDE
from recon3d.synth import SynthScene, make_scene

# Evaluation uses scene seeds below this; training seeds start here, so no held-out
# scene is ever seen in training.
TRAIN_SEED_OFFSET = 1_000_000


@dataclass
class SceneRequest:
    kind: str
    seed: int
    num_views: int
    size_wh: tuple[int, int]
    textures: str = "classic"


@dataclass
class Sample:
    """S views of one scene (or ``[B,S,...]`` for a stacked batch), in the sample's normalised frame.

    images ``[S,3,H,W]`` in [0,1]; pose_enc ``[S,9]``; depth ``[S,H,W]`` (0 = invalid);
    points ``[S,H,W,3]`` world points; valid ``[S,H,W]`` bool; extrinsics ``[S,3,4]``
    world-to-camera; intrinsics ``[S,3,3]`` pixels; matches ``[S,S,P]`` int64: for patch
    ``p`` of view ``i``, the index of the patch of view ``j`` that sees the same surface
    point (-1 where it is hidden, outside view ``j``, or ``i == j``; see `patch_matches`);
    cell_matches ``[S,S,C]`` int64: the same for the descriptor head's 4x4-pixel cells.
    """

    images: torch.Tensor
    pose_enc: torch.Tensor
    depth: torch.Tensor
    points: torch.Tensor
    valid: torch.Tensor
    extrinsics: torch.Tensor
    intrinsics: torch.Tensor
    matches: torch.Tensor
    cell_matches: torch.Tensor

    def tensors(self) -> tuple[torch.Tensor, ...]:
        return tuple(getattr(self, f.name) for f in dataclasses.fields(self))

    def to(self, device: torch.device | str) -> Sample:
        return Sample(*(t.to(device, non_blocking=True) for t in self.tensors()))


def stack_samples(samples: list[Sample]) -> Sample:
    """One batch ``[B,S,...]`` from samples of equal view count and image size."""
    return Sample(*(torch.stack(parts) for parts in zip(*(s.tensors() for s in samples))))


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


def patch_matches(points: np.ndarray, extrinsics: np.ndarray, intrinsics: np.ndarray, depth: np.ndarray,
                  valid: np.ndarray, patch: int, tolerance: float = 0.03) -> np.ndarray:
    """Which patch of every other view sees the surface point at each patch's centre.

    Args:
        points: ``[S,H,W,3]`` world points; extrinsics ``[S,4,4]`` world-to-camera;
            intrinsics ``[S,3,3]`` (continuous pixels); depth ``[S,H,W]``; valid ``[S,H,W]``.
        patch: patch size in pixels (H and W are multiples of it).
        tolerance: relative depth difference under which a projected point counts as
            visible in the other view (larger: it is behind a nearer surface).

    Returns:
        ``[S,S,P]`` int64, P = (H/patch)·(W/patch) patches in row-major order; -1 where
        the centre pixel has no surface, the point is outside or hidden in view ``j``,
        and on the diagonal ``i == j``.
    """
    s, h, w = depth.shape
    gh, gw = h // patch, w // patch
    rows = np.arange(gh) * patch + patch // 2
    cols = np.arange(gw) * patch + patch // 2
    centre_points = points[:, rows][:, :, cols].reshape(s, -1, 3)
    centre_valid = valid[:, rows][:, :, cols].reshape(s, -1)
    out = np.full((s, s, gh * gw), -1, dtype=np.int64)
    for j in range(s):
        cam = centre_points @ extrinsics[j, :3, :3].T + extrinsics[j, :3, 3]
        z = cam[..., 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            pix = cam @ intrinsics[j].T
            u = np.floor(pix[..., 0] / z)
            v = np.floor(pix[..., 1] / z)
        inside = centre_valid & (z > 1e-6) & (u >= 0) & (u < w) & (v >= 0) & (v < h)
        ui, vi = np.where(inside, u, 0).astype(np.int64), np.where(inside, v, 0).astype(np.int64)
        seen = depth[j][vi, ui]
        visible = inside & valid[j][vi, ui] & (np.abs(seen - z) <= tolerance * np.maximum(z, 1e-6))
        target = (vi // patch) * gw + ui // patch
        out[:, j] = np.where(visible, target, -1)
        out[j, j] = -1
    return out


def sample_from_scene(scene, view_ids: np.ndarray, generator: torch.Generator, augment: bool = True,
                      patch: int = 28) -> Sample:
    """A ``Sample`` made of ``scene``'s views ``view_ids`` (first one = reference frame).

    ``patch`` is the network's patch size, for the correspondence targets.
    """
    h, w = scene.depths.shape[1:]
    masks = scene.masks[view_ids]
    intrinsics = scene.intrinsics[view_ids]
    ext, depth, points = normalise_views(
        scene.extrinsics_w2c[view_ids], scene.depths[view_ids].astype(np.float64), intrinsics, masks,
    )
    images = torch.from_numpy(scene.images[view_ids]).permute(0, 3, 1, 2).float() / 255.0
    if augment:
        images = photometric_augment(images, generator)
    extrinsics = torch.from_numpy(ext[:, :3]).float()
    intrinsics_t = torch.from_numpy(intrinsics).float()
    pose_enc = cameras_to_pose_encoding(extrinsics, intrinsics_t, (h, w))
    matches = patch_matches(points, ext, intrinsics, depth, masks, patch)
    cell_matches = patch_matches(points, ext, intrinsics, depth, masks, DESCRIPTOR_STRIDE)
    return Sample(images, pose_enc, torch.from_numpy(depth).float(), torch.from_numpy(points).float(),
                  torch.from_numpy(masks), extrinsics, intrinsics_t, torch.from_numpy(matches),
                  torch.from_numpy(cell_matches))


def choose_views(scene, num_views: int, max_angle_deg: float, generator: torch.Generator) -> np.ndarray:
    """Indices of ``num_views`` views of ``scene``, the first being the reference.

    Trajectories (videos) give a contiguous window, forwards or backwards. Other scenes
    give a random reference and views whose optical axes turn at most ``max_angle_deg``
    from it (the nearest ones when too few do): a curriculum widens this angle from small
    arcs, where every view overlaps the reference, to whole rings.
    """
    total = scene.num_views
    if scene.kind == "trajectory":
        start = int(torch.randint(total - num_views + 1, (1,), generator=generator))
        ids = np.arange(start, start + num_views)
        return ids[::-1].copy() if torch.rand(1, generator=generator) < 0.5 else ids
    reference = int(torch.randint(total, (1,), generator=generator))
    axes = scene.extrinsics_w2c[:, 2, :3]
    angles = np.degrees(np.arccos(np.clip(axes @ axes[reference], -1.0, 1.0)))
    others = np.array([i for i in range(total) if i != reference])
    order = others[torch.randperm(len(others), generator=generator).numpy()]
    near = [i for i in order if angles[i] <= max_angle_deg]
    if len(near) < num_views - 1:
        near += sorted((i for i in order if angles[i] > max_angle_deg), key=lambda i: angles[i])
    return np.array([reference, *near[: num_views - 1]])


def render_scene(request: SceneRequest, cache_dir: str | Path | None = None) -> SynthScene:
    """The scene ``request`` asks for, read from ``cache_dir`` when an earlier run rendered it.

    A cached scene holds only what training reads (images, depths, masks, cameras) in an
    uncompressed ``.npz`` without pickles, written atomically; a run that resumes, or a
    GPU run fed from scenes rendered beforehand, then spends no time on rendering.
    """
    path = None
    if cache_dir is not None:
        width, height = request.size_wh
        name = f"{request.kind}-{request.seed}-{request.num_views}-{width}x{height}-{request.textures}.npz"
        path = Path(cache_dir) / name
        if path.is_file():
            with np.load(path, allow_pickle=False) as data:
                arrays = {key: data[key] for key in _CACHED_ARRAYS}
            return SynthScene(**arrays, normals=np.zeros((*arrays["depths"].shape, 3), np.float32),
                              object_ids=np.full(arrays["depths"].shape, -1, np.int16), kind=request.kind,
                              seed=request.seed, names=[f"{i:03d}" for i in range(request.num_views)],
                              textures=request.textures)
    scene = make_scene(request.kind, request.seed, request.num_views, request.size_wh, textures=request.textures)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, **{key: getattr(scene, key) for key in _CACHED_ARRAYS})
    return scene


_CACHED_ARRAYS = ("images", "depths", "masks", "extrinsics_w2c", "intrinsics")


def _render_worker(requests: mp.Queue, scenes: mp.Queue, cache_dir: str | None) -> None:
    torch.set_num_threads(1)
    while True:
        request = requests.get()
        if request is None:
            return
        scenes.put(render_scene(request, cache_dir))


class ScenePool:
    """Rolling pool of rendered scenes fed by ``workers`` background processes.

    Args:
        kinds: scene kinds and their sampling weights.
        textures: texture families (`recon3d.synth.textures.TEXTURE_FAMILIES`) and their weights.
        sizes_wh: image sizes (multiples of the patch size) drawn per scene.
        views_per_scene: views rendered per scene (samples take subsets).
        pool_size: scenes kept; a new scene replaces the oldest.
        seed: base seed; scene seeds are ``TRAIN_SEED_OFFSET + seed * 10**6 + counter``.
        workers: render processes (0 renders in the calling process, for tests).
        cache_dir: folder of rendered scenes to reuse and add to (see `render_scene`).
    """

    def __init__(self, kinds: dict[str, float], sizes_wh: list[tuple[int, int]], views_per_scene: int,
                 pool_size: int, seed: int, workers: int = 1, start_counter: int = 0,
                 cache_dir: str | Path | None = None, textures: dict[str, float] | None = None):
        self.kinds = list(kinds)
        self.kind_p = np.asarray(list(kinds.values()), dtype=float) / sum(kinds.values())
        textures = textures or {"classic": 1.0}
        self.textures = list(textures)
        self.texture_p = np.asarray(list(textures.values()), dtype=float) / sum(textures.values())
        self.sizes_wh = sizes_wh
        self.views_per_scene = views_per_scene
        self.pool_size = pool_size
        self.seed = seed
        self.counter = start_counter
        self.rng = np.random.default_rng([seed, start_counter])
        self.pool: list = []
        self.workers = workers
        self.cache_dir = cache_dir
        self._procs: list[mp.Process] = []
        if workers:
            ctx = mp.get_context("spawn")
            self._requests: mp.Queue = ctx.Queue()
            self._scenes: mp.Queue = ctx.Queue(maxsize=2 * workers + 2)
            cache = None if cache_dir is None else str(cache_dir)
            self._procs = [ctx.Process(target=_render_worker, args=(self._requests, self._scenes, cache), daemon=True)
                           for _ in range(workers)]
            for proc in self._procs:
                proc.start()
            for _ in range(2 * workers + 2):
                self._request()

    def _next_request(self) -> SceneRequest:
        kind = self.kinds[self.rng.choice(len(self.kinds), p=self.kind_p)]
        size = self.sizes_wh[self.rng.integers(len(self.sizes_wh))]
        textures = self.textures[self.rng.choice(len(self.textures), p=self.texture_p)]
        request = SceneRequest(kind, TRAIN_SEED_OFFSET + self.seed * 10**6 + self.counter,
                               self.views_per_scene, tuple(size), textures)
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
                scene = render_scene(r, self.cache_dir)
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

    def draw(self, num_views: int, generator: torch.Generator, augment: bool = True, *,
             max_angle_deg: float = 180.0, patch: int = 28, size_wh: tuple[int, int] | None = None) -> Sample:
        """A sample of ``num_views`` views from a random pooled scene (of ``size_wh`` if given).

        The pool only grows here when it is empty: the caller decides how often new
        scenes come in (``refill``), so rendering never silently takes over the CPU.
        """
        if not self.pool:
            self.refill(block=True, max_new=1)
        candidates = [sc for sc in self.pool if size_wh is None or sc.size_wh == tuple(size_wh)] or self.pool
        scene = candidates[int(torch.randint(len(candidates), (1,), generator=generator))]
        ids = choose_views(scene, min(num_views, scene.num_views), max_angle_deg, generator)
        return sample_from_scene(scene, ids, generator, augment, patch)

    def draw_batch(self, batch: int, num_views: int, generator: torch.Generator, *, max_angle_deg: float = 180.0,
                   patch: int = 28) -> Sample:
        """``batch`` samples of one image size stacked into ``[B,S,...]`` (one forward pass).

        The size is that of a random pooled scene, so sizes are drawn in the proportions
        the pool holds; scenes of that size are drawn with replacement (a repeated scene
        still gives a different view subset and augmentation).
        """
        if not self.pool:
            self.refill(block=True, max_new=1)
        size = self.pool[int(torch.randint(len(self.pool), (1,), generator=generator))].size_wh
        return stack_samples([self.draw(num_views, generator, max_angle_deg=max_angle_deg, patch=patch,
                                        size_wh=size) for _ in range(batch)])

    def close(self) -> None:
        for _ in self._procs:
            self._requests.put(None)
        for proc in self._procs:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.terminate()
