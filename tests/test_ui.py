"""The web app in a real browser (Playwright + Debian chromium) and through gradio_client.

The app runs in this process with a model whose forward pass is counted, so the tests
can check that moving a control re-exports without running the network again.
"""
from __future__ import annotations

import builtins
import os
import shutil
import socket
import time
from pathlib import Path

import pytest

gr = pytest.importorskip("gradio")

from recon3d.zoo import embedded_default, load_model  # noqa: E402

pytestmark = pytest.mark.slow  # a live server, a browser, gradio_client round trips

REPO = Path(__file__).resolve().parents[1]
SCENE = REPO / "assets" / "scenes" / "object_8" / "images"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def app_server():
    from recon3d_ui.app import UIConfig, launch

    model = load_model(embedded_default())
    calls = {"network": 0}
    forward = model.forward

    def counted_forward(*args, **kwargs):
        calls["network"] += 1
        return forward(*args, **kwargs)

    model.forward = counted_forward
    config = UIConfig(load_model=lambda name: (model, f"test model ({embedded_default()})"), examples=[])
    port = free_port()
    app = launch("127.0.0.1", port, config=config, block=False)
    try:
        yield f"http://127.0.0.1:{port}/", calls
    finally:
        app.close()


def sample_images(count: int = 4, start: int = 0) -> list[str]:
    return [str(p) for p in sorted(SCENE.glob("*.png"))[start:start + count]]


def session_folders() -> set[Path]:
    from recon3d_ui.session import session_root

    return {p for p in session_root().iterdir() if p.is_dir()}


def new_session_folder(before: set[Path]) -> Path:
    """The one session folder made since ``before`` was listed."""
    (folder,) = session_folders() - before
    return folder


def reconstruct_args(files: list) -> tuple:
    """/reconstruct inputs in API order: files, fps, max_frames, model, merge, scene_graph, align_iters, refine,
    conf, show_cameras, filters, show."""
    return (files, 1.0, 60, "auto", "auto", "complete", 300, "auto", 50, True, ["edges"], "points")


@pytest.fixture
def send_as_is(monkeypatch) -> set[str]:
    """Paths that Client.predict sends as given, instead of uploading the local file first.

    gradio_client uploads every local file it is handed; a hand-made request can name any
    path (or file name) instead, which is what these tests need to send.
    """
    from gradio_client.client import Endpoint

    paths: set[str] = set()
    upload = Endpoint._upload_file

    def upload_unless_listed(self, f: dict, data_index: int) -> dict:
        return f if f["path"] in paths else upload(self, f, data_index)

    monkeypatch.setattr(Endpoint, "_upload_file", upload_unless_listed)
    return paths


def file_data(path: str, orig_name: str) -> dict:
    return {"path": path, "orig_name": orig_name, "meta": {"_type": "gradio.FileData"}}


