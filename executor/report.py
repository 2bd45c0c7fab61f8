"""Plan against reality: the plan's estimates beside what the run measured, in report.md and report.json.

Reads RUN_DIR/metrics.jsonl (one object per logged step) and RUN_DIR/run.json. Measured figures (computed by
advisor/run_metrics.py, which `sftplan calibrate` also uses to check a report before learning from it):

- tokens/s per GPU and step time: medians over the logged steps, the first one left out (warm-up)
  when more than three were logged;
- peak memory per GPU: the largest ``peak_memory_bytes`` logged. What it measures is taken from a
  row's ``peak_memory_kind`` or run.json's ``peak_memory_kind`` ("accelerator max allocated" or
  "process RSS"); when neither says, run.json's ``device`` decides (cuda -> accelerator, cpu -> RSS),
  else the report says it is unknown;
- elapsed hours: run.json ``started_at`` to ``finished_at`` (or now, while running) -- the wall clock
  a GPU bill counts -- else the largest ``elapsed_s`` logged;
- cost so far = elapsed hours x the plan's num_gpus x usd_per_gpu_hour of the plan's GPU (catalog,
  else the plan's own tier table). On a machine other than the planned one this is what the planned
  hardware would have cost for the same time, and the report says so.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

from advisor.errors import UserError
from advisor.models import Plan
from advisor.run_metrics import measured_figures, read_metrics
from advisor.yamlio import atomic_write_text


def _read_metrics(run_dir: Path) -> list[dict]:
    return read_metrics(run_dir / "metrics.jsonl")


def _read_run(run_dir: Path) -> dict:
    path = run_dir / "run.json"
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        raise UserError(f"{path}: unreadable run record") from None
    return data if isinstance(data, dict) else {}


def _parse_time(text: object) -> datetime | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


def _elapsed_hours(run: dict, rows: list[dict], now: datetime | None) -> tuple[float | None, str]:
    attempts = [a for a in run.get("attempts", []) if isinstance(a, dict) and _parse_time(a.get("started_at"))]
    if attempts:  # time the job really held the GPUs: the downtime between a crash and its resume is left out
        total = 0.0
        for a in attempts:
            end = _parse_time(a.get("finished_at")) or now or datetime.now(timezone.utc)
            total += max(0.0, (end - _parse_time(a["started_at"])).total_seconds())
        n = len(attempts)
        return total / 3600, f"sum of {n} launch{'es' if n > 1 else ''} in run.json, downtime between them left out"
    start = _parse_time(run.get("started_at"))
    if start is not None:
        end = _parse_time(run.get("finished_at"))
        if end is None:
            end = now or datetime.now(timezone.utc)
            return max(0.0, (end - start).total_seconds()) / 3600, "run.json started_at to now"
        return max(0.0, (end - start).total_seconds()) / 3600, "run.json started_at to finished_at"
    elapsed = [float(r["elapsed_s"]) for r in rows if isinstance(r.get("elapsed_s"), (int, float))]
    if elapsed:
        return max(elapsed) / 3600, "largest elapsed_s in metrics.jsonl"
    return None, "no start time recorded"


def gpu_price(plan: Plan) -> tuple[float | None, str]:
    """usd_per_gpu_hour of the plan's GPU: the catalog's, else the plan's tier table's."""
    gpu = plan.recommended.gpu if plan.recommended else None
    if gpu is None:
        return None, "plan has no recommended GPU"
    try:
        from advisor.catalog import load_catalog

        spec = load_catalog().gpu(gpu)
        return float(spec.usd_per_gpu_hour), f"catalog: {gpu} {spec.price_source}, {spec.price_as_of}"
    except (ImportError, UserError, AttributeError, KeyError, OSError):
        pass
    for tier in plan.tiers:
        if tier.gpu == gpu:
            return float(tier.usd_per_gpu_hour), f"the plan's tier table ({gpu})"
    return None, f"no price known for {gpu}"


def _row(planned: float | None, measured: float | None, unit: str, how: str) -> dict:
    ratio = measured / planned if planned and measured is not None else None
    return {"planned": planned, "measured": measured, "ratio": ratio, "unit": unit, "how": how}


def build_report(run_dir: str | Path, plan: Plan, *, now: datetime | None = None) -> dict:
    """The report as a dict (what report.json holds)."""
    run_dir = Path(run_dir)
    rows, run = _read_metrics(run_dir), _read_run(run_dir)
    est = plan.estimate
    num_gpus = plan.recommended.num_gpus if plan.recommended else None
    price, price_source = gpu_price(plan)
    hours, hours_how = _elapsed_hours(run, rows, now)
    measured = measured_figures(rows, run)  # what calibrate recomputes to check this report (advisor/run_metrics.py)
    kind = measured["peak_memory_per_gpu_gib"]["how"]
    cost = hours * num_gpus * price if hours is not None and num_gpus and price is not None else None
    skip = " (first logged step left out as warm-up)" if len(rows) > 3 else ""
    figures = {
        "tokens_per_s_per_gpu": _row(est.tokens_per_s_per_gpu if est else None,
                                     measured["tokens_per_s_per_gpu"]["measured"], "tokens/s",
                                     "median of logged steps" + skip),
        "step_time_s": _row(est.step_time_s if est else None, measured["step_time_s"]["measured"], "s",
                            "median of logged steps" + skip),
        "peak_memory_per_gpu_gib": _row(est.memory_per_gpu_gib if est else None,
                                        measured["peak_memory_per_gpu_gib"]["measured"], "GiB", kind),
        "hours": _row(est.hours if est else None, hours, "h", f"elapsed so far ({hours_how}); plan: whole run"),
        "cost_usd": _row(est.cost_usd if est else None, cost, "USD",
                         f"elapsed x {num_gpus} GPU(s) x ${price if price is not None else '?'}/GPU-hour "
                         f"({price_source}); plan: whole run"),
    }
    for name in ("tokens_per_s_per_gpu", "step_time_s"):  # the uncontended figures, when there are enough steps
        figures[name].update((k, v) for k, v in measured[name].items() if k != "measured")
    last_step = max((int(r["step"]) for r in rows if isinstance(r.get("step"), (int, float))), default=0)
    return {
        "plan_sha256": plan.plan_sha256,
        "status": run.get("status", "unknown"),
        "gpu": plan.recommended.gpu if plan.recommended else None,
        "num_gpus": num_gpus,
        "steps_logged": len(rows),
        "last_step": last_step,
        "planned_total_steps": est.total_steps if est else None,
        "peak_memory_kind": kind,
        "allow_mismatch": bool(run.get("allow_mismatch", False)),
        "figures": figures,
        **_memory_guard(run_dir),
    }


def _memory_guard(run_dir: Path) -> dict:
    """The OOM guard's files (executor/oom_guard.py): per-rank peak after the first steps, and oom.json."""
    from executor import oom_guard

    ranks = []
    for path in sorted((Path(run_dir) / oom_guard.MEMORY_DIR).glob("rank-*.json")):
        try:
            ranks.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue
    return {"memory_check": ranks, "oom": oom_guard.read_oom(run_dir)}


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "n/a"
    if unit == "USD":
        return f"${value:,.2f}"
    if unit == "h":
        return f"{value:,.3f} h"
    if unit == "GiB":
        return f"{value:,.3f} GiB"
    return f"{value:,.3g} {unit}" if abs(value) < 100 else f"{value:,.0f} {unit}"


