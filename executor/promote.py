"""Export the best passing epoch of a run: weights, config, tokenizer, the plan, the gate report, PROMOTED.md.

Refuses (UserError, exit 2) when no epoch passed the gate, when the chosen checkpoint is incomplete,
or when the run's plan no longer verifies. The export is written to a temp folder beside the
destination and renamed into place: it is whole or absent.

PROMOTED.md lists the plan's deploy suite (MMLU-Pro, IFEval, HarmBench, bias audit...) as still
required before deploy, unless results are supplied (``deploy_results``: a YAML/JSON file of
name -> result, where a result is the drop vs the base model in points (a number), or a mapping
with ``base`` and ``tuned`` (or ``score``) scores, or with ``regression``). Each supplied result is
marked passed when its drop is at most the check's ``max_regression``. The suite's "golden set"
entry is answered by the eval gate itself.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import tempfile
from pathlib import Path

from advisor.errors import UserError
from advisor.models import DeployCheck, Plan
from advisor.planfile import read_plan, verify
from advisor.rules import standard_deploy_suite
from executor import names
from executor.evalgate import GATE_FILE, best_passing_epoch, gate_disagrees, gate_summary, read_gate

_MODEL_GLOBS = ("*.safetensors", "*.safetensors.index.json", "config.json", "generation_config.json")
_TOKENIZER_GLOBS = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                    "chat_template.jinja", "chat_template.json", "tokenizer.model", "vocab.json", "vocab.txt",
                    "merges.txt")
_TOKENIZER_ANY = ("tokenizer.json", "tokenizer.model", "vocab.json", "vocab.txt")


def _check_checkpoint(ckpt: Path, epoch: dict, plan_sha256: str) -> None:
    what = f"best passing epoch {epoch['epoch']}'s checkpoint {ckpt}"
    if not ckpt.is_dir():
        raise UserError(f"{what} is missing (deleted by keep_last rotation?); nothing to promote")
    why = names.check_complete(ckpt, plan_sha256)
    if why:
        raise UserError(f"{what} does not verify: {why}; refusing to promote it")
    if not list(ckpt.glob("*.safetensors")) or not (ckpt / "config.json").is_file():
        raise UserError(f"{what} has no model.safetensors + config.json")
    if not any((ckpt / name).is_file() for name in _TOKENIZER_ANY):
        raise UserError(f"{what} has no tokenizer files")


def _regression(check: DeployCheck, result: object) -> float:
    """The drop in points of one check's result: a number (the drop itself), ``{regression: points}``, or
    ``{base: score, tuned: score}`` on lm-eval's 0-1 scale, turned into points as `sftplan evaluate` does
    (executor.deploy.drop_points: 100 x the difference, the check's direction)."""
    from executor.deploy import drop_points

    name = check.name
    if isinstance(result, bool):
        raise UserError(f"deploy results: {name}: expected a number or a mapping, got {result!r}")
    if isinstance(result, (int, float)):
        if not math.isfinite(result):
            raise UserError(f"deploy results: {name}: the drop must be a finite number of points, got {result!r}")
        return float(result)
    if isinstance(result, dict):
        unknown = sorted(str(k) for k in result if k not in _RESULT_KEYS)
        if unknown:
            raise UserError(f"deploy results: {name}: unknown key {unknown[0]!r} (a result takes "
                            f"{', '.join(_RESULT_KEYS)})")
        numbers = [v for v in result.values() if isinstance(v, (int, float)) and not isinstance(v, bool)]
        if any(not math.isfinite(v) for v in numbers):
            raise UserError(f"deploy results: {name}: scores must be finite numbers, got {result!r}")
        if isinstance(result.get("regression"), (int, float)) and not isinstance(result["regression"], bool):
            return float(result["regression"])
        base, tuned = result.get("base"), result.get("tuned", result.get("score"))
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (base, tuned)):
            if not (0.0 <= base <= 1.0 and 0.0 <= tuned <= 1.0):
                raise UserError(f"deploy results: {name}: base and tuned are scores on lm-eval's 0-1 scale, got "
                                f"{base!r} and {tuned!r} (give the drop in points as a number instead)")
            return drop_points(float(base), float(tuned), check.higher_is_better)
    raise UserError(f"deploy results: {name}: expected the drop in points, or base + tuned scores, got {result!r}")


