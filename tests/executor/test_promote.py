"""promote: the best passing epoch is exported whole and loads with transformers; refusals are one line."""

import json

import pytest

from advisor.errors import UserError
from advisor.models import (
    Checkpointing, DatasetSpec, DeployCheck, Evaluation, Hyperparameters, LoraAlternative, ModelSummary, Plan,
    PlanRequest, Recommended,
)
from advisor.planfile import approve, read_plan, write_plan
from advisor.rules import DEPLOY_SUITE
from executor.evalgate import record_baseline, record_epoch
from executor.promote import promote

EV = Evaluation(tolerance=0.02, deploy_suite=[DeployCheck(name=n, max_regression=r) for n, r in DEPLOY_SUITE])
BASE = {"loss": 3.0, "exact_match": 0.0, "contains": 0.0}


def _plan() -> Plan:
    rec = Recommended(gpu="h100-sxm", num_gpus=1, num_nodes=1, strategy="single", micro_batch_size=1, grad_accum=1,
                      activation_checkpointing=False)
    return approve(Plan(
        request=PlanRequest(model="tiny", dataset=DatasetSpec(examples=10, avg_tokens=10)),
        model=ModelSummary(name="tiny", family="llama", source="config.json", params=1, active_params=1),
        method="full-sft", findings=[], recommended=rec, tiers=[],
        hyperparameters=Hyperparameters(learning_rate=1e-3, warmup_ratio=0.0, weight_decay=0.0, epochs=3, max_seq_len=64,
                                        global_batch_size=1, global_batch_tokens=64),
        checkpointing=Checkpointing(disk_gib_per_checkpoint=0.001, disk_gib=0.003),
        evaluation=EV, lora_alternative=LoraAlternative(),
    ), "Ada")


def _save_checkpoint(path, seed: int, complete: bool = True) -> None:
    """The embedded tiny Llama (seeded) + its tokenizer, saved the way a complete checkpoint holds them."""
    from executor.tiny import build_model, build_tokenizer

    tok = build_tokenizer(["hello world"] * 5, vocab_size=280)
    build_model(len(tok), tok, seed).save_pretrained(path)
    tok.save_pretrained(path)
    (path / "optimizer.pt").write_bytes(b"not exported")
    if complete:  # as the run's callback writes it: the folder's step and the plan of the run folder around it
        from executor.names import checkpoint_step, write_complete

        write_complete(path, step=checkpoint_step(path), epoch=None,
                       plan_sha256=read_plan(path.parent / "plan.yaml").plan_sha256)


@pytest.fixture
def run_dir(tmp_path):
    return _make_run(tmp_path / "run", _plan(), EV)


def _make_run(run, plan, ev):
    """A run folder of three scored epochs, as a run of ``plan`` leaves it."""
    run.mkdir()
    write_plan(plan, run / "plan.yaml")
    record_baseline(run, BASE, ev)
    scores = [{"loss": 2.5, "exact_match": 0.0, "contains": 0.1},   # passes
              {"loss": 2.0, "exact_match": 0.2, "contains": 0.3},   # passes, best
              {"loss": 9.0, "exact_match": 0.0, "contains": 0.0}]   # fails
    for epoch, score in enumerate(scores, 1):
        _save_checkpoint(run / f"checkpoint-{epoch * 4}", seed=epoch)
        record_epoch(run, epoch=epoch, step=epoch * 4, checkpoint=f"checkpoint-{epoch * 4}", score=score, evaluation=ev)
    return run


