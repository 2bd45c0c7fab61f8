"""Latency of the estimator: `sftplan estimate` process start -> exit, one in-process estimate, and
(when advisor.planner is importable) one planner.plan() of a default request.

Targets (issue 2, section 7; issue 10): `sftplan estimate` start to exit under 0.3 s without torch imported;
estimate under 1 ms. `sftplan verify` (what a CI gate pays; rich is not imported on it) and `sftplan plan --json` are timed beside it.
Usage: .venv/bin/python benchmarks/latency.py
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

ARGS = ["estimate", "--model", "llama-3.1-8b", "--gpu", "h100-sxm", "--num-gpus", "8", "--strategy", "fsdp",
        "--seq-len", "4096", "--micro-batch", "2", "--json"]


PLAN_ARGS = ["plan", "--model", "llama-3.1-8b", "--examples", "50000", "--avg-tokens", "1024", "--json"]
VERIFY_PLAN = REPO / "tests" / "tui" / "data" / "snapshot_plan.yaml"  # unapproved: verify exits 1


def cli_seconds(runs: int = 10, args: list[str] = ARGS, check: bool = True) -> list[float]:
    exe = Path(sys.executable).with_name("sftplan")
    argv = [str(exe)] if exe.exists() else [sys.executable, "-m", "advisor"]
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(argv + args, cwd=REPO, check=check, capture_output=True)
        times.append(time.perf_counter() - t0)
    return times


def torch_imported_by_cli() -> bool:
    code = ("import sys; from advisor.cli import main\n"
            f"main({ARGS!r})\n"
            "print('TORCH', 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    return "TORCH True" in out.stdout


def estimate_seconds(n: int = 2000) -> float:
    from advisor.architecture import resolve_model
    from advisor.catalog import load_catalog
    from advisor.estimate import estimate
    from advisor.models import TrainConfig

    model, gpu = resolve_model("llama-3.1-8b"), load_catalog().gpu("h100-sxm")
    cfg = TrainConfig(num_gpus=8, strategy="fsdp", seq_len=4096, micro_batch_size=2)
    estimate(model, gpu, cfg)
    t0 = time.perf_counter()
    for _ in range(n):
        estimate(model, gpu, cfg)
    return (time.perf_counter() - t0) / n


PLAN_REQUESTS = {
    "llama-3.1-8b, 50k x 1024 tokens": dict(model="llama-3.1-8b", dataset=dict(examples=50_000, avg_tokens=1024)),
    "llama-3.1-70b, 200k x 2048, deep-retask, have h100-sxm:8": dict(
        model="llama-3.1-70b", dataset=dict(examples=200_000, avg_tokens=2048), goals=["deep-retask"],
        have=[dict(gpu="h100-sxm", count=8)]),
    "llama-3.1-405b, 1M x 2048, deep-retask, nvidia stack": dict(
        model="llama-3.1-405b", dataset=dict(examples=1_000_000, avg_tokens=2048), goals=["deep-retask"],
        nvidia_stack=True),
}


def plan_seconds(runs: int = 5) -> dict[str, tuple[list[float], list[float]]] | None:
    """Per request: cold searches (estimate cache cleared before each) and warm re-plans after an edit
    of the data size (what a TUI keystroke costs: estimates are reused across plans)."""
    try:
        from advisor import planner
        from advisor.plan_search import EstimateCache
    except ImportError:
        return None
    from advisor.catalog import load_catalog
    from advisor.models import PlanRequest

    catalog = load_catalog()
    out = {}
    for label, data in PLAN_REQUESTS.items():
        req = PlanRequest.from_dict(data)
        cold, warm = [], []
        for i in range(runs):
            session = EstimateCache()  # what the TUI keeps per session; a fresh one is a cold search
            t0 = time.perf_counter()
            planner.plan(req, catalog, session)
            cold.append(time.perf_counter() - t0)
            edited = req.replace(**{"dataset": req.dataset.replace(
                **{"examples": req.dataset.examples + 1000 * (i + 1)})})
            t0 = time.perf_counter()
            planner.plan(edited, catalog, session)
            warm.append(time.perf_counter() - t0)
        out[label] = (cold, warm)
    return out


def main() -> int:
    cli = cli_seconds()
    print(f"sftplan estimate, process start -> exit: median {statistics.median(cli):.3f} s, "
          f"min {min(cli):.3f} s over {len(cli)} runs (target < 0.3 s)")
    verify = cli_seconds(args=["verify", str(VERIFY_PLAN)], check=False)
    print(f"sftplan verify PLAN (reads and hashes a plan, draws nothing), process start -> exit: median "
          f"{statistics.median(verify):.3f} s, min {min(verify):.3f} s over {len(verify)} runs")
    planned = cli_seconds(args=PLAN_ARGS)
    print(f"sftplan {' '.join(PLAN_ARGS)}, process start -> exit: median {statistics.median(planned):.3f} s, "
          f"min {min(planned):.3f} s over {len(planned)} runs")
    print(f"torch imported by `sftplan estimate`: {torch_imported_by_cli()}")
    per = estimate_seconds()
    print(f"estimate() in process: {per * 1e6:.0f} us per call (target < 1000 us)")
    plan = plan_seconds()
    if plan is None:
        print("planner.plan(): advisor.planner not importable, skipped")
    else:
        for label, (cold, warm) in plan.items():
            print(f"planner.plan() {label}: cold median {statistics.median(cold) * 1000:.0f} ms "
                  f"(max {max(cold) * 1000:.0f}), re-plan after an edit median {statistics.median(warm) * 1000:.0f} ms "
                  f"over {len(cold)} runs (target < 50 ms)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
