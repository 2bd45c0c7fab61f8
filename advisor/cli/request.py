"""`sftplan plan` flags -> PlanRequest (the same schema a request YAML and the TUI fill)."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

from advisor.cli.data import add_plan_arguments, check_data_check_flags, plan_data_check
from advisor.errors import UserError
from advisor.modelfiles import model_files
from advisor.models import GOALS, STRATEGIES, DatasetSpec, PlanRequest
from advisor.request import data_file, measure_dataset, validate_request
from advisor.yamlio import from_mapping, load_yaml_mapping


def add_request_arguments(p: argparse.ArgumentParser) -> None:
    """Flags default to None so a --request YAML can be overridden only by what was given."""
    p.add_argument("--request", metavar="YAML", help="request file (PlanRequest schema); flags override it")
    p.add_argument("--model", help="preset id, bare size (8B), config.json or a model directory")
    p.add_argument("--model-path", help="weights for the executor (default: --model when it is a directory)")
    p.add_argument("--examples", type=int, help="number of training examples")
    p.add_argument("--avg-tokens", type=int, help="mean tokens per example (prompt + response)")
    p.add_argument("--dataset", metavar="JSONL", help="training data: counted, hashed and measured")
    p.add_argument("--golden", metavar="JSONL", help="golden eval set for the epoch gate")
    p.add_argument("--max-seq-len", type=int)
    p.add_argument("--epochs", type=int)
    p.add_argument("--base", choices=["base", "instruct"])
    p.add_argument("--goal", action="append", choices=list(GOALS), dest="goals")
    p.add_argument("--budget-usd", type=float)
    p.add_argument("--deadline-hours", type=float)
    p.add_argument("--have", action="append", metavar="GPU:N", help="owned hardware, e.g. h100-sxm:8 (repeatable)")
    p.add_argument("--nvidia-stack", action="store_true", default=None, help="the team already runs Megatron")
    p.add_argument("--max-gpus", type=int)
    p.add_argument("--network-gbps", type=float, metavar="GBPS", dest="network_gbit_per_s_per_node",
                   help="the cluster's network per node in Gbit/s, all NICs (default: the catalog tier's)")
    p.add_argument("--method", choices=["auto", "full-sft", "lora"])
    p.add_argument("--precision", choices=["bf16-mixed", "bf16-pure"])
    p.add_argument("--gpu", help="pin the search to one GPU tier")
    p.add_argument("--num-gpus", type=int, help="pin the GPU count")
    p.add_argument("--strategy", choices=list(STRATEGIES), help="pin the strategy")
    p.add_argument("--learning-rate", type=float, help="override the rules' learning rate")
    p.add_argument("--packing", action="store_true", default=None, help="pack examples into full sequences")
    p.add_argument("--memory-headroom", type=float, help="fraction of GPU memory a plan keeps free (default 0.10, 0-0.5)")
    p.add_argument("--gate-tolerance", type=float)
    p.add_argument("--deploy-task", action="append", metavar="NAME=TASK:METRIC[:MAX_DROP]",
                   help="add an lm-eval task to the deploy suite, e.g. 'domain QA=my_qa:acc,none:2' (repeatable)")
    p.add_argument("--deploy-include-path", metavar="DIR", help="folder of lm-eval task YAMLs for --deploy-task")
    p.add_argument("--deploy-limit", type=int, help="examples per deploy task (a quick look; cannot clear a check)")
    p.add_argument("--min-golden-score", type=float)
    add_plan_arguments(p)  # --no-data-check, --pii redact|accept: the data check of --dataset


_SIMPLE = ("model", "model_path", "max_seq_len", "epochs", "base", "goals", "budget_usd", "deadline_hours",
           "nvidia_stack", "max_gpus", "method", "precision", "gpu", "num_gpus", "strategy", "learning_rate",
           "packing", "gate_tolerance", "min_golden_score", "memory_headroom", "deploy_include_path", "deploy_limit",
           "network_gbit_per_s_per_node")


def parse_have(items: list[str]) -> list[dict[str, Any]]:
    out = []
    for item in items:
        gpu, sep, count = item.partition(":")
        if not sep or not gpu.strip() or not count.strip().isdigit() or int(count) <= 0:
            raise UserError(f"--have {item!r}: expected GPU:COUNT, e.g. h100-sxm:8")
        out.append({"gpu": gpu.strip().lower(), "count": int(count)})
    return out


def parse_deploy_tasks(items: list[str]) -> list[dict[str, Any]]:
    """'NAME=TASK:METRIC[:MAX_DROP]' -> a DeployTask mapping (max drop in points, default 2)."""
    out = []
    for item in items:
        name, sep, rest = item.partition("=")
        task, _, tail = rest.partition(":")
        metric, _, drop = tail.rpartition(":") if tail.count(":") and _is_number(tail.rsplit(":", 1)[1]) else (tail, "", "")
        if not sep or not name.strip() or not task.strip() or not metric.strip():
            raise UserError(f"--deploy-task {item!r}: expected NAME=TASK:METRIC[:MAX_DROP], e.g. 'domain QA=my_qa:acc,none:2'")
        out.append({"name": name.strip(), "task": task.strip(), "metric": metric.strip(),
                    "max_regression": float(drop) if drop else 2.0})
    return out


def _default(model: type, name: str) -> Any:
    """The schema's default of ``model.name``."""
    return next(f.default for f in dataclasses.fields(model) if f.name == name)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def build_request(args: argparse.Namespace) -> PlanRequest:
    """The PlanRequest of the flags over the --request file. ``args.flag_fields`` records which top-level
    fields came from flags, so an error in one that came from the file names the file (advisor/cli/fields.py)."""
    base: dict[str, Any] = {}
    flag_fields: set[str] = set()
    args.flag_fields = flag_fields
    if getattr(args, "request", None):
        base, root = load_yaml_mapping(args.request, hand_written=True)
        from_mapping(PlanRequest, base, args.request, root)  # a bad value is refused naming the file and line
    for name in _SIMPLE:
        value = getattr(args, name, None)
        if value is not None:
            base[name] = value
            flag_fields.add(name)
    if getattr(args, "have", None):
        base["have"] = parse_have(args.have)
        flag_fields.add("have")
    if getattr(args, "deploy_task", None):
        base["deploy_tasks"] = parse_deploy_tasks(args.deploy_task)
        flag_fields.add("deploy_tasks")
    if not base.get("model"):
        raise UserError("--model is required (or a --request file with 'model')")
    if base.get("model_path") is None and Path(str(base["model"])).is_dir():
        base["model_path"] = str(base["model"])
    record = model_files(str(base["model"]), base.get("model_path"))  # the base model the approval covers
    base["model_files"] = record.to_dict() if record else None
    # a file the request YAML names is measured, hashed and checked as --dataset's is: its counts, hash and data
    # check are never taken from the YAML (they would price and approve data nobody looked at)
    named_file = ((base.get("dataset") or {}).get("file") or {}).get("path") if not getattr(args, "dataset", None) \
        and args.examples is None and args.avg_tokens is None else None
    dataset = getattr(args, "dataset", None) or named_file
    check_data_check_flags(args, dataset)
    if dataset:
        if args.examples is not None or args.avg_tokens is not None:
            raise UserError("--dataset measures the data: give it without --examples/--avg-tokens")
        flag_fields.add("dataset")
        rule = (base.get("dataset") or {}).get("over_max_seq_len", _default(DatasetSpec, "over_max_seq_len"))
        max_seq_len = base.get("max_seq_len") or _default(PlanRequest, "max_seq_len")
        base["dataset"] = measure_dataset(dataset, str(base["model"]), int(max_seq_len), rule).to_dict()
        golden = getattr(args, "golden", None) or (base.get("golden") or {}).get("path")
        path, base["data_check"] = plan_data_check(args, dataset, int(max_seq_len), golden, base["dataset"]["file"])
        flag_fields.add("data_check")
        if path != dataset:  # --pii redact: plan on the redacted copy
            base["dataset"] = measure_dataset(path, str(base["model"]), int(max_seq_len), rule).to_dict()
    elif base.get("data_check") is not None:
        raise UserError("written by `sftplan plan` when it checks a data file, not given by a request: name the "
                        "file under dataset.file.path, or give --dataset", field="data_check")
    elif args.examples is not None or args.avg_tokens is not None:
        flag_fields.add("dataset")
        ds = dict(base.get("dataset") or {})
        if args.examples is not None:
            ds["examples"] = args.examples
        if args.avg_tokens is not None:
            ds["avg_tokens"] = args.avg_tokens
        ds.pop("file", None)  # the numbers given replace a measured file (avg_tokens defaults in the schema)
        base["dataset"] = ds
    if "dataset" not in base:
        raise UserError("give the data: --dataset FILE.jsonl, or --examples N [--avg-tokens T]")
    if getattr(args, "golden", None):
        flag_fields.add("golden")
        base["golden"] = data_file(args.golden).to_dict()
    elif (base.get("golden") or {}).get("path"):  # the request's golden file, hashed now (not its YAML sha256)
        base["golden"] = data_file(base["golden"]["path"]).to_dict()
    return validate_request(base)
