"""`sftplan run | promote | demo`: thin shells over executor.run, executor.promote and advisor.cli.demo.

Registering imports nothing heavy (no torch, transformers or deepspeed): `sftplan --help` stays fast.
"""

from __future__ import annotations

import argparse

from advisor.errors import UserError


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("run", help="run an approved plan: full SFT or LoRA/DoRA (peft), FSDP / DeepSpeed ZeRO-3")
    p.add_argument("plan", help="the approved plan.yaml")
    p.add_argument("--out", metavar="RUN_DIR", help="run folder (default: run-<plan sha> beside the plan); "
                                                    "a folder with this plan's checkpoints resumes")
    p.add_argument("--dry-run", action="store_true", help="write and print the configs and launch command; train nothing")
    p.add_argument("--allow-mismatch", action="store_true",
                   help="run although the visible accelerators differ from the plan's (recorded in run.json)")
    p.set_defaults(func=cmd_run)

    p = subparsers.add_parser("promote", help="export the best epoch that passed the eval gate")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--out", metavar="DIR", help="destination (default: RUN_DIR/promoted)")
    p.add_argument("--deploy-results", metavar="FILE", help="YAML/JSON results of the plan's deploy suite")
    p.add_argument("--evaluate", action="store_true",
                   help="first run the deploy suite through lm-eval (as `sftplan evaluate`) on the epoch to promote")
    from advisor.cli.evaluate import add_evaluate_arguments

    add_evaluate_arguments(p)
    p.add_argument("--merge", action="store_true", help="LoRA run: also write base + adapter merged weights (OUT/merged)")
    p.set_defaults(func=cmd_promote)

    p = subparsers.add_parser("demo", help="tiny model on the CPU: plan, approve, run 3 epochs, gate, promote (full SFT or --method lora)")
    p.add_argument("--out", metavar="DIR", default="sftplan-demo", help="folder for everything (default: sftplan-demo)")
    p.add_argument("--method", choices=["full-sft", "lora"], default="full-sft",
                   help="full-sft (forced over the rules) or lora (what the rules choose for the demo's data)")
    p.set_defaults(func=cmd_demo)


def cmd_run(args: argparse.Namespace) -> int:
    from executor.run import run

    return run(args.plan, args.out, dry_run=args.dry_run, allow_mismatch=args.allow_mismatch)


def cmd_promote(args: argparse.Namespace) -> int:
    from executor.promote import promote

    if args.evaluate:
        from advisor.cli.evaluate import run_evaluate

        if args.deploy_results:
            raise UserError("--evaluate and --deploy-results: give one source of deploy results")
        run_evaluate(args, args.run_dir)
    out = promote(args.run_dir, args.out, deploy_results=args.deploy_results, merge=args.merge)
    print(f"promoted: {out} (see {out / 'PROMOTED.md'})")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from advisor.cli.demo import demo

    return demo(args.out, method=args.method)
