"""`sftplan evaluate` runs lm-evaluation-harness for real (HF backend, CPU) on the tiny model with local tasks,
base vs tuned; deploy.json and the promote verdict both ways; unavailable tasks are one line; --limit is recorded.

The generative task's expected answers are the base model's own greedy answers, as lm-eval itself produced
them (a first lm-eval run with log_samples): the base scores 1.0 by construction, so a checkpoint with other
weights regresses by a known, large amount and an identical checkpoint by exactly 0.
"""

from __future__ import annotations

import json
import shutil

import pytest

from advisor.models import DeployCheck, DeploySettings
from advisor.planfile import approve, write_plan
from executor.deploy import drop_points, write_local_tasks
from executor.evalgate import record_baseline, record_epoch
from tinyplan import sftplan, tiny_assets, tiny_plan

pytestmark = pytest.mark.slow
SCORE = {"loss": 2.0, "exact_match": 0.0, "contains": 0.0}


def _base_answers(model_dir, tasks_dir) -> dict[str, str]:
    """The base model's greedy answers to the local generative task, as lm-eval generates them."""
    import lm_eval
    from lm_eval.tasks import TaskManager

    out = lm_eval.simple_evaluate(model="hf", model_args={"pretrained": str(model_dir), "dtype": "float32",
                                                          "device": "cpu"},
                                  tasks=["sftplan_local_gen"], task_manager=TaskManager(include_path=str(tasks_dir)),
                                  log_samples=True, bootstrap_iters=0, random_seed=1234, numpy_random_seed=1234,
                                  torch_random_seed=1234, fewshot_random_seed=1234)
    return {s["doc"]["prompt"]: s["filtered_resps"][0] for s in out["samples"]["sftplan_local_gen"]}


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    """(assets, tasks folder) with the generative task's answers set to the base model's own."""
    base = tmp_path_factory.mktemp("deploy")
    assets = tiny_assets(base)
    pairs = [(f"add {a} {b}", str(a + b)) for a, b in ((1, 2), (3, 4), (2, 2), (5, 1), (0, 7), (6, 3))]
    tasks = base / "tasks"
    write_local_tasks(tasks, pairs, distractors=[str(n) for n in range(19)])
    answers = _base_answers(assets / "model", tasks)
    rows = [json.loads(line) for line in (tasks / "local_gen.jsonl").read_text().splitlines()]
    (tasks / "local_gen.jsonl").write_text("".join(json.dumps({**r, "answer": answers[r["prompt"]]}) + "\n" for r in rows))
    return assets, tasks


def _run_dir(tmp_path, assets, tasks, *, tuned_seed: int | None, limit: int | None = None):
    """A run folder whose best passing epoch's checkpoint is the base model (tuned_seed None) or another one."""
    plan = tiny_plan(assets)
    suite = [DeployCheck(name="local mc", max_regression=100.0, task="sftplan_local_mc", metric="acc,none"),
             DeployCheck(name="local gen", max_regression=2.0, task="sftplan_local_gen", metric="exact_match,none"),
             DeployCheck(name="MMLU-Pro", max_regression=2.0, task="mmlu_pro", metric="exact_match,custom-extract"),
             DeployCheck(name="HarmBench", max_regression=1.0),
             DeployCheck(name="golden set", max_regression=0.0)]
    ev = plan.evaluation.replace(**{"deploy_suite": suite,
                                            "deploy": DeploySettings(include_path=str(tasks), limit=limit, batch_size=4)})
    plan = approve(plan.replace(**{"evaluation": ev, "plan_sha256": ""}), "tester")
    run = tmp_path / "run"
    (run / "config").mkdir(parents=True)
    write_plan(plan, run / "plan.yaml")
    (run / "config" / "inputs.json").write_text(json.dumps({"model": str(assets / "model")}))
    ckpt = run / "checkpoint-4"
    if tuned_seed is None:
        shutil.copytree(assets / "model", ckpt)
    else:
        from executor.tiny import build_model
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(assets / "model")
        build_model(len(tok), tok, tuned_seed).save_pretrained(ckpt)
        tok.save_pretrained(ckpt)
    from executor.names import write_complete

    write_complete(ckpt, step=4, epoch=1.0, plan_sha256=plan.plan_sha256)  # as the run's callback writes it
    record_baseline(run, {"loss": 3.0, "exact_match": 0.0, "contains": 0.0}, plan.evaluation)
    record_epoch(run, epoch=1, step=4, checkpoint="checkpoint-4", score=SCORE, evaluation=plan.evaluation)
    return run


def _checks(run) -> dict[str, dict]:
    return {c["name"]: c for c in json.loads((run / "deploy.json").read_text())["checks"]}


def test_drop_points_direction():
    assert drop_points(0.60, 0.55, True) == pytest.approx(5.0)
    assert drop_points(0.60, 0.65, False) == pytest.approx(5.0)  # pct_stereotype rising is the regression
    assert drop_points(0.60, 0.70, True) == pytest.approx(-10.0)


