"""Rendering backends against independent references.

* ``reference_render`` below is a brute-force renderer written for this test in float64
  numpy: every pixel composites every Gaussian sorted by depth, rotations come from scipy,
  SH colours from scipy's complex spherical harmonics. It shares no code with
  ``recon3d.render``.
* gradients: ``torch.autograd.gradcheck`` on a tiny float64 scene.
* the fast CPU path is compared with the torch backend; SH against closed-form constants.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.special
import torch
from helpers.gaussians import make_cameras, make_scenes, to_gaussians
from scipy.spatial.transform import Rotation

from recon3d.render import fast_cpu, render
from recon3d.render.gsplat_backend import GsplatUnavailable
from recon3d.render.projection import eval_sh, view_colors
from recon3d.types import Gaussians

WIDTH, HEIGHT = 61, 45  # not multiples of the 16-pixel tile
NEAR = 0.01


# ---------------------------------------------------------------- reference renderer


def _complex_sh(band: int, m: int, polar: np.ndarray, azimuth: np.ndarray) -> np.ndarray:
    """Complex spherical harmonic Y_band^m with the Condon-Shortley phase (scipy's convention)."""
    if hasattr(scipy.special, "sph_harm_y"):
        return scipy.special.sph_harm_y(band, m, polar, azimuth)
    return scipy.special.sph_harm(m, band, azimuth, polar)


def reference_sh_basis(dirs: np.ndarray, degree: int) -> np.ndarray:
    """``[P,(degree+1)²]`` real SH basis of the 3DGS convention, ordered m = -l..l.

    The 3DGS basis is sqrt(2)·Im Y_l^|m| (m < 0), Y_l^0, sqrt(2)·Re Y_l^m (m > 0) of the
    complex harmonics with the Condon-Shortley phase.
    """
    d = dirs / np.linalg.norm(dirs, axis=-1, keepdims=True)
    polar = np.arccos(np.clip(d[:, 2], -1.0, 1.0))
    azimuth = np.arctan2(d[:, 1], d[:, 0])
    cols = []
    for band in range(degree + 1):
        for m in range(-band, band + 1):
            y = _complex_sh(band, abs(m), polar, azimuth)
            cols.append(math.sqrt(2) * y.imag if m < 0 else (y.real if m == 0 else math.sqrt(2) * y.real))
    return np.stack(cols, axis=-1)


def reference_render(scene: dict, viewmat: np.ndarray, K: np.ndarray, degree: int, background=None):
    """Brute-force float64 render of one camera: colours [H,W,3], depth Σw·z [H,W], alpha [H,W]."""
    means, scales, opac, sh = scene["means"], scene["scales"], scene["opacities"], scene["sh"]
    q = scene["quats"]
    rot = Rotation.from_quat(np.concatenate([q[:, 1:], q[:, :1]], axis=1)).as_matrix()  # scipy: x,y,z,w
    cov = rot @ (scales[:, :, None] ** 2 * np.transpose(rot, (0, 2, 1)))
    w_rot, w_t = viewmat[:3, :3], viewmat[:3, 3]
    mc = means @ w_rot.T + w_t
    cov_c = w_rot @ cov @ w_rot.T
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    x, y, z = mc[:, 0], mc[:, 1], mc[:, 2]
    keep = z >= NEAR
    x, y, z, cov_c = x[keep], y[keep], z[keep], cov_c[keep]
    # The Jacobian is evaluated with x/z, y/z limited to 1.3x the half field of view.
    lim_x = ((WIDTH - cx) / fx + 0.15 * WIDTH / fx, cx / fx + 0.15 * WIDTH / fx)
    lim_y = ((HEIGHT - cy) / fy + 0.15 * HEIGHT / fy, cy / fy + 0.15 * HEIGHT / fy)
    u = np.clip(x / z, -lim_x[1], lim_x[0])
    v = np.clip(y / z, -lim_y[1], lim_y[0])
    jac = np.zeros((len(z), 2, 3))
    jac[:, 0, 0] = fx / z
    jac[:, 0, 2] = -fx * u / z
    jac[:, 1, 1] = fy / z
    jac[:, 1, 2] = -fy * v / z
    cov2d = jac @ cov_c @ np.transpose(jac, (0, 2, 1)) + 0.3 * np.eye(2)
    conic = np.linalg.inv(cov2d)
    centre = np.stack([fx * x / z + cx, fy * y / z + cy], axis=-1)

    campos = -w_rot.T @ w_t
    basis = reference_sh_basis(means[keep] - campos, degree)
    rgb = np.maximum(np.einsum("nk,nkc->nc", basis, sh[keep][:, : (degree + 1) ** 2]) + 0.5, 0.0)

    jj, ii = np.meshgrid(np.arange(WIDTH) + 0.5, np.arange(HEIGHT) + 0.5)
    px, py = jj.ravel(), ii.ravel()
    trans = np.ones_like(px)
    stopped = np.zeros(px.shape, dtype=bool)
    out_rgb = np.zeros((px.size, 3))
    out_depth = np.zeros(px.size)
    for g in np.argsort(z, kind="stable"):
        dx, dy = centre[g, 0] - px, centre[g, 1] - py
        power = 0.5 * (conic[g, 0, 0] * dx * dx + conic[g, 1, 1] * dy * dy) + conic[g, 0, 1] * dx * dy
        alpha = np.minimum(0.99, opac[keep][g] * np.exp(-power))
        hit = ~stopped & (power >= 0) & (alpha >= 1 / 255)
        next_t = trans * (1 - alpha)
        stop = hit & (next_t <= 1e-4)
        blend = hit & ~stop
        w = np.where(blend, alpha * trans, 0.0)
        out_rgb += w[:, None] * rgb[g]
        out_depth += w * z[g]
        trans = np.where(blend, next_t, trans)
        stopped |= stop
    if background is not None:
        out_rgb += trans[:, None] * background
    shape = (HEIGHT, WIDTH)
    return out_rgb.reshape(shape + (3,)), out_depth.reshape(shape), (1 - trans).reshape(shape)


# ---------------------------------------------------------------- scenes and cameras


SCENES = make_scenes()
BACKGROUND = np.array([0.2, 0.3, 0.9])


def _render(scene: dict, backend: str, mode: str, degree: int = 3, background=BACKGROUND):
    viewmats, Ks = make_cameras()
    return render(
        to_gaussians(scene), torch.tensor(viewmats, dtype=torch.float32), torch.tensor(Ks, dtype=torch.float32),
        WIDTH, HEIGHT, backend=backend, sh_degree=degree, mode=mode,
        background=None if background is None else torch.tensor(background, dtype=torch.float32),
    )


# ---------------------------------------------------------------- tests


@pytest.mark.parametrize("name", sorted(SCENES))
def test_torch_backend_matches_brute_force(name):
    scene = SCENES[name]
    out = _render(scene, "torch", "RGB+ED")
    assert out.backend == "torch" and out.colors.shape == (2, HEIGHT, WIDTH, 4)
    viewmats, Ks = make_cameras()
    for cam in range(2):
        rgb, depth, alpha = reference_render(scene, viewmats[cam], Ks[cam], 3, BACKGROUND)
        expected_depth = depth / np.maximum(alpha, 1e-10)
        got = out.colors[cam].double().numpy()
        assert alpha.max() > 0.5  # the scene is visible in this camera
        np.testing.assert_allclose(got[..., :3], rgb, rtol=0, atol=1e-4)
        np.testing.assert_allclose(got[..., 3], expected_depth, rtol=0, atol=1e-4)
        np.testing.assert_allclose(out.alphas[cam, ..., 0].double().numpy(), alpha, rtol=0, atol=1e-4)


def test_stop_rule_and_alpha_clamp_are_exercised():
    """The overlapping scene reaches the transmittance cut-off and the 0.99 clamp."""
    scene = SCENES["overlapping"]
    viewmats, Ks = make_cameras()
    _, _, alpha = reference_render(scene, viewmats[0], Ks[0], 3)
    assert (alpha > 1 - 1e-3).sum() > 50
    assert (scene["opacities"] > 0.99).any()


@pytest.mark.parametrize("degree", [0, 1, 2])
def test_lower_sh_degrees_and_accumulated_depth(degree):
    scene = SCENES["anisotropic"]
    out = _render(scene, "torch", "RGB+D", degree=degree, background=None)
    viewmats, Ks = make_cameras()
    rgb, depth, _ = reference_render(scene, viewmats[1], Ks[1], degree)
    np.testing.assert_allclose(out.colors[1, ..., :3].double().numpy(), rgb, rtol=0, atol=1e-4)
    np.testing.assert_allclose(out.colors[1, ..., 3].double().numpy(), depth, rtol=0, atol=1e-4)


def test_gradcheck_torch_backend():
    gen = torch.Generator().manual_seed(3)
    n = 4
    f64 = dict(dtype=torch.float64)
    means = torch.stack([0.6 * torch.rand(n, generator=gen) - 0.3, 0.6 * torch.rand(n, generator=gen) - 0.3,
                         3.0 + torch.rand(n, generator=gen)], 1).to(**f64)
    quats = torch.randn(n, 4, generator=gen, **f64)
    scales = 0.9 + 0.4 * torch.rand(n, 3, generator=gen, **f64)
    opacities = 0.3 + 0.4 * torch.rand(n, generator=gen, **f64)
    sh = 0.2 * torch.randn(n, 4, 3, generator=gen, **f64)
    viewmats = torch.eye(4, **f64)[None]
    Ks = torch.tensor([[[10.0, 0.0, 4.1], [0.0, 10.0, 3.9], [0.0, 0.0, 1.0]]], **f64)
    inputs = tuple(t.requires_grad_(True) for t in (means, quats, scales, opacities, sh))

    def fn(*params):
        out = render(Gaussians(*params), viewmats, Ks, 8, 8, backend="torch", mode="RGB+ED")
        return out.colors, out.alphas

    colors, alphas = fn(*inputs)
    # Gaussians wide enough (2-3 px per sigma, all within 2.5 sigma of every pixel) that
    # alpha stays far above 1/255 and below the cut-offs: the function is smooth here.
    assert alphas.min() > 0.2 and alphas.max() < 0.99 and colors[..., :3].min() > 0
    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-6, rtol=1e-4, fast_mode=True)