def test_promote_exports_best_passing_epoch_loadable(run_dir, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = promote(run_dir, tmp_path / "export")
    assert out == tmp_path / "export"
    names = {p.name for p in out.iterdir()}
    assert {"model.safetensors", "config.json", "tokenizer.json", "plan.yaml", "gate.json", "PROMOTED.md"} <= names
    assert "optimizer.pt" not in names and "COMPLETE" not in names
    model = AutoModelForCausalLM.from_pretrained(out)
    want = AutoModelForCausalLM.from_pretrained(run_dir / "checkpoint-8")
    for (k, a), (_, b) in zip(model.state_dict().items(), want.state_dict().items()):
        assert torch.equal(a, b), k
    assert AutoTokenizer.from_pretrained(out)("hello")["input_ids"]
    md = (out / "PROMOTED.md").read_text()
    assert "epoch 2" in md and "checkpoint-8" in md
    for name in ("MMLU-Pro", "IFEval", "HarmBench", "bias audit"):
        assert f"| {name} |" in md
    assert md.count("STILL REQUIRED before deploy") == 4
    assert "Not yet cleared for deploy" in md
    assert json.loads((out / "promoted.json").read_text())["epoch"] == 2
    # promoting again replaces the export whole; no temp folders are left behind
    promote(run_dir, out)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".export")]


def test_promote_with_deploy_results(run_dir, tmp_path):
    results = tmp_path / "deploy.yaml"
    results.write_text("MMLU-Pro: 1.5\nifeval: {base: 0.70, tuned: 0.66}\nHarmBench: {regression: 0}\nbias audit: 0.5\n")
    md = (promote(run_dir, deploy_results=results) / "PROMOTED.md").read_text()
    assert "| MMLU-Pro | 2 | passed: dropped 1.5 pts |" in md
    assert "| IFEval | 3 | FAILED: dropped 4 pts |" in md
    assert "**Do not deploy**: IFEval" in md and "STILL REQUIRED" not in md
    results.write_text("MMLU-Pro: 1\nIFEval: 0\nHarmBench: 0\nbias audit: 0\n")
    assert "All required deploy checks passed." in (promote(run_dir, deploy_results=results) / "PROMOTED.md").read_text()
    results.write_text("GSM8K: 1\n")
    with pytest.raises(UserError, match="'GSM8K' is not in the plan's deploy suite"):
        promote(run_dir, deploy_results=results)
    # lm-eval's 0-1 scores, as `sftplan evaluate` records them: a 15-point drop is 15 points, not 0.15
    results.write_text("MMLU-Pro: {base: 0.60, tuned: 0.45}\n")
    assert "| MMLU-Pro | 2 | FAILED: dropped 15 pts |" in (promote(run_dir, deploy_results=results) / "PROMOTED.md").read_text()
    results.write_text("MMLU-Pro: {base: 60, tuned: 45}\n")  # another scale is refused, not misread
    with pytest.raises(UserError, match="0-1 scale"):
        promote(run_dir, deploy_results=results)
    results.write_text(json.dumps({"plan_sha256": "x", "checks": []}))
    with pytest.raises(UserError, match="is a `sftplan evaluate` report"):
        promote(run_dir, deploy_results=results)


@pytest.mark.parametrize("text, match", [
    ("MMLU-Pro: 5\nMMLU-Pro: 0\n", "'MMLU-Pro' is given twice"),  # YAML would keep the passing 0
    ('{"MMLU-Pro": 5, "MMLU-Pro": 0}', "'MMLU-Pro' is given twice"),  # JSON likewise
    ("MMLU-Pro: 5\nmmlu-pro: 0\n", "name the same check \\(MMLU-Pro\\)"),  # names match case-insensitively
    ("MMLU-Pro: .nan\n", "finite number of points"),
    ("MMLU-Pro: {base: 0.7, tuned: .nan}\n", "finite numbers"),
    ("MMLU-Pro: {base: 0.7, tuned: 0.6, tunde: 0.9}\n", "unknown key 'tunde'"),
])
def test_deploy_results_that_could_pass_a_failed_check_are_refused(run_dir, tmp_path, text, match):
    results = tmp_path / "deploy.yaml"
    results.write_text(text)
    out = tmp_path / "out"
    with pytest.raises(UserError, match=match) as err:
        promote(run_dir, out, deploy_results=results)
    assert "\n" not in str(err.value) and not out.exists()


