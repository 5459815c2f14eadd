"""Peak memory of loading a VGGT-1B-size checkpoint on the CPU, per backbone precision.

    python benchmarks/load_memory.py                       # writes a random 5 GB checkpoint to a temp folder
    python benchmarks/load_memory.py --weights DIR         # an existing folder with model.safetensors + config.json

Each precision loads in a fresh subprocess (`recon3d.load_model`, then every weight read
once, as a first forward pass would), so each peak RSS is that load's own. With bf16,
the backbone's weights are converted one tensor at a time from plain reads of the file,
so the fp32 checkpoint never becomes resident beside them.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import cpu_model, random_network

REPO = Path(__file__).resolve().parents[1]


def write_random_checkpoint(folder: Path) -> None:
    from safetensors.torch import save_file

    from recon3d.networks.vggt import VGGT, VGGTConfig

    model = random_network(lambda: VGGT(VGGTConfig()))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps({"architecture": "vggt", **VGGTConfig().to_dict()}))


def measure(folder: str, precision: str) -> None:
    """Runs in the subprocess: load, then print one JSON line."""
    import torch

    from recon3d.zoo import load_model

    torch.set_num_threads(2)
    started = time.perf_counter()
    model = load_model(folder, device="cpu", precision=precision)
    seconds = time.perf_counter() - started
    load_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9
    # Every weight read once, as the first forward pass does: safetensors maps the file, so
    # untouched fp32 weights are not resident yet.
    with torch.no_grad():
        for tensor in model.state_dict().values():
            tensor.sum()
    held = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    print(json.dumps({"precision": precision, "seconds": seconds, "weights_gb": held / 1e9, "load_peak_gb": load_peak,
                      # ru_maxrss is in KiB on Linux.
                      "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", help="folder with model.safetensors and config.json (default: a random one)")
    parser.add_argument("--precision", nargs="+", default=["fp32", "bf16"])
    parser.add_argument("--measure", nargs=2, metavar=("FOLDER", "PRECISION"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        measure(*args.measure)
        return
    with tempfile.TemporaryDirectory(prefix="recon3d-load-") as scratch:
        folder = args.weights
        if folder is None:
            folder = scratch
            write_random_checkpoint(Path(folder))
        rows = []
        for precision in args.precision:
            done = subprocess.run([sys.executable, __file__, "--measure", folder, precision], check=True,
                                  capture_output=True, text=True, cwd=REPO)
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    print(f"CPU: {cpu_model()}; checkpoint {folder if args.weights else 'VGGT-1B size, random weights'}")
    print("| precision | load (s) | weights held (GB) | peak RSS of the load (GB) | peak RSS, every weight read (GB) "
          "| that / fp32 |")
    print("|---|---|---|---|---|---|")
    base = next((r for r in rows if r["precision"] == "fp32"), rows[0])
    for r in rows:
        print(f"| {r['precision']} | {r['seconds']:.1f} | {r['weights_gb']:.2f} | {r['load_peak_gb']:.2f} "
              f"| {r['peak_rss_gb']:.2f} "
              f"| {r['peak_rss_gb'] / base['peak_rss_gb']:.2f} |")


if __name__ == "__main__":
    main()