_RESULT_KEYS = ("base", "tuned", "score", "regression")


def load_deploy_results(path: str | Path, plan: Plan) -> dict[str, float]:
    """Suite name (as the plan spells it) -> drop vs the base model in points. YAML or JSON; a name given twice
    (also in another case: names match case-insensitively) is refused, as YAML would keep the last."""
    from advisor.yamlio import load_yaml_mapping

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file (deploy results)")
    data, _root = load_yaml_mapping(path, hand_written=True)  # a mapping, no key twice, each problem one line
    if "checks" in data and "plan_sha256" in data:
        raise UserError(f"{path}: is a `sftplan evaluate` report: promote reads RUN_DIR/deploy.json itself; "
                        "--deploy-results takes check name -> drop in points (or base + tuned scores)")
    checks = {d.name.lower(): d for d in plan.evaluation.deploy_suite or standard_deploy_suite()}
    out, given = {}, {}
    for key, result in data.items():
        check = checks.get(str(key).lower())
        if check is None:
            raise UserError(f"{path}: '{key}' is not in the plan's deploy suite "
                            f"({', '.join(c.name for c in checks.values())})")
        if check.name in given:
            raise UserError(f"{path}: '{key}' and '{given[check.name]}' name the same check ({check.name}): "
                            "give it once")
        given[check.name] = key
        out[check.name] = _regression(check, result)
    return out


def _promoted_md(run_dir: Path, plan: Plan, gate: dict, best: dict, results: dict[str, float] | None,
                 measured: dict | None = None) -> str:
    base, score = gate["baseline"], best["score"]
    lines = [f"# Promoted: epoch {best['epoch']} of {run_dir.name}", "",
             f"- plan_sha256: `{plan.plan_sha256}` approved by {plan.approval.by} at {plan.approval.at}",
             f"- model: {plan.request.model_path or plan.request.model}, method {plan.method}",
             f"- checkpoint: `{best['checkpoint']}` (step {best['step']}), the best epoch that passed the eval gate",
             "", "## Golden set (eval gate)", "", "| metric | baseline | promoted |", "|---|---|---|"]
    for key in ("loss", "exact_match", "contains"):
        lines.append(f"| {key} | {base[key]:.4f} | {score[key]:.4f} |")
    lines += ["", "## Deploy suite", "", "| check | max drop (pts) | status |", "|---|---|---|"]
    pending, failed = [], []
    suite = plan.evaluation.deploy_suite or standard_deploy_suite()
    if not plan.evaluation.deploy_suite:
        lines[-2:-2] = ["The plan names no deploy suite; the standard one is listed instead.", ""]
    for check in suite:
        if check.name.lower() == "golden set":
            status = f"passed: eval gate, epoch {best['epoch']} (see gate.json)"
        elif results and check.name in results:
            drop = results[check.name]
            ok = drop <= check.max_regression + 1e-12
            status = f"{'passed' if ok else 'FAILED'}: dropped {drop:g} pts"
            run = _measured_check(measured, check.name)
            if run is not None:
                status += f" (lm-eval {run['task']}: base {run['base']:.4f}, tuned {run['tuned']:.4f})"
                if ok and run["verdict"] == "not cleared (limited)":
                    status = f"not cleared: limited to {measured['limit']} examples per task; " + status
                    if check.required:
                        pending.append(check.name)
            if not ok and check.required:
                failed.append(check.name)
        elif _measured_check(measured, check.name) is not None:
            run = _measured_check(measured, check.name)
            status = ("STILL REQUIRED before deploy" if check.required else "not run (optional)") + f": {run['note']}"
            if check.required:
                pending.append(check.name)
        else:
            status = "STILL REQUIRED before deploy" if check.required else "not run (optional)"
            if check.required:
                pending.append(check.name)
        lines.append(f"| {check.name} | {check.max_regression:g} | {status} |")
    lines.append("")
    if failed:
        lines.append(f"**Do not deploy**: {', '.join(failed)} regressed beyond the allowed drop.")
    elif pending:
        lines.append(f"**Not yet cleared for deploy**: still required: {', '.join(pending)}. "
                     "Run them against the base model and this one, then promote again with the results.")
    else:
        lines.append("All required deploy checks passed.")
    return "\n".join(lines) + "\n"


