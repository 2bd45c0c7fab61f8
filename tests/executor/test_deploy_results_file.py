"""deploy.json is checked as promote reads it: a report `sftplan evaluate` writes (executor.deploy.deploy_report,
from the writer's own result builders) reads back and promotes; each field damaged is one line naming the file
and the field, exit 2, no traceback, nothing written. A check's drop_points must be the drop its own base and
tuned scores give (drop_points(), the writer's function)."""

from __future__ import annotations

import copy
import json

import pytest
from test_promote import _plan as promote_plan

from advisor.errors import UserError
from advisor.models import DeployCheck, DeploySettings, Evaluation, Plan
from advisor.planfile import approve, write_plan
from executor.deploy import (
    DEPLOY_FILE, deploy_report, drop_points, measured_drops, read_deploy, scored_result, unscored_result,
)
from executor.evalgate import record_baseline, record_epoch

SUITE = [DeployCheck(name="local mc", max_regression=2.0, task="sftplan_local_mc", metric="acc,none"),
         DeployCheck(name="local gen", max_regression=2.0, task="sftplan_local_gen", metric="exact_match,none"),
         DeployCheck(name="MMLU-Pro", max_regression=2.0, task="mmlu_pro", metric="exact_match,custom-extract"),
         DeployCheck(name="HarmBench", max_regression=1.0),
         DeployCheck(name="golden set", max_regression=0.0)]
EV = Evaluation(tolerance=0.02, deploy_suite=SUITE)
BASE = {"loss": 3.0, "exact_match": 0.0, "contains": 0.0}
CKPT = "checkpoint-4"


def _plan() -> Plan:
    """test_promote's plan of the tiny model, with this suite and one epoch."""
    base = promote_plan()
    return approve(base.replace(**{"approval": None, "plan_sha256": "", "evaluation": EV,
                                   "hyperparameters": base.hyperparameters.replace(epochs=1),
                                   "checkpointing": base.checkpointing.replace(disk_gib=0.001)}), "Ada")


PLAN = _plan()


def _report(*, limit: int | None = None) -> dict:
    """deploy.json as `sftplan evaluate` writes it, through the writer's own functions."""
    settings = DeploySettings()
    limited = bool(limit)
    results = [scored_result(SUITE[0], 0.3125, 0.5, limited=limited, settings=settings),  # drop -18.75: passed
               scored_result(SUITE[1], 0.5, 0.49, limited=limited, settings=settings),    # drop 1: passed
               unscored_result(SUITE[2], {"mmlu_pro": "mmlu_pro: cannot run here: its data is on the hub"}),
               unscored_result(SUITE[3], {}), unscored_result(SUITE[4], {})]
    report = deploy_report(PLAN, {"epoch": 1, "checkpoint": CKPT}, base_model="/models/tiny", adapter=False,
                           limit=limit, settings=settings, task_data={}, include_paths=[], results=results)
    return json.loads(json.dumps(report))  # as the file holds it


def _write(run, report) -> None:
    (run / DEPLOY_FILE).write_text(report if isinstance(report, str) else json.dumps(report, indent=2) + "\n")


@pytest.fixture
def run_dir(tmp_path):
    """A run folder promote accepts: the approved plan, gate.json with one passing epoch, its checkpoint."""
    from executor.names import write_complete

    run = tmp_path / "run"
    run.mkdir()
    write_plan(PLAN, run / "plan.yaml")
    ckpt = run / CKPT
    ckpt.mkdir()
    (ckpt / "model.safetensors").write_bytes(b"\0" * 64)  # promote of a full-SFT run copies the files as they are
    (ckpt / "config.json").write_text("{}\n")
    (ckpt / "tokenizer.json").write_text("{}\n")
    write_complete(ckpt, step=4, epoch=1.0, plan_sha256=PLAN.plan_sha256)
    record_baseline(run, BASE, EV)
    record_epoch(run, epoch=1, step=4, checkpoint=CKPT, score={"loss": 2.0, "exact_match": 0.1, "contains": 0.1},
                 evaluation=EV)
    return run


def test_the_writers_report_reads_back(run_dir):
    report = _report()
    assert [c["verdict"] for c in report["checks"]] == ["passed", "passed", "unavailable", "manual", "eval gate"]
    _write(run_dir, report)
    assert read_deploy(run_dir, PLAN, CKPT) == report
    assert measured_drops(report) == {"local mc": drop_points(0.3125, 0.5, True), "local gen": pytest.approx(1.0)}
    limited = _report(limit=10)
    assert [c["verdict"] for c in limited["checks"]][:2] == ["not cleared (limited)"] * 2
    _write(run_dir, limited)
    assert read_deploy(run_dir, PLAN, CKPT) == limited
    assert read_deploy(run_dir, PLAN, "checkpoint-8") is None  # another epoch's report: not this promotion's evidence
    _write(run_dir, {**report, "plan_sha256": "0" * 64})
    assert read_deploy(run_dir, PLAN, CKPT) is None