def test_identical_checkpoint_passes_and_promotes(suite, tmp_path):
    assets, tasks = suite
    run = _run_dir(tmp_path, assets, tasks, tuned_seed=None)
    proc = sftplan("evaluate", str(run))
    assert proc.returncode == 0, proc.stderr + proc.stdout
    checks = _checks(run)
    assert checks["local gen"]["base"] == 1.0 and checks["local gen"]["drop_points"] == 0.0
    assert checks["local gen"]["verdict"] == "passed" and checks["local mc"]["verdict"] == "passed"
    assert checks["MMLU-Pro"]["verdict"] == "unavailable"
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("deploy: mmlu_pro")]
    assert len(line) == 1 and "Traceback" not in proc.stderr
    assert "--task-data mmlu_pro_biology=PATH" in line[0] and "--task-data mmlu_pro=PATH" not in line[0]  # a group
    assert checks["HarmBench"]["verdict"] == "manual" and checks["golden set"]["verdict"] == "eval gate"
    proc = sftplan("promote", str(run))
    assert proc.returncode == 0, proc.stderr
    md = (run / "promoted" / "PROMOTED.md").read_text()
    assert "| local gen | 2 | passed: dropped 0 pts (lm-eval sftplan_local_gen" in md
    assert "STILL REQUIRED before deploy: mmlu_pro: cannot run here" in md
    assert "**Not yet cleared for deploy**" in md and (run / "promoted" / "deploy.json").is_file()


def test_regressed_checkpoint_fails_the_suite(suite, tmp_path):
    assets, tasks = suite
    run = _run_dir(tmp_path, assets, tasks, tuned_seed=7)
    proc = sftplan("evaluate", str(run))
    assert proc.returncode == 1, proc.stderr + proc.stdout
    assert "regressed beyond the allowed drop: local gen" in proc.stdout
    gen = _checks(run)["local gen"]
    assert gen["base"] == 1.0 and gen["tuned"] < 1.0 and gen["drop_points"] > 2.0 and gen["verdict"] == "FAILED"
    proc = sftplan("promote", str(run))
    md = (run / "promoted" / "PROMOTED.md").read_text()
    assert "**Do not deploy**: local gen regressed beyond the allowed drop." in md


def test_limited_run_cannot_clear(suite, tmp_path):
    assets, tasks = suite
    run = _run_dir(tmp_path, assets, tasks, tuned_seed=None)
    proc = sftplan("promote", str(run), "--evaluate", "--limit", "2")
    assert proc.returncode == 0, proc.stderr + proc.stdout
    report = json.loads((run / "deploy.json").read_text())
    assert report["limit"] == 2 and _checks(run)["local gen"]["verdict"] == "not cleared (limited)"
    md = (run / "promoted" / "PROMOTED.md").read_text()
    assert "not cleared: limited to 2 examples per task" in md and "local gen" in md.split("still required:")[1]


def test_bad_input_is_one_line(suite, tmp_path):
    assets, tasks = suite
    run = _run_dir(tmp_path, assets, tasks, tuned_seed=None)
    for args, needle in ((["--task-data", "nonsense"], "--task-data 'nonsense': expected TASK=PATH"),
                         (["--include-path", str(tmp_path / "nope")], "no such folder"),
                         (["--limit", "0"], "--limit: must be a positive integer")):
        proc = sftplan("evaluate", str(run), *args)
        assert proc.returncode == 2 and needle in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    proc = sftplan("evaluate", str(tmp_path / "missing"))
    assert proc.returncode == 2 and "not a run folder" in proc.stderr


def test_task_data_points_a_task_at_a_local_copy(suite, tmp_path):
    """--task-data TASK=FILE keeps the task's own config (prompt, metric, generation) and reads FILE instead."""
    assets, tasks = suite
    rows = (tasks / "local_gen.jsonl").read_text().splitlines()[:2]
    local = tmp_path / "two_rows.jsonl"
    local.write_text("\n".join(rows) + "\n")
    run = _run_dir(tmp_path, assets, tasks, tuned_seed=None)
    proc = sftplan("evaluate", str(run), "--task-data", f"sftplan_local_gen={local}")
    assert proc.returncode == 0, proc.stderr + proc.stdout
    report = json.loads((run / "deploy.json").read_text())
    gen = _checks(run)["local gen"]
    assert report["task_data"] == {"sftplan_local_gen": str(local)} and gen["base"] == 1.0 and gen["verdict"] == "passed"
    proc = sftplan("evaluate", str(run), "--task-data", f"mmlu_pro={local}")
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("deploy: mmlu_pro")]
    # a group pointed at one file: MMLU-Pro's subtasks also read a 'validation' split (few-shot examples)
    assert len(line) == 1 and "no 'validation' split" in line[0] and "Traceback" not in proc.stderr, line