def _measured_check(measured: dict | None, name: str) -> dict | None:
    """The deploy.json entry of one check (run by `sftplan evaluate`), or None."""
    if not measured:
        return None
    return next((c for c in measured["checks"] if c["name"] == name and c["verdict"] not in ("eval gate", "manual")), None)


def remove_leftovers(out: Path) -> list[Path]:
    """Full copies a killed promote left beside ``out`` (``.NAME.*.tmp`` being written, ``.NAME.old-*`` being
    replaced): removed before this promote writes its own."""
    gone = [p for pattern in (f".{out.name}.*.tmp", f".{out.name}.old-*") for p in out.parent.glob(pattern)
            if p.is_dir()]
    for p in gone:
        shutil.rmtree(p, ignore_errors=True)
    return gone


def run_plan(run_dir: Path) -> Plan:
    """The run folder's plan, approved and intact (promote and evaluate act only on those); else one line."""
    if not (run_dir / "plan.yaml").is_file():
        raise UserError(f"{run_dir}: not a run folder (no plan.yaml)")
    plan = read_plan(run_dir / "plan.yaml")
    why = verify(plan)
    if why:
        raise UserError(f"{run_dir / 'plan.yaml'}: {why}")
    for record in (names.RUN_JSON, f"{names.CONFIG}/{names.INPUTS}"):  # the plan the folder trained under
        try:
            trained = json.loads((run_dir / record).read_text(encoding="utf-8")).get("plan_sha256")
        except (OSError, ValueError, AttributeError):
            continue
        if trained is not None and trained != plan.plan_sha256:
            raise UserError(f"{run_dir / 'plan.yaml'} is plan {plan.plan_sha256[:12]}, but {record} records that "
                            f"this folder trained under plan {str(trained)[:12]}; refusing to credit the run to it")
    return plan