def render_markdown(report: dict) -> str:
    names = {"tokens_per_s_per_gpu": "tokens/s per GPU", "step_time_s": "step time",
             "peak_memory_per_gpu_gib": "peak memory per GPU", "hours": "hours", "cost_usd": "cost"}
    lines = [f"# Plan against reality ({report['status']})", "",
             f"Plan `{report['plan_sha256'][:12]}` on {report['num_gpus']} x {report['gpu']}; "
             f"{report['steps_logged']} logged steps, last step {report['last_step']} of "
             f"{report['planned_total_steps']} planned.", ""]
    if report["allow_mismatch"]:
        lines += ["Ran with --allow-mismatch: the hardware is not the planned one, so measured figures are not "
                  "comparable with the plan's; cost is what the planned GPUs would cost for the elapsed time.", ""]
    lines += ["| figure | planned | measured | measured/planned | how measured |", "|---|---|---|---|---|"]
    for key, fig in report["figures"].items():
        ratio = f"{fig['ratio']:.2f}" if fig["ratio"] is not None else "n/a"
        lines.append(f"| {names[key]} | {_fmt(fig['planned'], fig['unit'])} | {_fmt(fig['measured'], fig['unit'])} "
                     f"| {ratio} | {fig['how']} |")
    return "\n".join(lines) + "\n"


def write_report(run_dir: str | Path, plan: Plan) -> dict:
    """Write RUN_DIR/report.json and RUN_DIR/report.md (atomically); returns the report."""
    run_dir = Path(run_dir)
    report = build_report(run_dir, plan)
    atomic_write_text(run_dir / "report.json", json.dumps(report, indent=2) + "\n")
    atomic_write_text(run_dir / "report.md", render_markdown(report))
    return report
