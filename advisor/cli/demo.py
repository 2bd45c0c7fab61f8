"""`sftplan demo [--method lora] [--out DIR]`: the whole product on the embedded tiny model, on the CPU, in minutes.

1. ``make_tiny``: a tiny random Llama, a locally trained tokenizer, train.jsonl and golden.jsonl;
2. ``sftplan plan`` with ``--method full-sft`` forced (the rules would pick LoRA for so few rows; the
   plan's findings show the override) and a learning rate fit for a random tiny model;
3. ``sftplan approve``; 4. ``sftplan run`` (3 epochs, single process; --allow-mismatch because the plan
   names a GPU and this is a CPU, recorded in run.json); 5. the gate verdicts; 6. ``sftplan promote
   --evaluate``: the deploy suite through lm-evaluation-harness (two local tasks over the golden prompts run;
   the hub's tasks cannot run offline and are listed as still required), then the export.

``--method lora``: the same story with the method the rules choose by themselves for so few rows (LoRA
r16 + DoRA through peft); the run checkpoints the adapter, and promote exports it with ``--merge``
(adapter + merged weights).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from advisor.errors import UserError

DEMO_GPU = "cpu"  # the host tier: the report compares the plan with this machine, like with like


def _step(n: int, text: str) -> None:
    print(f"\n== {n}. {text}", flush=True)


LORA_ROWS = 600  # under 10k: the rules choose LoRA; fewer rows than the full-SFT demo keep both under a minute
LORA_LEARNING_RATE = "1e-2"  # a random tiny model: the adapter needs a large rate to learn in 3 epochs


def demo(out: str | Path = "sftplan-demo", method: str = "full-sft") -> int:
    from advisor.cli import main as sftplan

    out = Path(out).resolve()
    plan_path, run_dir, promoted = out / "plan.yaml", out / "run", out / "promoted"
    existing = next(p for p in (out, *out.parents) if p.exists())  # the folder would be made under it
    if not existing.is_dir():
        where = "exists" if existing == out else f"is under {existing}, which exists"
        raise UserError(f"--out {out}: {where} and is not a folder; choose another --out")
    if run_dir.exists() or plan_path.exists():
        raise UserError(f"{out}: holds an earlier demo; choose another --out or remove it")
    from executor.preflight import require_train_packages

    require_train_packages("fsdp", "sftplan demo", method=method)
    lora = method == "lora"
    started = time.time()

    _step(1, "tiny model, tokenizer and data (generated, nothing downloaded)")
    from executor.tiny import make_tiny

    assets = make_tiny(out / "tiny", n_train=LORA_ROWS if lora else 1200, n_golden=16)
    for name, path in assets.items():
        print(f"   {name}: {path}")

    tasks = _local_deploy_tasks(out / "deploy-tasks", assets["golden"])
    _step(2, "plan (the rules choose LoRA for so few rows)" if lora
          else "plan (full SFT forced; the findings show the override)")
    forced = [] if lora else ["--method", "full-sft"]
    rc = sftplan(["plan", "--model", str(assets["model"]), "--dataset", str(assets["train"]),
                  "--golden", str(assets["golden"]), *forced, "--gpu", DEMO_GPU, "--num-gpus", "1",
                  "--strategy", "single", "--learning-rate", LORA_LEARNING_RATE if lora else "3e-3", "--epochs", "3",
                  "--max-seq-len", "128",
                  *[a for name, metric in tasks.items() for a in ("--deploy-task", f"{name}={name}:{metric}:100")],
                  "--deploy-include-path", str(out / "deploy-tasks"), "-o", str(plan_path)])
    if rc:
        return rc
    from advisor.planfile import read_plan

    plan = read_plan(plan_path)
    for f in plan.findings:
        if f.rule_id.startswith(("method", "lora.")):
            print(f"   finding {f.rule_id}: {f.verdict}{' (overridden)' if f.overridden else ''} - {f.why}")
    if lora and plan.method != "lora":
        raise UserError(f"demo --method lora: the rules chose {plan.method} for {LORA_ROWS} rows")

    _step(3, "approve")
    rc = sftplan(["approve", str(plan_path), "--by", "sftplan-demo"])
    if rc:
        return rc

    _write_request(plan, out / "request.yaml")
    print(f"   the request it was planned from: {out / 'request.yaml'} (`sftplan plan --request` redoes it)")

    _step(4, "run 3 epochs on the CPU (the plan's tier: this host)")
    from executor.run import run

    rc = run(plan_path, run_dir)
    if rc:
        return rc

    _step(5, "eval gate")
    gate = json.loads((run_dir / "gate.json").read_text())
    b = gate["baseline"]
    print(f"   baseline: loss {b['loss']:.4f} exact {b['exact_match']:.3f} contains {b['contains']:.3f}")
    for e in gate["epochs"]:
        s = e["score"]
        print(f"   epoch {e['epoch']} {e['checkpoint']}: loss {s['loss']:.4f} exact {s['exact_match']:.3f} "
              f"contains {s['contains']:.3f} -> {'PASS' if e['passed'] else 'FAIL ' + '; '.join(e['reasons'])}")

    _step(6, "deploy suite through lm-evaluation-harness (local tasks; the hub's MMLU-Pro, IFEval and CrowS-Pairs "
             "cannot run offline and stay required), then promote the best passing epoch"
             + (": the adapter, and merged weights (--merge)" if lora else ""))
    rc = sftplan(["promote", str(run_dir), "--out", str(promoted), "--evaluate", *(["--merge"] if lora else [])])
    if rc:
        return rc

    _plan_vs_measured(run_dir)
    print(f"\ndemo done in {time.time() - started:.0f} s. Artefacts:")
    for label, path in (("approved plan", plan_path), ("request", out / "request.yaml"), ("run folder", run_dir),
                        ("checkpoints", ", ".join(sorted(p.name for p in run_dir.glob("checkpoint-*")))),
                        ("gate report", run_dir / "gate.json"), ("deploy suite", run_dir / "deploy.json"),
                        ("plan vs reality", run_dir / "report.md"),
                        ("metrics", run_dir / "metrics.jsonl"), ("launch log", run_dir / "log.txt"),
                        ("promoted adapter" if lora else "promoted model", promoted),
                        *([("merged weights", promoted / "merged")] if lora else [])):
        print(f"   {label:16} {path}")
    return 0


def _local_deploy_tasks(folder: Path, golden: Path) -> dict[str, str]:
    """Two local lm-eval tasks over the golden prompts (multiple choice and generative): task -> metric.

    The demo's allowed drop on them is 100 points (a random tiny model is no reference); they show the
    suite's table end to end, offline."""
    from executor.deploy import write_local_tasks

    pairs = [(r["prompt"], r["expected"]) for r in map(json.loads, golden.read_text().splitlines()) if r]
    return write_local_tasks(folder, pairs, distractors=sorted({a for _, a in pairs} | {str(n) for n in range(19)}))


def _write_request(plan, path: Path) -> None:
    """The request the plan was made from, as a request YAML (the same schema `sftplan plan --request` reads)."""
    from advisor.yamlio import atomic_write_text, dump_yaml

    atomic_write_text(path, dump_yaml(plan.request.to_dict(exclude_defaults=True)))


def _plan_vs_measured(run_dir: Path) -> None:
    """One line per figure of report.json: planned, measured, ratio (what `sftplan calibrate` learns from)."""
    report = json.loads((run_dir / "report.json").read_text())
    print("   plan vs measured (report.json; `sftplan calibrate RUN_DIR -o calibration.yaml` learns from it):")
    for name, fig in report["figures"].items():
        if isinstance(fig.get("planned"), (int, float)) and isinstance(fig.get("measured"), (int, float)):
            ratio = f"x{fig['measured'] / fig['planned']:.2f}" if fig["planned"] else "-"
            print(f"     {name:24} planned {fig['planned']:>12,.4g}  measured {fig['measured']:>12,.4g} {fig['unit']:8} {ratio}")