def _run_started_at(run_dir: Path) -> str | None:
    """run.json's started_at: set by the first launch, kept by every resume; with the folder's path, which run it is."""
    try:
        info = json.loads((run_dir / names.RUN_JSON).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return info.get("started_at") if isinstance(info, dict) else None


_MD_SHA = re.compile(r"^- plan_sha256: `([0-9a-f]{64})`", re.M)
_MD_RUN = re.compile(r"^# Promoted: epoch \S+ of (.+)$", re.M)


def promotion_identity(out: Path) -> dict:
    """Whose promotion ``out`` holds: promoted.json's plan_sha256, run_dir and run_started_at (older promotions
    record no run), else PROMOTED.md's plan_sha256 line; {} when neither names a plan."""
    try:
        data = json.loads((out / "promoted.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        data = None
    if isinstance(data, dict) and isinstance(data.get("plan_sha256"), str):
        return data
    try:
        md = (out / "PROMOTED.md").read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return {}
    sha, run = _MD_SHA.search(md), _MD_RUN.search(md)
    return {"plan_sha256": sha.group(1), "run_name": run.group(1).strip() if run else None} if sha else {}


def check_promotion_folder(out: Path, run_dir: Path, plan: Plan) -> None:
    """Refuse an ``out`` that is not this run's earlier promotion: a folder without PROMOTED.md, a promotion of
    another plan or of another run of this plan, or one that cannot be identified. A promotion is never replaced
    silently by someone else's; re-promoting this run into its own promotion folder replaces it."""
    _check_promotion_place(out, run_dir, plan)
    if not out.exists():
        return
    if not out.is_dir():
        raise UserError(f"{out}: exists and is not a folder; choose another --out")
    if not (out / "PROMOTED.md").is_file():
        raise UserError(f"{out}: exists and is not an earlier promotion (no PROMOTED.md); choose another --out")
    ident = promotion_identity(out)
    sha = ident.get("plan_sha256")
    if not sha:
        raise UserError(f"{out}: holds a promotion that cannot be identified (promoted.json unreadable or without "
                        "plan_sha256); refusing to replace it: choose another --out")
    recorded = ident.get("run_dir") or ident.get("run_name")
    whose = f"plan {sha[:12]}" + (f", run {recorded}" if recorded else "")
    if sha != plan.plan_sha256:
        raise UserError(f"{out}: holds the promotion of another plan ({whose}; this run's plan is "
                        f"{plan.plan_sha256[:12]}); refusing to replace it: choose another --out")
    here = run_dir.resolve()
    own_folder = out.resolve().parent == here
    if ident.get("run_dir") and not own_folder:
        same = Path(ident["run_dir"]) == here or (
            ident.get("run_started_at") is not None and ident.get("run_started_at") == _run_started_at(run_dir))
        if not same:
            raise UserError(f"{out}: holds the promotion of another run of this plan ({whose}; this run is {here}); "
                            "refusing to replace it: choose another --out")
    written = ident.get("files")
    others = sorted(p.name for p in out.iterdir() if not isinstance(written, list) or p.name not in written)
    if others:
        raise UserError(f"{out}: holds {others[0]}{f' and {len(others) - 1} more' if len(others) > 1 else ''}, "
                        "which no promotion wrote there; replacing the folder would delete it: move it, or choose "
                        "another --out")


def _check_promotion_place(out: Path, run_dir: Path, plan: Plan) -> None:
    """Where a promotion may go: not around the run folder (replacing it would delete the run), inside the run
    folder only as a folder of its own beside the checkpoints (not in a checkpoint, the staged data or config,
    nor named as a checkpoint), and not onto or into what the plan reads (its data, golden set, base model)."""
    from advisor.planfile import lands_on, plan_inputs

    target, here = out.resolve(), run_dir.resolve()
    if here == target or here.is_relative_to(target):
        raise UserError(f"--out {out}: holds the run folder {run_dir}; replacing it would delete the run: choose "
                        "another --out")
    if target.is_relative_to(here):
        if target.parent != here:
            inside = target.relative_to(here).parts[0]
            raise UserError(f"--out {out}: is inside the run folder's {inside}; promote to a folder of its own "
                            f"(default {run_dir / names.PROMOTED})")
        if target.name.startswith((names.CHECKPOINT_PREFIX, names.DAMAGED_PREFIX)) or target.name in (
                names.DATA, names.CONFIG):
            raise UserError(f"--out {out}: is a name the run folder uses for its own files; choose another --out")
    hit = lands_on(out, plan_inputs(plan))
    if hit:
        raise UserError(f"--out {out}: {hit}; choose another --out")


def _check_base_model(run_dir: Path, plan: Plan) -> None:
    """--merge folds the adapter into the base model: it must be the approved one (the sha256 of each file the
    approval recorded), as `run` and `evaluate` require; a hub id cannot be checked and is refused."""
    from advisor.modelfiles import check_model_dir
    from executor.lora import base_model_dir

    folder = Path(base_model_dir(run_dir, plan)).expanduser()
    record = plan.request.model_files
    if not folder.is_dir() or record is None or record.source != "local":
        raise UserError(f"--merge: the base model {folder} is not a local folder whose files the approval recorded; "
                        "cannot check it is the approved one: promote without --merge")
    why = check_model_dir(record, folder)
    if why:
        raise UserError(f"--merge: base model {why}; refusing to merge into a model that is not the approved one")


def promote(run_dir: str | Path, out_dir: str | Path | None = None, *,
            deploy_results: str | Path | None = None, merge: bool = False) -> Path:
    """Export the best passing epoch to ``out_dir`` (default ``RUN_DIR/promoted``); returns its path.

    A LoRA run exports the adapter (executor/lora.py export_adapter); ``merge`` adds merged weights."""
    run_dir = Path(run_dir)
    plan = run_plan(run_dir)
    from executor.preflight import live_run

    pid = live_run(run_dir)
    if pid is not None:
        raise UserError(f"{run_dir}: still running (pid {pid}, lock {run_dir / names.RUN_LOCK}); promote when it "
                        "finishes")
    if not (run_dir / GATE_FILE).is_file():
        raise UserError(f"{run_dir / GATE_FILE}: missing: no epoch has been scored (the run has not finished an "
                        "epoch, or the file was removed); nothing to promote")
    gate = read_gate(run_dir)
    edited = gate_disagrees(gate, plan.evaluation)
    if edited:
        raise UserError(f"{run_dir / GATE_FILE}: {edited} (edited?); refusing to promote on it")
    best = best_passing_epoch(run_dir)
    if best is None:
        raise UserError(f"no epoch passed the eval gate, nothing to promote ({gate_summary(gate)})")
    ckpt = run_dir / best["checkpoint"]
    _check_checkpoint(ckpt, best, plan.plan_sha256)
    results = load_deploy_results(deploy_results, plan) if deploy_results else None
    measured = None
    if results is None:  # the suite as `sftplan evaluate` ran it on this epoch (RUN_DIR/deploy.json), if it did
        from executor.deploy import measured_drops, read_deploy

        measured = read_deploy(run_dir, plan, best["checkpoint"])
        results = measured_drops(measured) if measured else None

    out = Path(out_dir) if out_dir is not None else run_dir / names.PROMOTED
    check_promotion_folder(out, run_dir, plan)
    if merge and plan.method != "lora":
        raise UserError(f"--merge: {run_dir} is a {plan.method} run; only a LoRA adapter has something to merge")
    if merge:
        _check_base_model(run_dir, plan)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        remove_leftovers(out)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    except OSError as exc:
        raise UserError(f"{out.parent}: cannot write the promotion there ({exc.strerror or exc.__class__.__name__})"
                        ) from None
    try:
        if plan.method == "lora":
            from executor.lora import base_model_dir, export_adapter

            export_adapter(ckpt, tmp, base_dir=base_model_dir(run_dir, plan), merge=merge,
                           tokenizer_globs=_TOKENIZER_GLOBS)
        for pattern in (() if plan.method == "lora" else _MODEL_GLOBS + _TOKENIZER_GLOBS):
            for f in ckpt.glob(pattern):
                if f.is_file():
                    shutil.copy2(f, tmp / f.name)
        shutil.copy2(run_dir / "plan.yaml", tmp / "plan.yaml")
        shutil.copy2(run_dir / GATE_FILE, tmp / GATE_FILE)
        if measured:
            shutil.copy2(run_dir / "deploy.json", tmp / "deploy.json")
        (tmp / "PROMOTED.md").write_text(_promoted_md(run_dir, plan, gate, best, results, measured), encoding="utf-8")
        (tmp / "promoted.json").write_text(json.dumps(
            {"epoch": best["epoch"], "step": best["step"], "checkpoint": best["checkpoint"], "score": best["score"],
             "baseline": gate["baseline"], "plan_sha256": plan.plan_sha256, "run_dir": str(run_dir.resolve()),
             "run_started_at": _run_started_at(run_dir), "deploy_results": results,
             "deploy_limit": measured.get("limit") if measured else None,
             "files": sorted({p.name for p in tmp.iterdir()} | {"promoted.json"})}, indent=2) + "\n")
        old = None
        if out.exists():
            old = out.parent / f".{out.name}.old-{tmp.name}"
            out.rename(old)
        tmp.rename(out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
