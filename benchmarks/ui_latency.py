"""Web app latency: from clicking Reconstruct to the 3D view, in a real browser.

Starts the app on a free local port with the embedded default model, uploads N images
of a sample scene in headless Debian chromium (Playwright), clicks Reconstruct and
waits until the viewer shows the exported GLB. Prints one row per run; the first run
includes loading the model.

    python benchmarks/ui_latency.py [--images 8] [--runs 2] [--threads 2]
    python benchmarks/ui_latency.py --runs 1 --screenshot assets/ui_screenshot.png   # the README's picture
"""
from __future__ import annotations

import argparse
import shutil
import socket
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--scene", default=str(REPO / "assets" / "scenes" / "object_8" / "images"))
    parser.add_argument("--screenshot", help="save a picture of the page after the last run here (PNG)")
    args = parser.parse_args()

    import torch
    from playwright.sync_api import expect, sync_playwright

    from recon3d.zoo import embedded_default
    from recon3d_ui.app import UIConfig, launch

    torch.set_num_threads(args.threads)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    app = launch("127.0.0.1", port, config=UIConfig(examples=[]), block=False)
    images = [str(p) for p in sorted(Path(args.scene).glob("*.png"))[: args.images]]
    rows = []
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=shutil.which("chromium"), headless=True,
                                         args=["--no-sandbox", "--disable-background-networking"])
            for run in range(args.runs):
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                page.goto(f"http://127.0.0.1:{port}/")
                page.locator("#inputs input[type=file]").set_input_files(images)
                expect(page.locator("#inputs a[download]")).to_have_count(len(images), timeout=120_000)
                start = time.perf_counter()
                page.locator("#reconstruct").click()
                expect(page.locator("#status")).to_contain_text("export 1", timeout=600_000)
                expect(page.locator("#viewer canvas")).to_be_visible(timeout=60_000)
                rows.append((run, time.perf_counter() - start))
                if args.screenshot and run == args.runs - 1:
                    page.wait_for_timeout(3000)  # the viewer fits the camera to the model after loading
                    page.screenshot(path=args.screenshot, full_page=False)
                page.close()
            browser.close()
    finally:
        app.close()
    print(f"\n{len(images)} images, model {embedded_default()} (auto), {args.threads} torch threads")
    print("| run | click → 3D view (s) |")
    print("|---|---|")
    for run, seconds in rows:
        print(f"| {run}{' (loads the model)' if run == 0 else ''} | {seconds:.1f} |")


if __name__ == "__main__":
    main()
