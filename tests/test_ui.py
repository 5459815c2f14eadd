"""The web app in a real browser (Playwright + Debian chromium) and through gradio_client.

The app runs in this process with a model whose forward pass is counted, so the tests
can check that moving a control re-exports without running the network again.
"""
from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

import pytest

gr = pytest.importorskip("gradio")

from recon3d.zoo import embedded_default, load_model  # noqa: E402

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


def sample_images(count: int = 4) -> list[str]:
    return [str(p) for p in sorted(SCENE.glob("*.png"))[:count]]


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
    viewer, downloads, status = result[0], result[1], result[2]
    assert "export 1" in status and calls["network"] == before + 1
    scene = trimesh.load(viewer)
    assert len([n for n in scene.graph.nodes_geometry if n.startswith("camera_")]) == 3
    frames = ["000.png", "001.png", "002.png"]
    viewer2, _, status2 = client.predict(80, frames, True, ["edges"], "points", api_name="/reexport")
    assert "export 2" in status2 and viewer2 != viewer
    assert calls["network"] == before + 1