def test_promote_refuses_when_no_epoch_passed(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    write_plan(_plan(), run / "plan.yaml")
    record_baseline(run, BASE, EV)
    _save_checkpoint(run / "checkpoint-4", seed=1)
    record_epoch(run, epoch=1, step=4, checkpoint="checkpoint-4",
                 score={"loss": 40.0, "exact_match": 0.0, "contains": 0.0}, evaluation=EV)
    with pytest.raises(UserError, match=r"no epoch passed the eval gate.*epoch 1: golden loss 40.0000 rose"):
        promote(run, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_promote_refuses_an_incomplete_checkpoint(run_dir, tmp_path):
    (run_dir / "checkpoint-8" / "COMPLETE").unlink()
    with pytest.raises(UserError, match="checkpoint-8 is incomplete"):
        promote(run_dir, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_promote_refuses_an_edited_plan_and_a_foreign_out_folder(run_dir, tmp_path):
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    with pytest.raises(UserError, match="not an earlier promotion"):
        promote(run_dir, other)
    text = (run_dir / "plan.yaml").read_text()
    (run_dir / "plan.yaml").write_text(text.replace("learning_rate: 0.001", "learning_rate: 0.01"))
    with pytest.raises(UserError, match="edited after approval"):
        promote(run_dir)


def test_a_plan_without_a_deploy_suite_still_lists_the_standard_one(tmp_path):
    ev = Evaluation(tolerance=0.02)
    plan = approve(_plan().replace(**{"approval": None, "plan_sha256": "", "evaluation": ev}), "Ada")
    run_dir = _make_run(tmp_path / "run", plan, ev)
    md = (promote(run_dir) / "PROMOTED.md").read_text()
    assert "names no deploy suite" in md and md.count("STILL REQUIRED before deploy") == 4
    assert "All required deploy checks passed" not in md


def test_promote_refuses_a_rotated_away_checkpoint(run_dir):
    import shutil

    shutil.rmtree(run_dir / "checkpoint-8")
    with pytest.raises(UserError, match="checkpoint-8 is missing"):
        promote(run_dir)


def _overwrite_4k(path, at=None):
    """A real byte edit: 4 KiB of 0xFF inside the file (past the safetensors header)."""
    size = path.stat().st_size
    at = size // 2 if at is None else at
    with open(path, "r+b") as fh:
        fh.seek(min(at, max(size - 4096, 0)))
        fh.write(b"\xff" * min(4096, size))


def test_promote_refuses_a_damaged_checkpoint_in_one_line(run_dir, tmp_path):
    _overwrite_4k(run_dir / "checkpoint-8" / "model.safetensors")
    with pytest.raises(UserError, match=r"checkpoint-8/model.safetensors: damaged \(sha256") as err:
        promote(run_dir, tmp_path / "out")
    assert "\n" not in str(err.value) and not (tmp_path / "out").exists()


def test_promote_removes_what_a_killed_promote_left(run_dir):
    """A promote killed while copying leaves .promoted.<rand>.tmp; killed while swapping, .promoted.old-<rand>:
    the next promote removes both (the names are what promote itself creates)."""
    first = promote(run_dir)
    tmp = run_dir / ".promoted.k1ll3d.tmp"
    old = run_dir / ".promoted.old-.promoted.x.tmp"
    for leftover in (tmp, old):
        leftover.mkdir()
        (leftover / "model.safetensors").write_bytes(b"\0" * 1024)
    assert promote(run_dir) == first and (first / "PROMOTED.md").is_file()
    assert not tmp.exists() and not old.exists()
    assert sorted(p.name for p in run_dir.iterdir() if p.name.startswith(".promoted")) == []


@pytest.mark.parametrize("command", ["promote", "evaluate"])
def test_promote_and_evaluate_refuse_a_gate_of_the_wrong_shape_in_one_line(tmp_path, capsys, command):
    from advisor.cli import main

    run = tmp_path / "run"
    run.mkdir()
    write_plan(_plan(), run / "plan.yaml")
    for text in ("[]", '{"epochs": [{}]}'):
        (run / "gate.json").write_text(text)
        assert main([command, str(run)]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"sftplan: {run / 'gate.json'}: not a gate report (") and err.count("\n") == 1


def test_promote_without_a_gate_report_says_it_is_missing(tmp_path, capsys):
    from advisor.cli import main

    run = tmp_path / "run"
    run.mkdir()
    write_plan(_plan(), run / "plan.yaml")
    assert main(["promote", str(run)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"sftplan: {run / 'gate.json'}: missing: no epoch has been scored") and err.count("\n") == 1


# --------------------------------------------------------------------------- what promote cross-checks
def _edit_gate(run_dir, edit) -> None:
    path = run_dir / "gate.json"
    gate = json.loads(path.read_text())
    edit(gate)
    path.write_text(json.dumps(gate))


@pytest.mark.parametrize("edit, says", [
    (lambda g: g["epochs"][2].update(passed=True, reasons=[]), "epoch 3 is recorded as passed, but its scores"),
    (lambda g: g["epochs"][1].update(checkpoint="checkpoint-4"), "points at checkpoint-4, not its step's"),
    (lambda g: g["thresholds"].update(tolerance=0.5), "thresholds are not the plan's gate"),
])
def test_an_edited_gate_verdict_or_pointer_is_never_promoted(run_dir, tmp_path, edit, says):
    _edit_gate(run_dir, edit)
    with pytest.raises(UserError, match=says) as err:
        promote(run_dir, tmp_path / "out")
    assert "\n" not in str(err.value) and not (tmp_path / "out").exists()


def test_a_checkpoint_renamed_or_of_another_plan_is_never_promoted(run_dir, tmp_path):
    from executor.names import write_complete

    ckpt = run_dir / "checkpoint-8"
    write_complete(ckpt, step=8, epoch=None, plan_sha256="f" * 64)  # verifies, but another plan's run wrote it
    with pytest.raises(UserError, match="written by plan ffffffffffff's run, not by this plan's"):
        promote(run_dir, tmp_path / "out")
    write_complete(ckpt, step=9, epoch=None, plan_sha256=read_plan(run_dir / "plan.yaml").plan_sha256)
    with pytest.raises(UserError, match="records step 9, but the folder is checkpoint-8"):
        promote(run_dir, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_plan_swapped_into_the_run_folder_is_not_credited_with_the_run(run_dir, tmp_path):
    (run_dir / "run.json").write_text(json.dumps({"plan_sha256": read_plan(run_dir / "plan.yaml").plan_sha256}))
    promote(run_dir, tmp_path / "ok")  # the plan the folder trained under
    other = approve(_plan().replace(**{"approval": None, "plan_sha256": "", "method": "lora"}), "Ada")
    write_plan(other, run_dir / "plan.yaml")
    with pytest.raises(UserError, match="run.json records that this folder trained under plan"):
        promote(run_dir, tmp_path / "out")


def test_promote_never_deletes_what_it_did_not_write(run_dir, tmp_path):
    out = promote(run_dir)  # RUN_DIR/promoted
    (out / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="holds notes.txt, which no promotion wrote there"):
        promote(run_dir)
    assert (out / "notes.txt").read_text() == "mine"
    # a folder holding the run, a checkpoint, the staged data: never a promotion's place
    for where, says in ((run_dir.parent, "holds the run folder"), (run_dir, "holds the run folder"),
                        (run_dir / "checkpoint-8" / "exported", "inside the run folder's checkpoint-8"),
                        (run_dir / "data" / "exported", "inside the run folder's data"),
                        (run_dir / "checkpoint-99", "a name the run folder uses")):
        with pytest.raises(UserError, match=says):
            promote(run_dir, where)
    assert not (run_dir / "checkpoint-8" / "exported").exists() and (run_dir / "checkpoint-8" / "COMPLETE").is_file()