needs_fast_cpu = pytest.mark.skipif(
    not fast_cpu.fast_cpu_available(), reason=f"fast CPU path unavailable: {fast_cpu.fast_cpu_unavailable_reason()}"
)


@needs_fast_cpu
@pytest.mark.parametrize("name", sorted(SCENES))
@pytest.mark.parametrize("mode", ["RGB+ED", "RGB", "D"])
def test_fast_cpu_matches_torch_backend(name, mode):
    fast = _render(SCENES[name], "cpu", mode)
    ref = _render(SCENES[name], "torch", mode)
    assert fast.backend == "cpu" and fast.colors.shape == ref.colors.shape
    torch.testing.assert_close(fast.colors, ref.colors, rtol=0, atol=1e-4)
    torch.testing.assert_close(fast.alphas, ref.alphas, rtol=0, atol=1e-4)


@needs_fast_cpu
def test_fast_cpu_matches_brute_force_expected_depth():
    scene = SCENES["off_screen"]
    out = _render(scene, "cpu", "ED", degree=1, background=None)
    viewmats, Ks = make_cameras()
    _, depth, alpha = reference_render(scene, viewmats[1], Ks[1], 1)
    np.testing.assert_allclose(out.colors[1, ..., 0].double().numpy(), depth / np.maximum(alpha, 1e-10), atol=1e-4)