def test_promote_reads_the_writers_report(run_dir, capsys):
    from advisor.cli import main

    _write(run_dir, _report())
    assert main(["promote", str(run_dir)]) == 0, capsys.readouterr().err
    md = (run_dir / "promoted" / "PROMOTED.md").read_text()
    assert "| local mc | 2 | passed: dropped -18.75 pts (lm-eval sftplan_local_mc: base 0.3125, tuned 0.5000) |" in md


def _set(where: str, value):
    """A damage: set the value at a dotted path (checks.0.drop_points), or delete it (value DELETE)."""
    def damage(report):
        *parents, last = where.split(".")
        obj = report
        for p in parents:
            obj = obj[int(p)] if isinstance(obj, list) else obj[p]
        if value is DELETE:
            del obj[int(last) if isinstance(obj, list) else last]
        else:
            obj[int(last) if isinstance(obj, list) else last] = copy.deepcopy(value)
    return damage


DELETE = object()


def _duplicate(report):
    report["checks"].append(copy.deepcopy(report["checks"][0]))


def _limited_but_passed(report):
    report["limit"] = 10  # a limited run cannot clear a check (the plan does not let it): "passed" is not its verdict


DAMAGES = [
    # the QA findings: drop_points "abc", [1], NaN, a drop its scores do not give; a check without a name
    (_set("checks.0.drop_points", "abc"), "checks[0].drop_points: expected a finite number or null, got \"abc\""),
    (_set("checks.0.drop_points", [1]), "checks[0].drop_points: expected a finite number or null, got [1]"),
    (_set("checks.0.drop_points", float("nan")), "checks[0].drop_points: expected a finite number or null, got nan"),
    (_set("checks.0.drop_points", float("inf")), "checks[0].drop_points: expected a finite number or null, got inf"),
    (_set("checks.0.drop_points", True), "checks[0].drop_points: expected a finite number or null, got true"),
    (_set("checks.0.drop_points", 10**400), "checks[0].drop_points: expected a finite number or null"),
    (_set("checks.0.drop_points", -1e9), "checks[0].drop_points: -1e+09 is not the drop its base 0.3125 and tuned "
                                         "0.5 give (-18.75 points)"),
    (_set("checks.0.drop_points", -18.7), "checks[0].drop_points: -18.7 is not the drop"),
    (_set("checks.0.drop_points", None), "checks[0].drop_points: missing, though the verdict is \"passed\""),
    (_set("checks.0.drop_points", DELETE), "checks[0].drop_points: missing"),
    (_set("checks.0.name", DELETE), "checks[0].name: missing"),
    (_set("checks.1.name", 5), "checks[1].name: expected a string, got 5"),
    (_set("checks.1.name", "GSM8K"), "checks[1].name: \"GSM8K\" is not in the plan's deploy suite"),
    (_duplicate, "checks[5].name: \"local mc\" is recorded twice"),
    (_set("checks.1", DELETE), "checks: no entry for \"local gen\" of the plan's deploy suite"),
    (_set("checks.1", "local gen"), "checks[1]: expected an object, got \"local gen\""),
    (_set("checks.0.base", "0.3125"), "checks[0].base: expected a finite number or null, got \"0.3125\""),
    (_set("checks.0.tuned", float("nan")), "checks[0].tuned: expected a finite number or null, got nan"),
    (_set("checks.0.base", None), "checks[0].base: missing a score, though the verdict is \"passed\""),
    (_set("checks.0.tuned", 0.9), "checks[0].drop_points: -18.75 is not the drop its base 0.3125 and tuned 0.9 give"),
    (_set("checks.0.verdict", "FAILED"), "checks[0].verdict: \"FAILED\", but a drop of -18.75 points (allowed 2) is "
                                         "\"passed\""),
    (_set("checks.0.verdict", "cleared"), "checks[0].verdict: \"cleared\" is not a verdict for this check"),
    (_set("checks.0.verdict", 1), "checks[0].verdict: expected a string, got 1"),
    (_set("checks.3.verdict", "passed"), "checks[3].verdict: \"passed\" is not a verdict for this check (one of: "
                                         "manual)"),
    (_set("checks.2.drop_points", 0.0), "checks[2].drop_points: a drop, though the verdict is \"unavailable\""),
    (_set("checks.2.base", 0.5), "checks[2].base: a score, though the verdict is \"unavailable\""),
    (_set("checks.2.note", 3), "checks[2].note: expected a string, got 3"),
    (_set("checks.1.max_regression", 1e9), "checks[1].max_regression: 1000000000.0, but the plan's check "
                                           "\"local gen\" has 2.0"),
    (_set("checks.1.max_regression", "2"), "checks[1].max_regression: expected a finite number, got \"2\""),
    (_set("checks.1.higher_is_better", False), "checks[1].higher_is_better: false, but the plan's check"),
    (_set("checks.1.required", "yes"), "checks[1].required: expected true or false, got \"yes\""),
    (_set("checks.1.required", False), "checks[1].required: false, but the plan's check \"local gen\" has true"),
    (_set("checks.1.task", "mmlu_pro"), "checks[1].task: \"mmlu_pro\", but the plan's check"),
    (_set("checks.1.metric", 7), "checks[1].metric: expected a string or null, got 7"),
    (_limited_but_passed, "checks[0].verdict: \"passed\", but a drop of -18.75 points (allowed 2), limited, is "
                          "\"not cleared (limited)\""),
    (_set("plan_sha256", DELETE), "plan_sha256: missing"),
    (_set("plan_sha256", 5), "plan_sha256: expected a string, got 5"),
    (_set("checkpoint", None), "checkpoint: expected a string, got null"),
    (_set("epoch", "1"), "epoch: expected a finite number, got \"1\""),
    (_set("limit", "10"), "limit: expected an integer or null, got \"10\""),
    (_set("limit", True), "limit: expected an integer or null, got true"),
    (_set("limit", 0), "limit: expected a positive number of examples per task, got 0"),
    (_set("limited_can_clear", "no"), "limited_can_clear: expected true or false, got \"no\""),
    (_set("limited_can_clear", True), "limited_can_clear: true, but the plan's"),
    (_set("seed", 1.5), "seed: expected an integer, got 1.5"),
    (_set("batch_size", DELETE), "batch_size: missing"),
    (_set("adapter", "no"), "adapter: expected true or false, got \"no\""),
    (_set("base_model", 1), "base_model: expected a string, got 1"),
    (_set("finished_at", DELETE), "finished_at: missing"),
    (_set("lm_eval_version", None), "lm_eval_version: expected a string, got null"),
    (_set("task_data", []), "task_data: expected an object, got []"),
    (_set("task_data", {"mmlu_pro": 1}), "task_data[\"mmlu_pro\"]: expected a path, got 1"),
    (_set("include_paths", [1]), "include_paths[0]: expected a path, got 1"),
]


