"""Schema field -> command-line flag, per command: the one table the CLI reads a UserError's field with.

The core names the field of a bad value (``have[0].gpu``, ``dataset.examples``); the CLI shows the
flag the user typed. A field is looked up with its list indexes dropped (``have[0].gpu`` ->
``have.gpu``), then by ever shorter prefixes (``have``). A test walks every error the planner can
raise and checks this table (and the TUI's) covers it.
"""

from __future__ import annotations

from advisor.errors import UserError, covers, lookup, without_indexes  # noqa: F401 - covers: for tests
from advisor.rules import FIELD_OF_FINDING

PLAN_FLAGS: dict[str, str | None] = {
    "model": "--model",
    "model_path": "--model-path",
    "model_files": "--model-path",  # hashed from --model-path (or a --model directory) when the plan is made
    "dataset": "--examples/--avg-tokens",
    "dataset.examples": "--examples",
    "dataset.avg_tokens": "--avg-tokens",
    "dataset.file": "--dataset",
    # no flag (set in a --request file): the message names the field itself
    "dataset.over_max_seq_len": None, "dataset.long_rows": None, "dataset.token_p50": None,
    "dataset.token_p95": None, "dataset.token_max": None, "dataset.token_count_method": None,
    "golden": "--golden",
    "max_seq_len": "--max-seq-len",
    "epochs": "--epochs",
    "base": "--base",
    "goals": "--goal",
    "budget_usd": "--budget-usd",
    "deadline_hours": "--deadline-hours",
    "have": "--have",
    "nvidia_stack": "--nvidia-stack",
    "max_gpus": "--max-gpus",
    "method": "--method",
    "precision": "--precision",
    "gpu": "--gpu",
    "num_gpus": "--num-gpus",
    "strategy": "--strategy",
    "learning_rate": "--learning-rate",
    "packing": "--packing",
    "memory_headroom": "--memory-headroom",
    "memory_check_steps": None,  # request YAML only (the OOM guard's check after the first steps)
    "gate_tolerance": "--gate-tolerance",
    "min_golden_score": "--min-golden-score",
    "deploy_tasks": "--deploy-task", "deploy_include_path": "--deploy-include-path", "deploy_limit": "--deploy-limit",
    "network_gbit_per_s_per_node": "--network-gbps",
    "data_check": "--dataset",  # measured by plan --dataset
    "data_check.pii_decision": "--pii",  # redact | accept
    "data_check.skipped": "--no-data-check",
}

# `sftplan estimate`: TrainConfig's fields and the two it resolves
ESTIMATE_FLAGS = {
    "model": "--model",
    "gpu": "--gpu",
    "num_gpus": "--num-gpus",
    "strategy": "--strategy",
    "precision": "--precision",
    "seq_len": "--seq-len",
    "micro_batch_size": "--micro-batch",
    "grad_accum": "--grad-accum",
    "activation_checkpointing": "--activation-checkpointing",
    "tp": "--tp",
    "pp": "--pp",
    "loss_chunks": "--loss-chunks",
    "memory_headroom": "--memory-headroom",
    "attention": None,  # benchmarks only: "flash" models a flash-attention stack for every family
    "network_gbps": "--network-gbps",
}

DATA_FLAGS = {  # sftplan data check / dedup / table: the settings advisor.datacheck names
    "near_threshold": "--near-threshold",
    "shingle_words": "--shingle-words",
    "max_seq_len": "--max-seq-len",
    "spacy_model": "--spacy-model",
    "model": "--model",
}

TABLE_FLAGS = {  # sftplan table: the request fields its flags set for every column
    "dataset.avg_tokens": "--avg-tokens", "epochs": "--epochs", "goals": "--goal", "max_seq_len": "--max-seq-len",
    "budget_usd": "--budget-usd", "deadline_hours": "--deadline-hours", "model": "--models",
}

FLAGS = {
    "plan": PLAN_FLAGS,
    "data": DATA_FLAGS,
    "estimate": ESTIMATE_FLAGS,
    "table": TABLE_FLAGS,
    "tui": PLAN_FLAGS,
    # a blocking finding's field is set when the plan is made: its `sftplan plan` flag
    "approve": {"approval.by": "--by", "data_check.pii_decision": "--pii (sftplan plan)",
                "data_check.skipped": "--no-data-check (sftplan plan)"},
}

def flag_of(field: str, command: str | None) -> str | None:
    return lookup(field, FLAGS.get(command or "", {}))


def finding_hints(findings, command: str | None) -> list[str]:
    """'<rule id>: <field> is <flag>' for each finding that names a request field the user sets
    (rules.FIELD_OF_FINDING): the finding says the field, the CLI says its flag."""
    out = []
    for f in findings:
        field = FIELD_OF_FINDING.get(f.rule_id)
        flag = flag_of(field, command) if field else None
        if flag:
            out.append(f"{f.rule_id}: {field} is {flag} on the command line")
    return out


def message(exc: UserError, command: str | None, request_file: str | None = None,
            flag_fields: frozenset[str] = frozenset()) -> str:
    """The line the CLI prints: '<flag>: <message>'; a value that came from a --request file names the file
    and the field instead; an error without a field is printed as it is."""
    if exc.field is None or exc.names_file:
        return str(exc)
    top = without_indexes(exc.field).split(".")[0]
    if request_file and top not in flag_fields:
        return f"{request_file}: {exc.field}: {exc.message}"
    flag = flag_of(exc.field, command)
    return f"{flag}: {exc.message}" if flag else str(exc)
