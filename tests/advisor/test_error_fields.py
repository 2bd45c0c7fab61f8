"""Errors carry the schema field, never a flag; the CLI (field -> flag) and the TUI (field -> widget) map them by
one table each. Every error the planner can raise for a bad request is walked here, and both tables must cover it."""

import dataclasses
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from advisor.catalog import load_catalog
from advisor.cli.fields import ESTIMATE_FLAGS, PLAN_FLAGS, covers, finding_hints, flag_of, message
from advisor.errors import UserError
from advisor.models import PlanRequest, TrainConfig
from advisor.planner import plan
from advisor.request import validate_request
from advisor.rules import FIELD_OF_FINDING
from advisor.schema_doc import field_types, is_model
from advisor.tui.planning import WIDGET_OF_FIELD, FieldErrors, make_plan

REPO = Path(__file__).resolve().parents[2]
OK = {"model": "llama-3.1-8b", "dataset": {"examples": 50_000, "avg_tokens": 1000}}

# (request changes, the field the error must name): every kind of bad request the planner refuses
BAD = [
    ({"have": [{"gpu": "h10-sxm", "count": 8}]}, "have[0].gpu"),
    ({"have": [{"gpu": "h100-sxm", "count": 8}, {"gpu": "b2000", "count": 8}]}, "have[1].gpu"),
    ({"have": [{"gpu": "h100-sxm", "count": 0}]}, "have[0].count"),
    ({"gpu": "h10"}, "gpu"),
    ({"model": "lama-3.1-8b"}, "model"),
    ({"model": "0.0001B"}, "model"),
    ({"model": "phi-3-mini", "max_seq_len": 8192}, "max_seq_len"),
    ({"dataset": {"examples": 0, "avg_tokens": 1000}}, "dataset.examples"),
    ({"dataset": {"examples": 10, "avg_tokens": -1}}, "dataset.avg_tokens"),
    ({"dataset": {"examples": True, "avg_tokens": 1000}}, "dataset.examples"),
    ({"dataset": {"examples": 1e30, "avg_tokens": 1000}}, "dataset.examples"),
    ({"budget_usd": -5}, "budget_usd"),
    ({"budget_usd": math.nan}, "budget_usd"),
    ({"deadline_hours": math.inf}, "deadline_hours"),
    ({"learning_rate": 1e308}, "learning_rate"),
    ({"gate_tolerance": math.inf}, "gate_tolerance"),
    ({"min_golden_score": 2}, "min_golden_score"),
    ({"max_gpus": 0}, "max_gpus"),
    ({"num_gpus": True}, "num_gpus"),
    ({"epochs": 10_000}, "epochs"),
    ({"memory_headroom": 0.9}, "memory_headroom"),
    ({"method": "qlora"}, "method"),
    ({"strategy": "zero4"}, "strategy"),
    ({"goals": ["be-better"]}, "goals[0]"),
    ({"base": "chat"}, "base"),
    ({"precision": "fp8"}, "precision"),
    ({"nvidia_stack": "maybe"}, "nvidia_stack"),
    ({"colour": "red"}, "colour"),
]


def _error_of(changes: dict) -> UserError:
    with pytest.raises(UserError) as exc:
        plan(validate_request({**OK, **changes}), load_catalog())
    return exc.value


@pytest.mark.parametrize("changes,field", BAD, ids=[f for _, f in BAD])
def test_every_planner_error_names_its_field_and_no_flag(changes, field):
    exc = _error_of(changes)
    assert exc.field == field
    assert "\n" not in str(exc) and not re.search(r"(^|\s)--[a-z]", exc.message), exc.message
    if field != "colour":  # an unknown key has no flag and no widget: it is shown with its name
        assert covers(field, PLAN_FLAGS), f"no flag for {field}"
        assert covers(field, WIDGET_OF_FIELD), f"no widget entry for {field}"


def _fields(model: type, prefix: str = ""):
    for name, annotation in field_types(model).items():
        path = f"{prefix}{name}"
        yield path
        for arg in [annotation, *getattr(annotation, "__args__", ())]:
            inner = getattr(arg, "__args__", (arg,))
            for t in inner:
                if is_model(t):
                    yield from _fields(t, f"{path}.")


def test_both_tables_cover_every_request_field():
    for field in _fields(PlanRequest):
        assert covers(field, PLAN_FLAGS), f"advisor/cli/fields.py PLAN_FLAGS lacks {field}"
        assert covers(field, WIDGET_OF_FIELD), f"advisor/tui/planning.py WIDGET_OF_FIELD lacks {field}"
    for f in dataclasses.fields(TrainConfig):
        assert f.name in ESTIMATE_FLAGS or f.name in ("trainable", "lora_rank"), f.name  # the planner's own two