@pytest.mark.parametrize("damage, says", DAMAGES, ids=[s.split(":")[0] + f"-{i}" for i, (_, s) in enumerate(DAMAGES)])
def test_each_damaged_field_is_one_line_naming_it(run_dir, damage, says):
    report = _report()
    damage(report)
    _write(run_dir, report)
    with pytest.raises(UserError) as err:
        read_deploy(run_dir, PLAN, CKPT)
    message = str(err.value)
    assert message.startswith(f"{run_dir / DEPLOY_FILE}: {says}"), message
    assert "\n" not in message and message.endswith(f"(run `sftplan evaluate {run_dir}` again)")


def test_an_older_report_without_adapter_still_reads(run_dir):
    report = _report()
    del report["adapter"]  # deploy.json written before LoRA deploy recorded it
    _write(run_dir, report)
    assert read_deploy(run_dir, PLAN, CKPT) == report


@pytest.mark.parametrize("value", ['"abc"', "[1]", "NaN", "-1e9", None])
def test_promote_refuses_a_damaged_report_in_one_line_exit_2(run_dir, capsys, value):
    """The QA findings, through `sftplan promote RUN_DIR`: one line, exit 2, no traceback, nothing written."""
    from advisor.cli import main

    text = json.dumps(_report(), indent=2)
    if value is None:  # the check's name deleted
        text = text.replace('"name": "local mc",', "", 1)
        field = "checks[0].name: missing"
    else:
        text = text.replace('"drop_points": -18.75', f'"drop_points": {value}', 1)
        field = "checks[0].drop_points: "
    assert text != json.dumps(_report(), indent=2)
    _write(run_dir, text)
    before = sorted(p.name for p in run_dir.iterdir())
    assert main(["promote", str(run_dir)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"sftplan: {run_dir / DEPLOY_FILE}: {field}") and err.count("\n") == 1, err
    assert "Traceback" not in err
    assert sorted(p.name for p in run_dir.iterdir()) == before and (run_dir / DEPLOY_FILE).read_text() == text
