"""`sftplan plan | render | explain | diff | catalog | approve | verify`: thin shells over the core.

Exit codes: 0 done; 1 `verify` found the plan not approved or edited after approval; 2 bad input
(one line on stderr, raised as UserError).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
from pathlib import Path

from advisor.calibration import load as load_calibration
from advisor.catalog import load_catalog
from advisor.cli.fields import finding_hints
from advisor.cli.request import add_request_arguments, build_request
from advisor.errors import UserError
from advisor.planfile import (
    approval_note,
    approve,
    diff,
    lands_on,
    plan_file_paths,
    read_plan,
    review_path,
    verify,
    write_plan_files,
)
from advisor.planner import ESTIMATED_ONLY, estimated_only_warning, plan


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("plan", help="plan a fine-tune: full SFT or LoRA, hardware, cost, hyperparameters, eval gate")
    add_request_arguments(p)
    p.add_argument("-o", "--output", metavar="PLAN_YAML", help="write the plan (and PLAN.md beside it)")
    p.add_argument("--overwrite-approved", action="store_true",
                   help="let -o write over an approved plan (its approval is lost); refused otherwise")
    p.add_argument("--json", action="store_true", help="print the plan as JSON on stdout")
    p.add_argument("--calibration", metavar="YAML",
                   help="correction factors from finished runs (`sftplan calibrate`; default: $SFTPLAN_CALIBRATION)")
    p.set_defaults(func=cmd_plan)

    p = subparsers.add_parser("render", help="a plan as Markdown for review")
    p.add_argument("plan")
    p.add_argument("--format", choices=["md", "text"], default="md")
    p.set_defaults(func=cmd_render)

    p = subparsers.add_parser("explain", help="every finding of a plan with its source sentence")
    p.add_argument("plan")
    p.set_defaults(func=cmd_explain)

    p = subparsers.add_parser("diff", help="what changed between two plans: decisions, config, cost (exit 1 when they differ)")
    p.add_argument("a")
    p.add_argument("b")
    p.set_defaults(func=cmd_diff)

    p = subparsers.add_parser("catalog", help="GPU tiers with prices and their dates")
    p.add_argument("--json", action="store_true")
    p.add_argument("--measure", choices=["cpu"], help="measure this host's matmul throughput (the cpu tier's peak)")
    p.set_defaults(func=cmd_catalog)

    p = subparsers.add_parser("approve", help="stamp a plan as approved (by, at, plan_sha256)")
    p.add_argument("plan")
    p.add_argument("--by", required=True, metavar="NAME")
    p.set_defaults(func=cmd_approve)

    p = subparsers.add_parser("verify", help="exit 0 if the plan is approved and unchanged since")
    p.add_argument("plan")
    p.set_defaults(func=cmd_verify)


# _DRAW_ONLY: rich (and advisor.render, which draws with it) is imported where a plan or table is drawn, not at
# the top: `sftplan verify` (a CI gate), `plan --json` and `diff` never draw, and rich's import is about a third
# of their start-up (benchmarks/latency.py prints `sftplan verify` start to exit).


def _print(text: str) -> None:
    sys.stdout.write(text if text.endswith("\n") else text + "\n")


def _calibration(args: argparse.Namespace):
    """--calibration FILE (or $SFTPLAN_CALIBRATION): advisor.calibration.Calibration, or None."""
    path = getattr(args, "calibration", None) or os.environ.get("SFTPLAN_CALIBRATION")
    if not path:
        return None
    return load_calibration(path)


def _check_output(path: str | None, overwrite_approved: bool) -> None:
    """-o: a file name, and not an approved plan (its approval would be lost) unless --overwrite-approved."""
    if path is None:
        return
    if not path.strip():
        raise UserError("-o: empty file name; give one such as plan.yaml")
    if overwrite_approved or not os.path.isfile(path):
        return
    try:
        approval = read_plan(path).approval
    except UserError:  # not a readable plan: nothing approved to lose
        return
    if approval is not None:
        raise UserError(f"{path}: an approved plan (by {approval.by} at {approval.at}); writing over it loses the "
                        "approval: choose another -o, or give --overwrite-approved")


def _inputs(args: argparse.Namespace, request=None) -> list[tuple[str, Path]]:
    """(flag or field, path) of every file and folder the plan reads: a write must land on none of them."""
    named = [("--dataset", getattr(args, "dataset", None)), ("--golden", getattr(args, "golden", None)),
             ("--request", getattr(args, "request", None)),
             ("--calibration", getattr(args, "calibration", None) or os.environ.get("SFTPLAN_CALIBRATION")),
             ("--model", getattr(args, "model", None)), ("--model-path", getattr(args, "model_path", None))]
    if request is not None:
        named += [("dataset.file", request.dataset.file.path if request.dataset.file else None),
                  ("golden", request.golden.path if request.golden else None),
                  ("model", request.model), ("model_path", request.model_path)]
    out = []
    for label, value in named:
        if value and os.path.exists(str(value)):
            out.append((label, Path(str(value)).resolve()))
    return out


def _check_writes_spare_inputs(args: argparse.Namespace, request=None) -> None:
    """-o (and the review copy beside it) and --pii-out must not replace a file the plan reads, nor write into the
    model's folder: the training data, golden set, request, calibration or the model's config would be lost."""
    inputs = _inputs(args, request)
    writes = []
    if args.output is not None:
        plan_file, review = plan_file_paths(args.output)  # what write_plan_files refuses, refused before planning
        writes += [("-o", plan_file), ("-o (its review copy)", review)]
    pii_out = getattr(args, "pii_out", None)
    if pii_out and getattr(args, "pii", None) == "redact" and request is None:  # once built, the copy is dataset.file
        writes.append(("--pii-out", Path(pii_out)))
        if args.output is not None and Path(pii_out).resolve() in (Path(args.output).resolve(),
                                                                   review_path(args.output).resolve()):
            raise UserError(f"--pii-out {pii_out}: is where -o writes the plan; give the redacted copy another name")
    for flag, target in writes:
        hit = lands_on(target, inputs)
        if hit:
            raise UserError(f"{flag} {target}: {hit}; write elsewhere")


def _assumed(request) -> str:
    """The line saying a default the plan rests on that the user did not give: avg_tokens without a data file."""
    ds = request.dataset
    if ds.file is None and "avg_tokens" not in ds.fields_set:
        return (f"assumed: dataset.avg_tokens {ds.avg_tokens} tokens per example (the schema's default); "
                "give the real mean, or the data file to measure it")
    return ""


def cmd_plan(args: argparse.Namespace) -> int:
    _check_output(args.output, args.overwrite_approved)
    _check_writes_spare_inputs(args)  # before the request is built: --pii redact writes its copy while building it
    request = build_request(args)
    _check_writes_spare_inputs(args, request)  # the files a --request YAML names
    assumed = _assumed(request)
    result = plan(request, load_catalog(), calibration=_calibration(args))
    if args.output is not None:
        _check_output(args.output, args.overwrite_approved)  # again: it may have been approved while planning
        result = write_plan_files(result, args.output)
    if args.json:
        _print(json.dumps(result.to_dict(), indent=2))
        cfg = result.recommended or (result.closest.config if result.closest else None)
        if cfg is not None and cfg.strategy in ESTIMATED_ONLY:  # drawn with the plan's warnings otherwise
            sys.stderr.write(f"sftplan: warning: {estimated_only_warning(cfg.strategy)}\n")
        if assumed:
            sys.stderr.write(f"sftplan: {assumed}\n")
        return 0
    from rich.console import Console  # only to draw: see _DRAW_ONLY

    from advisor.render import renderables

    console = Console()
    console.print(renderables(result, args.output or "plan.yaml"))
    for hint in finding_hints(result.findings, args.command):
        console.print(hint)
    if assumed:
        console.print(assumed, markup=False, soft_wrap=True)
    if args.output:
        console.print(f"wrote {args.output} and {review_path(args.output)}")
    return 0


def cmd_render(args: argparse.Namespace) -> int:
    from advisor.render import to_markdown, to_text  # only to draw: see _DRAW_ONLY

    p = read_plan(args.plan)
    _print(to_markdown(p, args.plan) if args.format == "md" else to_text(p, plan_file=args.plan))
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    from advisor.render import to_explain_text  # only to draw: see _DRAW_ONLY

    _print(to_explain_text(read_plan(args.plan)))
    return 0


def _short(v: object) -> str:
    s = json.dumps(v) if not isinstance(v, str) else v
    return s if len(s) <= 80 else s[:77] + "..."


def cmd_diff(args: argparse.Namespace) -> int:
    a, b = read_plan(args.a), read_plan(args.b)
    changes = diff(a, b)
    if not changes:
        _print("no differences in planned content")
        return 0
    lines = [f"{args.a} -> {args.b}: {len(changes)} change(s)"]
    for path, old, new in changes:
        if old is None:
            lines.append(f"+ {path}: {_short(new)}")
        elif new is None:
            lines.append(f"- {path}: {_short(old)}")
        else:
            lines.append(f"~ {path}: {_short(old)} -> {_short(new)}")
    _print("\n".join(lines))
    return 1  # like diff(1): 0 same, 1 different, 2 bad input; scripts can gate on it


def cmd_catalog(args: argparse.Namespace) -> int:
    cat = load_catalog()
    if args.measure:
        return _measure_cpu(cat, args.json)
    gpus = [cat.gpus[k] for k in cat.gpus]
    if args.json:
        _print(json.dumps({"sha256": cat.sha256, "gpus": [g.to_dict() for g in gpus]}, indent=2))
        return 0
    from rich.console import Console  # only to draw: see _DRAW_ONLY
    from rich.table import Table

    t = Table(title=f"GPU tiers (catalog {cat.sha256[:12]})")
    for h in ("id", "GiB", "BF16 TFLOPS", "GPUs/node", "max nodes", "$/GPU-h", "price as of"):
        t.add_column(h, no_wrap=True)
    for g in gpus:
        t.add_row(g.id, f"{g.hbm_gib:g}", f"{g.peak_bf16_dense_tflops:g}", str(g.gpus_per_node), str(g.max_nodes),
                  f"{g.usd_per_gpu_hour:.2f}", g.price_as_of)
    console = Console()
    console.print(t)
    # name and price source under the table, one wrapped line per tier: a column of them shrank to nothing at 80
    for g in gpus:
        console.print(f"{g.id}: {g.name}; price: {g.price_source}", markup=False, highlight=False)
    return 0


def _measure_cpu(cat, as_json: bool) -> int:
    """Matmul TFLOPS of this host (float32: what a CPU run trains in; bfloat16 beside it) vs the catalog's cpu tier."""
    if importlib.util.find_spec("torch") is None:
        raise UserError("catalog --measure needs torch: pip install 'sftplan[train]'")
    from executor.cpu_measure import measure  # here: the executor needs the train extra, only --measure uses it

    got = measure()
    tier = cat.gpus.get("cpu")
    got["catalog_peak_tflops"] = tier.peak_bf16_dense_tflops if tier else None
    got["catalog_step_overhead_s"] = tier.step_overhead_s if tier else None
    got["catalog_micro_batch_overhead_s"] = tier.micro_batch_overhead_s if tier else None
    got["catalog_host_runtime_gib"] = tier.host_runtime_gib if tier else None
    got["catalog_startup_s"] = tier.startup_s if tier else None
    if as_json:
        _print(json.dumps(got, indent=2))
        return 0
    _print(f"this host: {got['cores']} cores ({got['threads']} torch threads), torch {got['torch']}\n"
           f"  float32 matmul  {got['float32_tflops']:.4f} TFLOPS  (a CPU run trains in float32)\n"
           f"  bfloat16 matmul {got['bfloat16_tflops']:.4f} TFLOPS\n"
           f"  fixed time of a Trainer step: {got['step_overhead_s']:.4f} s per optimizer step + "
           f"{got['micro_batch_overhead_s']:.4f} s per micro-batch (tiny model's rate {got['tiny_model_tflops']:.4f} TFLOPS)\n"
           f"  host runtime: {got['host_runtime_gib']:.3f} GiB RSS of a fresh process after the executor's run imports "
           "(torch, transformers, peft, accelerate, datasets), before any tensor\n"
           f"  start-up: {got['startup_s']:.2f} s for that process to start and import them (best of 2)\n"
           f"  load average (1 min) before / after: {got['load_average_1min'][0]:g} / {got['load_average_1min'][1]:g} "
           f"on {got['cores']} cores (other jobs make every figure slower: measure on an idle host)\n"
           f"catalog cpu tier: peak {got['catalog_peak_tflops']} TFLOPS, step_overhead_s {got['catalog_step_overhead_s']}, "
           f"micro_batch_overhead_s {got['catalog_micro_batch_overhead_s']}, host_runtime_gib {got['catalog_host_runtime_gib']}, "
           f"startup_s {got['catalog_startup_s']}\n"
           "to plan for this host, set peak_bf16_dense_tflops (the float32 figure), step_overhead_s, "
           "micro_batch_overhead_s, host_runtime_gib and startup_s of the cpu tier in data/hardware_catalog.yaml; `sftplan calibrate` then corrects "
           "them from real runs")
    return 0


def cmd_approve(args: argparse.Namespace) -> int:
    before = read_plan(args.plan)
    try:
        p = approve(before, args.by)
    except UserError as exc:
        if exc.field is not None:  # the CLI names its flag
            raise
        raise UserError(f"{args.plan}: {exc.message}") from None
    if p is before:  # already approved by this reviewer: the file (and the first stamp) stays as it is
        _print(f"{args.plan}: already approved by {p.approval.by} at {p.approval.at}, unchanged "
               f"(plan_sha256 {p.plan_sha256[:12]})")
        return 0
    write_plan_files(p, args.plan)  # the review's approval line too
    _print(f"approved {args.plan} by {p.approval.by} at {p.approval.at} (plan_sha256 {p.plan_sha256[:12]})")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    p = read_plan(args.plan)
    problem = verify(p)
    if problem:
        sys.stderr.write(f"sftplan: {args.plan}: {problem}\n")
        return 1
    note = approval_note(p)
    _print(f"{args.plan}: approved by {p.approval.by} at {p.approval.at}, intact (plan_sha256 {p.plan_sha256[:12]})"
           + (f"; {note}" if note else ""))
    return 0