def test_core_planner_modules_raise_only_errors_with_a_field():
    for name in ("planner.py", "plan_search.py", "rules.py"):
        text = (REPO / "advisor" / name).read_text()
        for call in re.findall(r"UserError\((.*?)\)\s*(?:from|$)", text, flags=re.S | re.M):
            assert "field=" in call, f"advisor/{name}: UserError without field: {call[:80]}"
    planner_path = ("architecture", "catalog", "planner", "plan_search", "rules", "planfile", "request", "yamlio",
                    "estimate", "cost", "memory", "throughput", "specs", "models", "rows", "lora_plan")
    for path in (REPO / "advisor" / f"{m}.py" for m in planner_path):
        for line in path.read_text().splitlines():
            if "UserError(" in line:
                assert not re.search(r"""UserError\(f?["'](--|[^"']*\s--[a-z])""", line), f"{path.name}: {line.strip()}"


def test_cli_names_the_flag_that_was_typed():
    out = subprocess.run([sys.executable, "-m", "advisor", "plan", "--model", "llama-3.1-8b", "--examples", "50000",
                          "--avg-tokens", "1000", "--have", "h10-sxm:8"], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 2 and out.stderr.startswith("sftplan: --have: unknown GPU 'h10-sxm'"), out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and "--gpu" not in out.stderr


@pytest.mark.parametrize("argv, flag", [(["table", "--avg-tokens", "0"], "--avg-tokens"),
                                        (["table", "--epochs", "0"], "--epochs"),
                                        (["data", "check", "x.jsonl", "--model", "/nonexistent"], "--model")])
def test_table_and_data_errors_name_the_flag_not_the_field(argv, flag):
    out = subprocess.run([sys.executable, "-m", "advisor", *argv], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 2 and out.stderr.startswith(f"sftplan: {flag}: "), out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_a_value_from_the_request_file_names_the_file(tmp_path):
    req = tmp_path / "req.yaml"
    req.write_text(yaml.safe_dump({**OK, "have": [{"gpu": "h10-sxm", "count": 8}]}))
    out = subprocess.run([sys.executable, "-m", "advisor", "plan", "--request", str(req)], cwd=REPO,
                         capture_output=True, text=True)
    assert out.returncode == 2 and out.stderr.startswith(f"sftplan: {req}: have[0].gpu: unknown GPU"), out.stderr


def test_message_maps_field_to_flag_per_command():
    assert message(UserError("bad", field="dataset.examples"), "plan") == "--examples: bad"
    assert message(UserError("bad", field="have[3].count"), "plan") == "--have: bad"
    assert message(UserError("bad", field="micro_batch_size"), "estimate") == "--micro-batch: bad"
    assert message(UserError("bad", field="approval.by"), "approve") == "--by: bad"
    assert message(UserError("f.jsonl:3: bad", field="dataset.file", names_file=True), "plan") == "f.jsonl:3: bad"
    assert message(UserError("plain"), "plan") == "plain"


def test_tui_puts_the_owned_typo_on_the_owned_field():
    with pytest.raises(FieldErrors) as exc:
        make_plan({**OK, "have": [{"gpu": "h10-sxm", "count": 8}]})
    assert set(exc.value.errors) == {"have"} and "h10-sxm" in exc.value.errors["have"]
    with pytest.raises(FieldErrors) as exc:
        make_plan({**OK, "dataset": {"examples": 0, "avg_tokens": 0}, "budget_usd": math.inf})
    assert {"examples", "avg_tokens", "budget_usd"} <= set(exc.value.errors)
    with pytest.raises(FieldErrors) as exc:  # no widget: the status line, with the field's name
        make_plan({**OK, "learning_rate": 5.0})
    assert exc.value.errors[""].startswith("learning_rate: ")


def test_bad_numbers_in_a_request_file_name_file_line_and_field(tmp_path):
    for text, field in (("  examples: true\n", "dataset.examples"), ("  examples: .inf\n", "dataset.examples"),
                        ("  examples: 1.0e+30\n", "dataset.examples")):
        req = tmp_path / "req.yaml"
        req.write_text("model: llama-3.1-8b\ndataset:\n" + text)
        out = subprocess.run([sys.executable, "-m", "advisor", "plan", "--request", str(req)], cwd=REPO,
                             capture_output=True, text=True)
        assert out.returncode == 2 and out.stderr.startswith(f"sftplan: {req}:3: {field}: "), out.stderr
        assert len(out.stderr.strip().splitlines()) == 1


_FLAG = re.compile(r"(^|[\s(])--[a-z]")


def _names_a_flag(text: str) -> bool:
    """A CLI flag outside a backticked command (`sftplan promote --deploy-results` is a command to run)."""
    return bool(_FLAG.search(re.sub(r"`[^`]*`", "", text)))


# (request changes): requests whose plans carry every finding that names a request field the user sets
FINDING_REQUESTS = [
    {"data_check": {"skipped": True}},
    {"data_check": {"rows": 10, "pii_hits": 2, "pii_kinds": ["EMAIL_ADDRESS"], "pii_first": ["t.jsonl:3 (email)"]}},
    {"data_check": {"rows": 10, "pii_hits": 2, "pii_kinds": ["EMAIL_ADDRESS"], "pii_first": ["t.jsonl:3 (email)"],
                    "pii_decision": "accept"}},
    {"method": "lora", "learning_rate": 1e-4},
    {"method": "full-sft", "learning_rate": 1e-5},
]


def test_findings_name_fields_not_flags_and_the_cli_maps_them():
    """Core messages name no flag, findings included: a finding that asks for a request field names the field
    (rules.FIELD_OF_FINDING), and both faces' tables map it (the CLI prints the flag beside the plan)."""
    seen = set()
    for changes in FINDING_REQUESTS:
        p = plan(validate_request({**OK, **changes}), load_catalog())
        for f in p.findings:
            for text in (f.verdict, f.why, f.source):
                assert not _names_a_flag(text), f"{f.rule_id}: {text}"
            if f.rule_id in FIELD_OF_FINDING:
                seen.add(f.rule_id)
                assert FIELD_OF_FINDING[f.rule_id] in f.why, f.why
                assert finding_hints([f], "plan") == [f"{f.rule_id}: {FIELD_OF_FINDING[f.rule_id]} is "
                                                      f"{flag_of(FIELD_OF_FINDING[f.rule_id], 'plan')} on the command line"]
                assert covers(FIELD_OF_FINDING[f.rule_id], WIDGET_OF_FIELD)
    assert seen == set(FIELD_OF_FINDING)
    assert flag_of("data_check.pii_decision", "plan") == "--pii" and flag_of("data_check.skipped", "plan") == "--no-data-check"


def test_cli_prints_the_flag_of_a_finding_that_asks_for_a_field(tmp_path):
    """The request names a data file holding an e-mail address: the CLI measures and checks it (a request's own
    data_check is never taken), the PII finding asks for data_check.pii_decision, and the CLI names --pii."""
    import json

    data = tmp_path / "t.jsonl"
    rows = [{"prompt": f"question {i} about things", "response": f"answer {i}"} for i in range(9)]
    data.write_text("".join(json.dumps(r) + "\n" for r in [*rows, {"prompt": "mail", "response": "ann@example.com"}]))
    req = tmp_path / "req.yaml"
    req.write_text(yaml.safe_dump({"model": "llama-3.1-8b", "dataset": {
        "examples": 50_000, "avg_tokens": 1000, "file": {"path": str(data), "sha256": "not-checked", "rows": 1}}}))
    out = subprocess.run([sys.executable, "-m", "advisor", "plan", "--request", str(req)], cwd=REPO,
                         capture_output=True, text=True, env={**__import__("os").environ, "COLUMNS": "200"})
    assert out.returncode == 0, out.stderr
    assert "data.pii: data_check.pii_decision is --pii on the command line" in out.stdout


def test_no_string_of_the_planning_core_names_a_flag():
    """Every string the planner's modules can put in a finding, warning or error (docstrings aside) names
    fields, not flags; a backticked command to run is allowed."""
    import ast

    for name in ("rules", "lora_plan", "planner", "plan_search", "cost", "memory", "throughput", "calibration",
                 "datacheck", "pii", "neardup", "scale_table", "step_overhead", "memory_overheads", "evalcost"):
        tree = ast.parse((REPO / "advisor" / f"{name}.py").read_text())
        docstrings = {id(n.body[0].value) for n in ast.walk(tree)
                      if isinstance(n, (ast.Module, ast.FunctionDef, ast.ClassDef)) and n.body
                      and isinstance(n.body[0], ast.Expr)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
                assert not _names_a_flag(node.value), f"advisor/{name}.py:{node.lineno}: {node.value[:80]}"
