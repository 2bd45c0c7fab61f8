"""`sftplan evaluate`'s one-line reasons for a task it cannot run, and the fixes they name, followed for real:
a group pointed at data through its subtasks (or one folder), a missing Python module (lm-eval's own extra,
never --task-data), an unknown task name vs a --task-data file without the task's columns or splits, and no
"fatal: not a git repository" noise from lm-eval outside a git checkout."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import pytest

from advisor.models import DeployCheck, DeploySettings
import executor.deploy as deploy
from tinyplan import ROOT

from test_deploy import _run_dir, suite  # noqa: F401 - the module fixture (tiny model + local tasks)

SUB = """task: {name}
dataset_path: sftplan-nowhere/local-group-data
test_split: test
output_type: multiple_choice
process_docs: null
doc_to_text: "{{{{question}}}}"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: "{{{{answer}}}}"
target_delimiter: " "
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
"""
GROUP = """group: sftplan_local_group
task: [sftplan_local_sub_a, sftplan_local_sub_b]
aggregate_metric_list:
  - metric: acc
    aggregation: mean
    weight_by_size: true
"""


@pytest.fixture(scope="module")
def tm():
    return deploy._task_manager([])


def _group_run(tmp_path, assets, tasks):
    """A run folder whose suite is one group check over two local subtasks whose data is 'on the hub'."""
    (tasks / "sftplan_local_sub_a.yaml").write_text(SUB.format(name="sftplan_local_sub_a"))
    (tasks / "sftplan_local_sub_b.yaml").write_text(SUB.format(name="sftplan_local_sub_b"))
    (tasks / "sftplan_local_group.yaml").write_text(GROUP)
    run = _run_dir(tmp_path, assets, tasks, tuned_seed=None)
    from advisor.planfile import approve, read_plan, write_plan

    plan = read_plan(run / "plan.yaml")
    check = DeployCheck(name="local group", max_regression=1.0, task="sftplan_local_group", metric="acc,none")
    ev = plan.evaluation.replace(deploy_suite=[check], deploy=DeploySettings(include_path=str(tasks), batch_size=4))
    plan = write_plan(approve(plan.replace(evaluation=ev, plan_sha256=""), "tester"), run / "plan.yaml")
    from executor.names import write_complete

    write_complete(run / "checkpoint-4", step=4, epoch=1.0, plan_sha256=plan.plan_sha256)  # this plan's run's
    return run


def _evaluate(cwd, run, *args):
    """The real CLI, run outside any git checkout (cwd: a temporary folder)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "advisor", "evaluate", str(run), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=900)


