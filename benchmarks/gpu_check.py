"""One prepared command for a lent CUDA machine: check and time recon3d's GPU paths in under 8 minutes.

    python benchmarks/gpu_check.py --dry-run               # any machine: the plan and an import check
    python benchmarks/gpu_check.py --out gpu_report        # a CUDA machine: gpu_report/report.{json,md}

Each part runs in its own process under its own time budget, so a hang, a crash or an
out-of-memory in one part costs only that part; a part writes its results as it goes,
so one that runs out of time still reports what it measured. The parts, cheapest first:

- env: GPU, driver, torch and CUDA versions, nvcc, gsplat.
- gsplat: time to load (the first time: build) gsplat's CUDA kernels, or why they cannot.
- gpu_tests: ``pytest -m gpu`` (gsplat against the torch rasterizer, alignment on CUDA).
- vggt: VGGT-1B-size network with random weights under bf16 at 518x392: forward seconds
  and peak memory at 10/100/200 frames dense and merged, and 1,000 frames merged.
- dust3r: DUSt3R 512-DPT with random weights: pair throughput over 8 views (56 pairs)
  and 300 global-alignment steps.
- train: a burst of the embedded model's training recipe on CUDA: steps per second.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from common import random_network

REPO = Path(__file__).resolve().parents[1]
VGGT_RUNS = [(10, False), (10, True), (100, False), (100, True), (200, False), (200, True), (1000, True)]
VGGT_HW = (392, 518)
DUST3R_VIEWS = 8
TRAIN_BURST_S = 70


@dataclass(frozen=True)
class Part:
    name: str
    budget_s: int
    what: str


PARTS = [
    Part("env", 20, "GPU, driver, torch/CUDA versions, nvcc, gsplat version"),
    Part("gsplat", 140, "load or build gsplat's CUDA kernels (first build: minutes), or the reason they cannot run"),
    Part("gpu_tests", 50, "pytest -m gpu: gsplat vs torch rasterizer parity, global alignment on CUDA"),
    Part("vggt", 110, "VGGT-1B size, random weights, bf16, 518x392: seconds and peak GiB at "
                      + ", ".join(f"{f}{' merged' if m else ''}" for f, m in VGGT_RUNS) + " frames"),
    Part("dust3r", 40, f"DUSt3R 512-DPT, random weights: pairs/s over {DUST3R_VIEWS} views, 300 alignment steps"),
    Part("train", TRAIN_BURST_S + 20, f"recon3d-tiny recipe on CUDA for {TRAIN_BURST_S} s: steps/s"),
]


class Results:
    """A part's results, rewritten to its JSON file after every addition."""

    def __init__(self, path: Path):
        self.path, self.data = path, {}

    def add(self, **values) -> None:
        self.data.update(values)
        self.path.write_text(json.dumps(self.data, indent=1, default=str))


# --- parts (each runs in its own process) ------------------------------------------------

def part_env(out: Results) -> None:
    import torch

    out.add(python=platform.python_version(), torch=torch.__version__, torch_cuda=torch.version.cuda,
            cuda_available=torch.cuda.is_available())
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        out.add(gpu=props.name, gpu_memory_gib=round(props.total_memory / 2**30, 1),
                compute_capability=f"{props.major}.{props.minor}", gpu_count=torch.cuda.device_count())
    out.add(nvcc=shutil.which("nvcc"))
    smi = shutil.which("nvidia-smi")
    if smi:
        query = subprocess.run([smi, "--query-gpu=driver_version", "--format=csv,noheader"], capture_output=True,
                               text=True, timeout=20)
        out.add(driver=query.stdout.strip())
    try:
        from importlib.metadata import version

        out.add(gsplat=version("gsplat"))
    except Exception as err:  # noqa: BLE001 - PackageNotFoundError and friends: reported, not fatal
        out.add(gsplat=f"not installed ({type(err).__name__})")


def part_gsplat(out: Results) -> None:
    from recon3d.render.gsplat_backend import gsplat_unavailable_reason

    start = time.perf_counter()
    reason = gsplat_unavailable_reason()
    out.add(load_or_build_s=round(time.perf_counter() - start, 1), available=reason is None, reason=reason)


