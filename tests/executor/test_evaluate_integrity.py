"""`sftplan evaluate` (and `promote --evaluate`, which goes through it) scores only the approved base model, and
never a run folder a live run is still writing: the same one-line refusals (exit 2) `sftplan run` gives.

QA's reproduction: a checkpoint's model.safetensors copied over the base model's (or an edited
tokenizer_config.json) was scored as the base, every deploy check passed on those numbers and promote promoted."""

import json
import shutil
import subprocess
import sys

import pytest

from advisor.models import DeployCheck, DeploySettings
from advisor.modelfiles import model_files
from advisor.planfile import approve, write_plan
from executor.evalgate import record_baseline, record_epoch
from tinyplan import ROOT, one_line, sftplan, tiny_assets, tiny_plan

SCORE = {"loss": 2.0, "exact_match": 0.0, "contains": 0.0}


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    return tiny_assets(tmp_path_factory.mktemp("tiny"), n_train=16, n_golden=2)


def _run_dir(tmp_path, assets):
    """A finished run folder over its own copy of the base model (recorded by sha256 in the approved plan), whose
    best passing epoch is checkpoint-4. Its deploy suite names no lm-eval task, so evaluate is fast."""
    model = tmp_path / "model"
    shutil.copytree(assets / "model", model)
    plan = tiny_plan(assets)
    request = plan.request.replace(**{"model": str(model), "model_path": str(model),
                                      "model_files": model_files(str(model), str(model))})
    suite = [DeployCheck(name="HarmBench", max_regression=1.0), DeployCheck(name="golden set", max_regression=0.0)]
    ev = plan.evaluation.replace(**{"deploy_suite": suite, "deploy": DeploySettings()})
    plan = approve(plan.replace(**{"request": request, "evaluation": ev, "plan_sha256": ""}), "tester")
    run = tmp_path / "run"
    (run / "config").mkdir(parents=True)
    write_plan(plan, run / "plan.yaml")
    (run / "config" / "inputs.json").write_text(json.dumps({"plan_sha256": plan.plan_sha256, "model": str(model)}))
    ckpt = run / "checkpoint-4"
    shutil.copytree(model, ckpt)
    (ckpt / "model.safetensors").write_bytes((ckpt / "model.safetensors").read_bytes()[:-8] + b"\x01" * 8)  # "tuned"
    from executor.names import write_complete

    write_complete(ckpt, step=4, epoch=1.0, plan_sha256=plan.plan_sha256)
    record_baseline(run, {"loss": 3.0, "exact_match": 0.0, "contains": 0.0}, plan.evaluation)
    record_epoch(run, epoch=1, step=4, checkpoint="checkpoint-4", score=SCORE, evaluation=plan.evaluation)
    (run / "run.json").write_text(json.dumps({"plan_sha256": plan.plan_sha256, "status": "finished", "pid": 1}))
    (run / "run.lock").write_text("1\n")  # a finished run leaves its (unlocked) run.lock behind
    return run, model


def _refused(run, needle):
    for args in (("evaluate", str(run)), ("promote", str(run), "--evaluate")):
        proc = sftplan(*args)
        assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
        assert needle in one_line(proc.stderr), proc.stderr
        assert not (run / "deploy.json").exists() and not (run / "promoted").exists()
    return one_line(proc.stderr)


def test_an_intact_base_model_is_verified_and_evaluated(assets, tmp_path):
    run, model = _run_dir(tmp_path, assets)
    proc = sftplan("evaluate", str(run))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert f"deploy: base model {model}: " in proc.stdout and "files verified by sha256" in proc.stdout
    assert json.loads((run / "deploy.json").read_text())["base_model"] == str(model)


def test_base_weights_overwritten_by_a_checkpoint_are_refused(assets, tmp_path):
    """QA's case: the checkpoint's model.safetensors copied over the base model's."""
    run, model = _run_dir(tmp_path, assets)
    shutil.copyfile(run / "checkpoint-4" / "model.safetensors", model / "model.safetensors")
    line = _refused(run, "model.safetensors: changed since approval")
    assert line.startswith(f"sftplan: base model {model / 'model.safetensors'}: changed since approval (sha256 ")


def test_a_changed_tokenizer_config_is_refused(assets, tmp_path):
    run, model = _run_dir(tmp_path, assets)
    cfg = json.loads((model / "tokenizer_config.json").read_text())
    cfg["chat_template"] = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    (model / "tokenizer_config.json").write_text(json.dumps(cfg))
    _refused(run, "tokenizer_config.json: changed since approval")


def test_a_removed_or_added_base_model_file_is_refused(assets, tmp_path):
    run, model = _run_dir(tmp_path, assets)
    (model / "extra.safetensors").write_bytes(b"\0" * 16)
    _refused(run, "extra.safetensors: not in the approved base model")
    (model / "extra.safetensors").unlink()
    (model / "tokenizer.json").unlink()
    _refused(run, "tokenizer.json: missing")
    shutil.rmtree(model)
    _refused(run, f"base model {model}: missing")


def test_a_folder_locked_by_a_live_run_is_refused(assets, tmp_path):
    """`sftplan run` holds RUN_DIR/run.lock (an flock, executor/lifecycle.py) for the life of the run."""
    run, _ = _run_dir(tmp_path, assets)
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom executor.lifecycle import RunLock\n"
                               f"RunLock({str(run)!r}).acquire()\nprint('locked', flush=True)\ntime.sleep(120)"],
                              cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        line = _refused(run, "still running")
        assert f"pid {holder.pid}" in line and "run.lock" in line
    finally:
        holder.kill()
        holder.wait()
    proc = sftplan("evaluate", str(run))  # the lock is released with its holder: the folder is evaluated
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]


def test_run_json_running_with_a_live_pid_is_refused(assets, tmp_path):
    run, _ = _run_dir(tmp_path, assets)
    info = json.loads((run / "run.json").read_text())
    sleeper = subprocess.Popen(["sleep", "120"])
    try:
        (run / "run.json").write_text(json.dumps({**info, "status": "running", "pid": sleeper.pid}))
        assert f"pid {sleeper.pid}" in _refused(run, "still running")
    finally:
        sleeper.kill()
        sleeper.wait()
    proc = sftplan("evaluate", str(run))  # the recorded process is gone: a stale "running" does not block
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