@pytest.mark.slow
def test_group_hint_is_followed_by_subtasks_and_by_one_folder(suite, tmp_path):  # noqa: F811
    assets, tasks = suite
    run = _group_run(tmp_path, assets, tasks)
    proc = _evaluate(tmp_path, run)
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("deploy: sftplan_local_group")]
    assert proc.returncode == 0 and len(line) == 1, proc.stdout + proc.stderr
    assert "--task-data sftplan_local_sub_a=PATH" in line[0] and "--task-data sftplan_local_group=DIR" in line[0]
    assert "--task-data sftplan_local_group=PATH" not in line[0]
    assert "not a git repository" not in proc.stderr, proc.stderr  # lm-eval's git lookup, silenced
    # the hint, followed: one subtask pointed at data scores the group's check on it, recorded as partial
    data = tmp_path / "data"
    data.mkdir()
    (data / "test.jsonl").write_text((tasks / "local_mc.jsonl").read_text())
    proc = _evaluate(tmp_path, run, "--task-data", f"sftplan_local_sub_a={data / 'test.jsonl'}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    check = {c["name"]: c for c in json.loads((run / "deploy.json").read_text())["checks"]}["local group"]
    assert check["verdict"] == "not cleared (partial)" and check["base"] == check["tuned"] is not None
    assert check["drop_points"] is None and "1 of 2 subtasks (sftplan_local_sub_a)" in check["note"], check
    assert "not a git repository" not in proc.stderr, proc.stderr
    # or the group at one folder (both subtasks read one dataset): the whole group, a real verdict
    proc = _evaluate(tmp_path, run, "--task-data", f"sftplan_local_group={data}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    check = {c["name"]: c for c in json.loads((run / "deploy.json").read_text())["checks"]}["local group"]
    assert check["verdict"] == "passed" and check["drop_points"] == 0.0, check
    # a --task-data name the suite does not run is bad input, with the reason
    for name, why in (("sftplan_no_such_task", "lm-eval knows no task"), ("sftplan_local_mc", "no check of the plan")):
        proc = _evaluate(tmp_path, run, "--task-data", f"{name}={data}")
        assert proc.returncode == 2 and why in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


def test_mmlu_pro_group_hint_names_its_subtasks(tm):
    line = deploy._unavailable_line("mmlu_pro", ConnectionError("Offline"), tm=tm)
    assert "--task-data mmlu_pro_biology=PATH" in line and "mmlu_pro_math" in line
    assert "--task-data mmlu_pro=PATH" not in line and "--task-data mmlu_pro=DIR" in line


def test_missing_module_names_lm_evals_extra_not_task_data(tm):
    """The extra at the installed release: a bare "lm-eval[ifeval]" would let pip move lm-eval to another release."""
    from importlib.metadata import version

    pinned = f'pip install "lm-eval[ifeval]=={version("lm_eval")}"'
    line = deploy._unavailable_line("ifeval", ModuleNotFoundError("No module named 'langdetect'", name="langdetect"), tm=tm)
    assert pinned in line and "--task-data" not in line and "include-path" not in line
    line = deploy._unavailable_line("x", ModuleNotFoundError("No module named 'zzq'", name="zzq"), tm=tm)
    assert deploy._lm_eval_extra("sftplan_no_such_module") is None
    assert "'zzq'" in line and "pip install" not in line and "--task-data" not in line
    if importlib.util.find_spec("langdetect") is None:  # the real task, as lm-eval loads it here
        _, missing = deploy._load_tasks([DeployCheck(name="IFEval", max_regression=1, task="ifeval", metric="m")], tm, {})
        assert pinned in missing["ifeval"] and "--task-data" not in missing["ifeval"]


def test_unknown_name_vs_data_without_the_tasks_columns_or_splits(tm, tmp_path):
    other = tmp_path / "other.jsonl"
    other.write_text('{"a": 1, "b": "x"}\n{"a": 2, "b": "y"}\n')
    checks = [DeployCheck(name=n, max_regression=1, task=n, metric="m")
              for n in ("crows_pairs_english", "mmlu_pro_math", "sftplan_no_such_task")]
    _, missing = deploy._load_tasks(checks, tm, {"crows_pairs_english": str(other), "mmlu_pro_math": str(other)})
    crows, math, unknown = (missing[c.task] for c in checks)
    assert "no column 'sent_more'" in crows and "knows no task" not in crows and "--task-data crows" not in crows
    assert "no 'validation' split" in math and "knows no task" not in math
    assert "lm-eval knows no task 'sftplan_no_such_task'" in unknown and "--task-data" not in unknown


def test_an_lm_eval_without_the_task_index_is_refused_in_one_line(monkeypatch):
    """A release before 0.4.12 (or one that renamed the private factory) stops evaluate at once, naming the range."""
    import lm_eval.tasks
    from advisor.errors import UserError

    class OldTaskManager:  # lm-eval 0.4.5-0.4.11: no task_index, no _factory
        def __init__(self, include_path=None):
            self.include_path = include_path

    monkeypatch.setattr(lm_eval.tasks, "TaskManager", OldTaskManager)
    with pytest.raises(UserError) as err:
        deploy._task_manager([])
    assert "has no task index / task factory (added in 0.4.12)" in str(err.value)
    assert str(err.value).endswith(f'pip install "lm-eval{deploy.LM_EVAL_RANGE}"') and "\n" not in str(err.value)