def part_gpu_tests(out: Results) -> None:
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "gpu", "tests"],
                          cwd=REPO, capture_output=True, text=True)
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    out.add(exit_code=done.returncode, summary=lines[-1] if lines else "", failures=[
        line for line in lines if line.startswith(("FAILED", "ERROR"))][:20])


def part_vggt(out: Results) -> None:
    import torch

    from recon3d.networks.token_merging import MergeConfig
    from recon3d.networks.vggt import VGGT

    device = torch.device("cuda")
    start = time.perf_counter()
    model = random_network(VGGT, device)
    model.backbone_dtype = torch.bfloat16
    out.add(build_s=round(time.perf_counter() - start, 1), weights_gib=round(torch.cuda.memory_allocated() / 2**30, 2))
    runs = []
    with torch.inference_mode():
        model(torch.rand(2, 3, *VGGT_HW, device=device))  # warm-up: kernels, cuBLAS handles
        for frames, merged in VGGT_RUNS:
            model.set_token_merging(MergeConfig() if merged else None)
            row = {"frames": frames, "merged": merged}
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            try:
                images = torch.rand(frames, 3, *VGGT_HW, device=device)
                torch.cuda.synchronize()
                start = time.perf_counter()
                model(images)
                torch.cuda.synchronize()
                row.update(seconds=round(time.perf_counter() - start, 2),
                           peak_gib=round(torch.cuda.max_memory_allocated() / 2**30, 2))
            except torch.cuda.OutOfMemoryError:
                row.update(error="out of memory")
            finally:
                images = None
            runs.append(row)
            out.add(runs=runs)


def part_dust3r(out: Results) -> None:
    import torch

    from recon3d.networks.dust3r import DUSt3R, DUSt3RConfig
    from recon3d.pairwise.align import global_align
    from recon3d.pairwise.graph import make_pairs
    from recon3d.pairwise.inference import predict_pairs

    device = torch.device("cuda")
    model = random_network(lambda: DUSt3R(DUSt3RConfig()), device)
    model.backbone_dtype = torch.bfloat16
    images = torch.rand(DUST3R_VIEWS, 3, 384, 512, generator=torch.Generator().manual_seed(0))
    pairs = make_pairs(DUST3R_VIEWS, "complete")
    with torch.inference_mode():
        predict_pairs(model, images[:2], [(0, 1)])  # warm-up
        torch.cuda.synchronize()
        start = time.perf_counter()
        pointmaps = predict_pairs(model, images, pairs)
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    out.add(pairs=len(pairs), pair_seconds=round(seconds, 2), pairs_per_s=round(len(pairs) / seconds, 1))
    start = time.perf_counter()
    global_align(pointmaps, niter=300, device=device)
    torch.cuda.synchronize()
    out.add(align_300_steps_s=round(time.perf_counter() - start, 2))