def _hand_sh_table() -> dict[tuple[int, int, int], list[float]]:
    """Real SH (3DGS signs) at the six axis directions, from the closed forms
    Y00 = 1/(2√π); Y1m = √(3/4π)·(-y, z, -x); Y2m = ½√(15/π)xy, -½√(15/π)yz, ¼√(5/π)(3z²-1),
    -½√(15/π)xz, ¼√(15/π)(x²-y²); Y3m = -¼√(35/2π)y(3x²-y²), ½√(105/π)xyz,
    -¼√(21/2π)y(5z²-1), ¼√(7/π)z(5z²-3), -¼√(21/2π)x(5z²-1), ¼√(105/π)z(x²-y²),
    -¼√(35/2π)x(x²-3y²)."""
    pi = math.pi
    c0, c1 = 1 / (2 * math.sqrt(pi)), math.sqrt(3 / (4 * pi))
    y20, y22 = math.sqrt(5 / pi) / 4, math.sqrt(15 / pi) / 4
    y30, y31, y33 = math.sqrt(7 / pi) / 4, math.sqrt(21 / (2 * pi)) / 4, math.sqrt(35 / (2 * pi)) / 4
    table = {}
    for axis in range(3):
        for sign in (1, -1):
            d = [0, 0, 0]
            d[axis] = sign
            x, y, z = d
            table[tuple(d)] = [
                c0,
                -c1 * y, c1 * z, -c1 * x,
                0.0, 0.0, y20 * (3 * z * z - 1), 0.0, y22 * (x * x - y * y),
                -y33 * y * (3 * x * x - y * y), 0.0, -y31 * y * (5 * z * z - 1), y30 * z * (5 * z * z - 3),
                -y31 * x * (5 * z * z - 1), 0.0, -y33 * x * (x * x - 3 * y * y),
            ]
    return table


def test_sh_basis_matches_hand_constants_on_axes():
    for direction, expected in _hand_sh_table().items():
        dirs = torch.tensor([direction], dtype=torch.float64) * 2.5  # not unit: eval_sh normalises
        for k, value in enumerate(expected):
            coeffs = torch.zeros(1, 16, 3, dtype=torch.float64)
            coeffs[0, k] = torch.tensor([1.0, -2.0, 0.5])
            got = eval_sh(3, dirs, coeffs)[0]
            torch.testing.assert_close(got, value * torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64),
                                       rtol=0, atol=1e-12)