def wait_until_gone(path: Path, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while path.exists() and time.monotonic() < deadline:
        time.sleep(0.25)
    return not path.exists()


@pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium not installed (make test installs it)")
def test_browser_flow(app_server, tmp_path):
    import trimesh
    from playwright.sync_api import expect, sync_playwright

    url, calls = app_server
    before = calls["network"]
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                     args=["--no-sandbox", "--disable-background-networking", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(url)
        images = sample_images()
        page.locator("#inputs input[type=file]").set_input_files(images)
        # The upload must finish before the click, or the app sees no files.
        expect(page.locator("#inputs a[download]")).to_have_count(len(images), timeout=120_000)
        page.locator("#reconstruct").click()
        status = page.locator("#status")
        expect(status).to_contain_text("export 1", timeout=300_000)
        expect(page.locator("#viewer canvas")).to_be_visible(timeout=60_000)
        assert calls["network"] == before + 1

        # Move the confidence slider: a new GLB, without a second network run.
        slider = page.locator("#conf input[type=range]")
        box = slider.bounding_box()
        page.mouse.click(box["x"] + box["width"] * 0.8, box["y"] + box["height"] / 2)
        expect(status).to_contain_text("export 2", timeout=120_000)
        assert calls["network"] == before + 1

        page.wait_for_timeout(2000)  # let the viewer draw the new GLB
        page.screenshot(path=str(tmp_path / "ui.png"))
        if os.environ.get("RECON3D_SCREENSHOT"):
            shutil.copy(tmp_path / "ui.png", os.environ["RECON3D_SCREENSHOT"])

        with page.expect_download() as download_info:
            page.locator('#downloads a[download="scene.glb"]').first.click()
        glb = tmp_path / "scene.glb"
        download_info.value.save_as(glb)
        scene = trimesh.load(glb)
        assert len([n for n in scene.graph.nodes_geometry if n.startswith("camera_")]) == 4
        browser.close()


def test_gradio_client_flow(app_server, tmp_path):
    import trimesh
    from gradio_client import Client, handle_file

    url, calls = app_server
    before = calls["network"]
    client = Client(url, verbose=False)
    files = [handle_file(p) for p in sample_images(3)]
    result = client.predict(files, 1.0, 60, "auto", "auto", "complete", 300, "auto", 50, True, ["edges"], "points",
                            api_name="/reconstruct")
    viewer, status = result[0], result[2]
    assert "export 1" in status and calls["network"] == before + 1
    scene = trimesh.load(viewer)
    assert len([n for n in scene.graph.nodes_geometry if n.startswith("camera_")]) == 3
    frames = ["000.png", "001.png", "002.png"]
    viewer2, _, status2 = client.predict(80, frames, True, ["edges"], "points", api_name="/reexport")
    assert "export 2" in status2 and viewer2 != viewer
    assert calls["network"] == before + 1


@pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium not installed (make test installs it)")
def test_most_views_control_uses_an_even_spread(app_server):
    from gradio_client import Client, handle_file

    url, _ = app_server
    client = Client(url, verbose=False)
    files = [handle_file(p) for p in sample_images(5)]
    _, _, status, _, frames = client.predict(files, 1.0, 60, "auto", "auto", "complete", 300, "auto", 50, True,
                                             ["edges"], "points", 3, api_name="/reconstruct")
    assert "3 views at" in status
    assert [choice[0] for choice in frames["choices"]] == ["000.png", "002.png", "004.png"]


def test_browser_skips_a_corrupt_upload_and_closing_the_page_deletes_the_session(app_server, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    url, calls = app_server
    before_calls, before_folders = calls["network"], session_folders()
    good = sample_images(3)
    broken = tmp_path / "broken.png"
    data = Path(good[0]).read_bytes()
    broken.write_bytes(data[: len(data) // 2])  # a valid header, then the pixel data stops
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                     args=["--no-sandbox", "--disable-background-networking", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(url)
        page.locator("#inputs input[type=file]").set_input_files([*good, str(broken)])
        expect(page.locator("#inputs a[download]")).to_have_count(4, timeout=120_000)
        page.locator("#reconstruct").click()
        status = page.locator("#status")
        expect(status).to_contain_text("export 1", timeout=300_000)
        expect(status).to_contain_text("3 views")
        expect(status).to_contain_text("skipped 1 of 4 uploads: broken.png (cannot read image")
        assert calls["network"] == before_calls + 1
        folder = new_session_folder(before_folders)
        assert sorted(p.name for p in (folder / "inputs").iterdir()) == [
            "000_000.png", "001_001.png", "002_002.png", "003_broken.png"]

        page.close()  # the page's heartbeat stream ends: gradio runs the app's unload handler
        assert wait_until_gone(folder, 30), f"{folder} still exists 30 s after the page closed"
        browser.close()


def test_api_upload_named_outside_the_upload_folder_stays_in_the_session(app_server, send_as_is):
    import httpx
    from gradio.utils import get_upload_folder
    from gradio_client import Client, handle_file
    from recon3d_ui.session import session_root

    url, _ = app_server
    data = Path(sample_images(1, start=5)[0]).read_bytes()
    response = httpx.post(f"{url}gradio_api/upload", files=[("files", ("../../evil.png", data, "image/png"))])
    response.raise_for_status()
    (saved,) = response.json()
    upload_folder = Path(get_upload_folder())
    assert Path(saved).name == "evil.png" and Path(saved).resolve().is_relative_to(upload_folder.resolve())
    send_as_is.add(saved)
    before = session_folders()

    client = Client(url, verbose=False)
    files = [file_data(saved, "../../evil.png")] + [handle_file(p) for p in sample_images(2)]
    _, _, status, _, frames = client.predict(*reconstruct_args(files), api_name="/reconstruct")
    assert "3 views" in status and frames["value"] == ["evil.png", "000.png", "001.png"]
    folder = new_session_folder(before)
    assert (folder / "inputs" / "000_evil.png").read_bytes() == data
    for place in (upload_folder.parent, upload_folder.parent.parent, session_root(), session_root().parent):
        assert not (place / "evil.png").exists()


@pytest.mark.parametrize("where", ["outside", "/etc/passwd"])
def test_api_refuses_a_path_that_was_not_uploaded(app_server, send_as_is, tmp_path, monkeypatch, where):
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    url, calls = app_server
    secret = tmp_path / "secret.png"
    shutil.copy(sample_images(1, start=6)[0], secret)
    path = str(secret) if where == "outside" else where
    send_as_is.add(path)
    opened: list[str] = []
    real_open, real_os_open = builtins.open, os.open

    def spy_open(file, *args, **kwargs):
        if isinstance(file, (str, os.PathLike)):
            opened.append(os.path.realpath(file))
        return real_open(file, *args, **kwargs)

    def spy_os_open(file, *args, **kwargs):
        opened.append(os.path.realpath(file))
        return real_os_open(file, *args, **kwargs)

    client = Client(url, verbose=False)
    good = sample_images(1)[0]
    before_calls, before_folders = calls["network"], session_folders()
    monkeypatch.setattr(builtins, "open", spy_open)  # the app runs in this process: every open is seen
    monkeypatch.setattr(os, "open", spy_os_open)
    with pytest.raises(AppError):
        client.predict(*reconstruct_args([file_data(path, Path(path).name), handle_file(good)]),
                       api_name="/reconstruct")
    monkeypatch.undo()
    assert os.path.realpath(good) in opened  # the spies work: the client read the good image to upload it
    assert os.path.realpath(path) not in opened
    assert calls["network"] == before_calls
    for folder in session_folders() - before_folders:
        assert not any(p.name.endswith(Path(path).name) for p in folder.rglob("*"))


def test_two_clients_have_separate_sessions(app_server):
    import trimesh
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    url, _ = app_server
    client_a, client_b = Client(url, verbose=False), Client(url, verbose=False)
    before = session_folders()
    viewer_a, _, _, _, frames_a = client_a.predict(*reconstruct_args([handle_file(p) for p in sample_images(3)]),
                                                   api_name="/reconstruct")
    folder_a = new_session_folder(before)
    viewer_b, _, _, _, frames_b = client_b.predict(
        *reconstruct_args([handle_file(p) for p in sample_images(3, start=3)]), api_name="/reconstruct")
    frames_a, frames_b = frames_a["value"], frames_b["value"]  # the frame list comes back as a component update
    folder_b = new_session_folder(before | {folder_a})
    assert frames_a == ["000.png", "001.png", "002.png"] and frames_b == ["003.png", "004.png", "005.png"]
    # What each client got back is its own session's export, staged from its own uploads only.
    assert Path(viewer_a).read_bytes() == (folder_a / "export_001" / "scene.glb").read_bytes()
    assert Path(viewer_b).read_bytes() == (folder_b / "export_001" / "scene.glb").read_bytes()
    assert sorted(p.name for p in (folder_a / "inputs").iterdir()) == ["000_000.png", "001_001.png", "002_002.png"]
    assert sorted(p.name for p in (folder_b / "inputs").iterdir()) == ["000_003.png", "001_004.png", "002_005.png"]

    viewer_b2, _, status_b2 = client_b.predict(80, frames_b[:2], True, ["edges"], "points", api_name="/reexport")
    assert "export 2" in status_b2 and "2 frames" in status_b2
    assert Path(viewer_b2).read_bytes() == (folder_b / "export_002" / "scene.glb").read_bytes()
    cameras = " ".join(n for n in trimesh.load(viewer_b2).graph.nodes_geometry if n.startswith("camera_"))
    assert all(name in cameras for name in frames_b) and not any(name in cameras for name in frames_a)
    assert not (folder_a / "export_002").exists()
    with pytest.raises(AppError, match=r"000\.png"):  # A's frames are unknown to B's session
        client_b.predict(80, frames_a, True, ["edges"], "points", api_name="/reexport")