def part_train(out: Results) -> None:
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = subprocess.Popen([sys.executable, "-m", "recon3d", "train", "recon3d-tiny", "-o", run_dir,
                                    "--device", "cuda", "--fresh", "--workers", "4"], cwd=REPO,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            trainer.wait(timeout=TRAIN_BURST_S)
        except subprocess.TimeoutExpired:
            trainer.terminate()
            trainer.wait(timeout=20)
        log = Path(run_dir) / "log.jsonl"
        records = [json.loads(line) for line in log.read_text().splitlines()] if log.is_file() else []
    if not records:
        out.add(error="no training step logged", stderr_tail=(trainer.stderr.read() or "")[-2000:])
        return
    # Steady state: skip the first logged steps (CUDA start-up, scene pool filling).
    steady = records[len(records) // 4:] or records
    per_step = sum(r["seconds"] for r in steady) / len(steady)
    out.add(steps=records[-1]["step"], steady_step_s=round(per_step, 4), steps_per_s=round(1 / per_step, 2),
            last_loss=records[-1].get("total"))


PART_FUNCTIONS = {"env": part_env, "gsplat": part_gsplat, "gpu_tests": part_gpu_tests, "vggt": part_vggt,
                  "dust3r": part_dust3r, "train": part_train}


# --- driver --------------------------------------------------------------------------------

def run_part(part: Part, scratch: Path) -> dict:
    result_file = scratch / f"{part.name}.json"
    start = time.perf_counter()
    try:
        done = subprocess.run([sys.executable, __file__, "--part", part.name, "--result", str(result_file)],
                              cwd=REPO, capture_output=True, text=True, timeout=part.budget_s)
        status = "ok" if done.returncode == 0 else f"failed (exit {done.returncode})"
        tail = done.stderr[-1500:] if done.returncode else ""
    except subprocess.TimeoutExpired as expired:
        status, tail = f"timed out after {part.budget_s} s", (expired.stderr or b"")[-1500:]
        tail = tail.decode(errors="replace") if isinstance(tail, bytes) else tail
    data = json.loads(result_file.read_text()) if result_file.is_file() else {}
    return {"status": status, "seconds": round(time.perf_counter() - start, 1), "results": data,
            **({"stderr_tail": tail} if tail else {})}


def markdown(report: dict) -> str:
    env = report["parts"].get("env", {}).get("results", {})
    lines = [f"# GPU check ({report['date']})", "",
             f"{env.get('gpu', 'no GPU')}, {env.get('gpu_memory_gib', '?')} GiB; torch {env.get('torch')}, "
             f"CUDA {env.get('torch_cuda')}, driver {env.get('driver')}; nvcc {env.get('nvcc') or 'absent'}; "
             f"gsplat {env.get('gsplat')}", "",
             "| part | status | seconds | results |", "|---|---|---|---|"]
    for name, part in report["parts"].items():
        results = {k: v for k, v in part["results"].items() if k != "runs"}
        lines.append(f"| {name} | {part['status']} | {part['seconds']} | "
                     f"{json.dumps(results, default=str)[:300].replace('|', '/')} |")
    runs = report["parts"].get("vggt", {}).get("results", {}).get("runs", [])
    if runs:
        lines += ["", "VGGT-1B size, random weights, bf16, 518x392:", "",
                  "| frames | merging | seconds | peak GiB |", "|---|---|---|---|"]
        for row in runs:
            lines.append(f"| {row['frames']} | {'on' if row['merged'] else 'off'} | "
                         f"{row.get('seconds', row.get('error', '-'))} | {row.get('peak_gib', '-')} |")
    return "\n".join(lines) + "\n"


def dry_run() -> int:
    print("GPU check plan (each part in its own process, under its own budget):")
    for part in PARTS:
        print(f"  {part.name:<10} {part.budget_s:>4} s  {part.what}")
    total = sum(p.budget_s for p in PARTS)
    print(f"  {'total':<10} {total:>4} s at most ({total / 60:.1f} min)")
    missing = []
    for module in ("torch", "pytest", "recon3d.networks.vggt", "recon3d.networks.dust3r", "recon3d.pairwise.align",
                   "recon3d.render.gsplat_backend", "recon3d.train.loop"):
        try:
            __import__(module)
        except ImportError as err:
            missing.append(f"{module} ({err})")
    import torch

    print(f"imports: {'ok' if not missing else 'missing ' + ', '.join(missing)}; "
          f"CUDA here: {'yes' if torch.cuda.is_available() else 'no (run without --dry-run on a CUDA machine)'}")
    return 1 if missing else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry-run", action="store_true", help="print the plan and check imports; needs no GPU")
    parser.add_argument("--out", type=Path, default=Path("gpu_report"), help="folder for report.json and report.md")
    parser.add_argument("--parts", nargs="+", choices=[p.name for p in PARTS], help="run only these parts")
    parser.add_argument("--part", choices=list(PART_FUNCTIONS), help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    if args.part:
        PART_FUNCTIONS[args.part](Results(args.result))
        return 0
    if args.dry_run:
        return dry_run()
    import torch

    if not torch.cuda.is_available():
        print("no CUDA device here; run with --dry-run to see the plan", file=sys.stderr)
        return 1
    report = {"date": time.strftime("%Y-%m-%d %H:%M"), "host": platform.node(), "parts": {}}
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        for part in PARTS:
            if args.parts and part.name not in args.parts:
                continue
            print(f"{part.name}: up to {part.budget_s} s …", flush=True)
            report["parts"][part.name] = run_part(part, Path(scratch))
            print(f"{part.name}: {report['parts'][part.name]['status']}", flush=True)
            (args.out / "report.json").write_text(json.dumps(report, indent=1, default=str))
            (args.out / "report.md").write_text(markdown(report))
    print((args.out / "report.md").read_text())
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
