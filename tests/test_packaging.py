"""recon3d as an installed package: the wheel, a fresh environment, offline behaviour."""
from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import time
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # builds a wheel and installs it into fresh environments

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "assets" / "scenes" / "object_8" / "images"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    dist = tmp_path_factory.mktemp("dist")
    # No build isolation: the build uses this environment's setuptools, downloads nothing.
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist),
                    str(REPO)], check=True, capture_output=True, timeout=600)
    return next(dist.glob("recon3d-*.whl"))


def test_wheel_carries_the_embedded_model_and_a_namespaced_web_app(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in ("config.json", "model.safetensors", "MODEL_CARD.md"):
        assert f"recon3d/_embedded/recon3d-tiny/{name}" in names
    assert "recon3d_ui/app.py" in names and "recon3d_ui/session.py" in names
    assert not any(n.startswith("ui/") for n in names)
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    embedded = zipfile.ZipFile(wheel).read("recon3d/_embedded/recon3d-tiny/model.safetensors")
    assert embedded == (REPO / "models" / "recon3d-tiny" / "model.safetensors").read_bytes()


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    """A fresh virtual environment holding the wheel; the heavy dependencies (torch, ...)
    come from this environment's site-packages through a .pth file, so nothing is downloaded."""
    env = tmp_path_factory.mktemp("env")
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", "--without-pip", str(env)], check=True, timeout=120)
    site = Path(subprocess.run([str(env / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    # Directories listed in a .pth file join sys.path, but the .pth files inside them
    # (such as this checkout's editable install) are not run: recon3d comes from the wheel.
    (site / "recon3d_test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(env / "bin" / "python"), "install", "--no-deps",
                    "--no-index", "-q", str(wheel)], check=True, capture_output=True, timeout=300)
    return env


def _run(env: Path, args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k != "RECON3D_MODELS_DIR"}
    environ["HF_HUB_OFFLINE"] = "1"
    return subprocess.run([str(env / "bin" / args[0]), *args[1:]], cwd=cwd, env=environ, capture_output=True,
                          text=True, timeout=300)


def test_installed_package_runs_the_embedded_model_from_anywhere(installed, tmp_path):
    where = _run(installed, ["python", "-c", "import recon3d, recon3d_ui, recon3d.zoo as z; "
                                             "print(recon3d.__file__); print(z.MODELS_DIR)"], tmp_path)
    assert where.returncode == 0, where.stderr
    module_file, models_dir = where.stdout.split()
    assert Path(module_file).is_relative_to(installed) and Path(models_dir).is_relative_to(installed)
    assert _run(installed, ["python", "-c", "import ui"], tmp_path).returncode != 0  # no top-level `ui`

    version = _run(installed, ["recon3d", "--version"], tmp_path)
    assert version.returncode == 0 and version.stdout.strip().startswith("recon3d ")
    for args in (["recon3d", "--help"], ["recon3d", "models", "list"], ["recon3d", "ui", "--help"]):
        assert _run(installed, args, tmp_path).returncode == 0, args
    listing = _run(installed, ["recon3d", "models", "list"], tmp_path).stdout
    assert "recon3d-tiny" in listing

    out = tmp_path / "scene.npz"
    result = _run(installed, ["recon3d", "predict", str(SAMPLE), "-o", str(out), "--model", "auto", "--refine", "none"],
                  tmp_path)
    assert result.returncode == 0, result.stderr
    assert "model recon3d-tiny" in result.stderr
    check = _run(installed, ["python", "-c", f"import recon3d; print(recon3d.Prediction.load_npz({str(out)!r}).model_name)"],
                 tmp_path)
    assert check.stdout.strip() == "recon3d-tiny"


def test_installed_web_app_starts(installed, tmp_path):
    import socket
    import urllib.request

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    environ = dict(os.environ, HF_HUB_OFFLINE="1", GRADIO_ANALYTICS_ENABLED="False")
    server = subprocess.Popen([str(installed / "bin" / "recon3d"), "ui", "--port", str(port)], cwd=tmp_path, env=environ,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as page:
                    assert page.status == 200 and "recon3d" in page.read().decode("utf-8", "replace")
                    return
            except OSError:
                assert server.poll() is None, server.stdout.read()
                time.sleep(1)
        pytest.fail("recon3d ui did not answer within 120 s")
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_unreachable_hub_fails_fast_with_one_message(tmp_path):
    environ = dict(os.environ, HF_HOME=str(tmp_path / "hf"), HF_ENDPOINT="http://127.0.0.1:9")
    for name in ("HF_HUB_OFFLINE", "HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        environ.pop(name, None)
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "recon3d", "predict", str(SAMPLE), "-o", str(tmp_path / "x.npz"),
                             "--model", "vggt-1b"], env=environ, capture_output=True, text=True, timeout=120)
    assert time.perf_counter() - started < 10
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "cannot reach 127.0.0.1:9" in lines[0] and "Traceback" not in result.stderr
    assert not (tmp_path / "x.npz").exists()