@pytest.mark.parametrize("degree", [1, 2, 3])
def test_view_colors_by_degree_from_camera_position(degree):
    table = _hand_sh_table()
    gen = torch.Generator().manual_seed(degree)
    coeffs = 0.3 * torch.randn(1, 16, 3, generator=gen, dtype=torch.float64)
    coeffs[0, 0] = torch.tensor([4.0, -8.0, 0.0])  # the green channel clamps at 0
    campos = torch.tensor([1.0, 2.0, -3.0], dtype=torch.float64)
    for direction, basis in table.items():
        mean = campos + 4.0 * torch.tensor(direction, dtype=torch.float64)
        got = view_colors(mean[None], coeffs, campos, degree)[0]
        used = (degree + 1) ** 2
        want = (torch.tensor(basis[:used], dtype=torch.float64)[:, None] * coeffs[0, :used]).sum(0) + 0.5
        torch.testing.assert_close(got, want.clamp_min(0.0), rtol=0, atol=1e-12)
        assert got[1] == 0


def test_auto_backend_choice():
    gaussians = to_gaussians(SCENES["anisotropic"])
    viewmats, Ks = (torch.tensor(a, dtype=torch.float32) for a in make_cameras())
    expected = "cpu" if fast_cpu.fast_cpu_available() else "torch"
    assert render(gaussians, viewmats, Ks, WIDTH, HEIGHT).backend == expected
    gaussians.means.requires_grad_(True)
    out = render(gaussians, viewmats, Ks, WIDTH, HEIGHT)
    assert out.backend == "torch" and out.colors.requires_grad
    with pytest.raises(ValueError, match="without gradients"):
        render(gaussians, viewmats, Ks, WIDTH, HEIGHT, backend="cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown without CUDA")
def test_gsplat_backend_without_cuda_says_what_to_do():
    gaussians = to_gaussians(SCENES["anisotropic"])
    viewmats, Ks = (torch.tensor(a, dtype=torch.float32) for a in make_cameras())
    with pytest.raises(GsplatUnavailable, match=r"recon3d\[gpu\].*backend='cpu'"):
        render(gaussians, viewmats, Ks, WIDTH, HEIGHT, backend="gsplat")


@pytest.fixture
def no_compiler(monkeypatch, tmp_path):
    monkeypatch.setenv("CXX", str(tmp_path / "no-such-compiler"))
    monkeypatch.setenv("RECON3D_CACHE_DIR", str(tmp_path))
    fast_cpu._load.cache_clear()
    yield
    fast_cpu._load.cache_clear()


def test_without_compiler_auto_falls_back_to_torch(no_compiler):
    assert not fast_cpu.fast_cpu_available()
    assert "no-such-compiler" in fast_cpu.fast_cpu_unavailable_reason()
    gaussians = to_gaussians(SCENES["overlapping"])
    viewmats, Ks = (torch.tensor(a, dtype=torch.float32) for a in make_cameras())
    with pytest.warns(RuntimeWarning, match="torch backend"):
        out = render(gaussians, viewmats, Ks, WIDTH, HEIGHT)
    assert out.backend == "torch"
    with pytest.raises(fast_cpu.FastCPUUnavailable):
        render(gaussians, viewmats, Ks, WIDTH, HEIGHT, backend="cpu")


@pytest.mark.parametrize("backend", ["torch", pytest.param("cpu", marks=needs_fast_cpu)])
def test_no_visible_gaussians_gives_background(backend):
    scene = dict(SCENES["near_plane"])
    scene["means"] = scene["means"] * np.array([1.0, 1.0, 0.0]) - np.array([0.0, 0.0, 1.0])  # all behind
    out = _render(scene, backend, "RGB+ED")
    assert torch.all(out.alphas == 0)
    background = torch.tensor(BACKGROUND, dtype=torch.float32).expand(2, HEIGHT, WIDTH, 3)
    torch.testing.assert_close(out.colors[..., :3], background)
    assert torch.all(out.colors[..., 3] == 0)


def test_invalid_arguments():
    gaussians = to_gaussians(SCENES["anisotropic"])
    viewmats, Ks = (torch.tensor(a, dtype=torch.float32) for a in make_cameras())
    with pytest.raises(ValueError, match="mode"):
        render(gaussians, viewmats, Ks, WIDTH, HEIGHT, mode="RGBD")
    with pytest.raises(ValueError, match="backend"):
        render(gaussians, viewmats, Ks, WIDTH, HEIGHT, backend="vulkan")
    with pytest.raises(ValueError, match="Ks"):
        render(gaussians, viewmats, Ks[:1], WIDTH, HEIGHT)
    with pytest.raises(ValueError, match="sh_degree"):
        render(gaussians, viewmats, Ks, WIDTH, HEIGHT, sh_degree=4)
