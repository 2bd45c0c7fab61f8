"""`sftplan evaluate RUN_DIR`: the plan's deploy suite (lm-evaluation-harness) on the base model and the epoch
to promote; writes RUN_DIR/deploy.json, which `sftplan promote` reads. Registering imports nothing heavy."""

from __future__ import annotations

import argparse

from advisor.errors import UserError


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("evaluate", help="run the deploy suite (lm-eval) on the base model and the epoch to promote")
    p.add_argument("run_dir", metavar="RUN_DIR")
    add_evaluate_arguments(p)
    p.add_argument("--epoch", type=float, help="the epoch to score (default: the best epoch that passed the gate)")
    p.set_defaults(func=cmd_evaluate)


def add_evaluate_arguments(p: argparse.ArgumentParser) -> None:
    """The flags `evaluate` and `promote --evaluate` share."""
    p.add_argument("--limit", type=int, help="examples per task, for a quick look (recorded; cannot clear a "
                                             "required check unless the plan allows it)")
    p.add_argument("--task-data", action="append", default=[], metavar="TASK=PATH",
                   help="run TASK on a local copy of its dataset (repeatable)")
    p.add_argument("--include-path", metavar="DIR", help="a folder of extra lm-eval task YAMLs")


def task_data(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        task, sep, path = item.partition("=")
        if not sep or not task.strip() or not path.strip():
            raise UserError(f"--task-data {item!r}: expected TASK=PATH, e.g. mmlu_pro=/data/MMLU-Pro")
        out[task.strip()] = path.strip()
    return out


def require_eval_packages() -> None:
    """lm-eval, torch and transformers, found without importing them; else one line naming the extra."""
    import importlib.util

    missing = [name for name in ("lm_eval", "torch", "transformers") if importlib.util.find_spec(name) is None]
    if missing:
        raise UserError("sftplan evaluate runs lm-evaluation-harness, which needs the eval extra: "
                        f"pip install 'sftplan[eval]' (missing: {', '.join(missing)})")


def run_evaluate(args: argparse.Namespace, run_dir: str, epoch: float | None = None) -> dict:
    if args.limit is not None and args.limit <= 0:
        raise UserError(f"--limit: must be a positive integer, got {args.limit}")
    require_eval_packages()
    from executor.deploy import evaluate

    return evaluate(run_dir, epoch=epoch, limit=args.limit, task_data=task_data(args.task_data),
                    include_path=args.include_path)


def cmd_evaluate(args: argparse.Namespace) -> int:
    report = run_evaluate(args, args.run_dir, args.epoch)
    failed = [c["name"] for c in report["checks"] if c["verdict"] == "FAILED" and c["required"]]
    print(f"wrote {args.run_dir}/deploy.json" + (f"; regressed beyond the allowed drop: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0
