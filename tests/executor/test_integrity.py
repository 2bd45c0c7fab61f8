"""What trains is what was approved (issue 11.1): the run folder's plan copy, the data bytes and the base
model are verified where they are read, on every rank; a damaged checkpoint or gate file is named in one line.

Fast cases only (refusals before training); the real runs are in test_integrity_runs.py."""

import json
import subprocess

import pytest

from tinyplan import ROOT, approved_plan_file, one_line, sftplan, tiny_assets, tiny_plan


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    return tiny_assets(tmp_path_factory.mktemp("tiny"), n_train=16, n_golden=2)


def _edit_plan(src, dst):
    """The issue's reproduction: the same plan with 1 epoch at lr 0.3, its plan_sha256 and approval left as is."""
    text = src.read_text()
    assert "\n  epochs: 2\n" in text and "\n  learning_rate: 0.003\n" in text
    dst.write_text(text.replace("\n  epochs: 2\n", "\n  epochs: 1\n").replace("\n  learning_rate: 0.003\n",
                                                                          "\n  learning_rate: 0.3\n"))


def test_preseeded_edited_plan_copy_is_refused(assets, tmp_path):
    plan_path = approved_plan_file(tmp_path, tiny_plan(assets, epochs=2))
    run_dir = tmp_path / "R"
    run_dir.mkdir()
    _edit_plan(plan_path, run_dir / "plan.yaml")
    proc = sftplan("run", str(plan_path), "--out", str(run_dir), "--allow-mismatch")
    assert proc.returncode == 2
    line = one_line(proc.stderr)
    assert "plan.yaml is not the approved plan" in line and "edited after approval" in line
    assert not (run_dir / "run.json").exists() and not list(run_dir.glob("checkpoint-*"))


def test_node_script_verifies_the_plan_it_trains_on(assets, tmp_path):
    """config/launch.sh (like node-<i>.sh and sbatch.sh) starts executor.train directly: the trainer itself refuses
    an edited run-folder plan, and an approved plan other than the one the folder was configured for."""
    plan_path = approved_plan_file(tmp_path, tiny_plan(assets, epochs=2))
    run_dir = tmp_path / "R"
    assert sftplan("run", str(plan_path), "--out", str(run_dir), "--dry-run").returncode == 0
    _edit_plan(plan_path, run_dir / "plan.yaml")  # e.g. edited after a STOP
    proc = subprocess.run(["bash", str(run_dir / "config" / "launch.sh")], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "edited after approval" in one_line(proc.stderr) and not list(run_dir.glob("checkpoint-*"))
    proc = sftplan("run", str(plan_path), "--out", str(run_dir))  # and `sftplan run` refuses before launching
    assert proc.returncode == 2 and "is not the approved plan" in one_line(proc.stderr)

    other = approved_plan_file(tmp_path, tiny_plan(assets, epochs=1), "other.yaml")  # approved, but not this run's
    (run_dir / "plan.yaml").write_text(other.read_text())
    proc = subprocess.run(["bash", str(run_dir / "config" / "launch.sh")], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 2 and "configured for plan" in one_line(proc.stderr)


def test_trainer_refuses_data_that_is_not_the_approved_bytes(assets, tmp_path):
    plan_path = approved_plan_file(tmp_path, tiny_plan(assets))
    run_dir = tmp_path / "R"
    assert sftplan("run", str(plan_path), "--out", str(run_dir), "--dry-run").returncode == 0
    inputs = json.loads((run_dir / "config" / "inputs.json").read_text())
    staged = run_dir / "data" / "train.jsonl"
    assert inputs["train"] == str(staged.resolve()) and staged.read_bytes() == (assets / "train.jsonl").read_bytes()
    staged.chmod(0o644)
    staged.write_text(staged.read_text().replace('"3"', '"4"', 1) if '"3"' in staged.read_text()
                      else staged.read_text() + '{"prompt": "add 1 1", "response": "2"}\n')
    proc = subprocess.run(["bash", str(run_dir / "config" / "launch.sh")], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 2 and "is not the approved bytes" in one_line(proc.stderr)


def _poke(path, at=None, data=b"\xff" * 4096):
    size = path.stat().st_size
    with open(path, "r+b") as fh:
        fh.seek(size // 2 if at is None else at)
        fh.write(data)


def _copy_model(assets, tmp_path):
    import shutil

    model = tmp_path / "model"
    shutil.copytree(assets / "model", model)
    return model


def _plan_on(assets, model, **kw):
    from advisor.modelfiles import model_files
    from advisor.planfile import with_hash

    plan = tiny_plan(assets, **kw)
    request = plan.request.replace(**{"model": str(model), "model_path": str(model),
                                              "model_files": model_files(str(model), str(model))})
    return with_hash(plan.replace(**{"request": request}))


@pytest.mark.parametrize("name", ["model.safetensors", "tokenizer_config.json"])
def test_a_swapped_base_model_file_is_refused(assets, tmp_path, name):
    """Weights or chat template changed after approval: sftplan run and the node script refuse, naming the file."""
    model = _copy_model(assets, tmp_path)
    plan_path = approved_plan_file(tmp_path, _plan_on(assets, model))
    run_dir = tmp_path / "R"
    assert sftplan("run", str(plan_path), "--out", str(run_dir), "--dry-run").returncode == 0
    if name == "model.safetensors":
        _poke(model / name)
    else:
        cfg = json.loads((model / name).read_text())
        cfg["chat_template"] = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
        (model / name).write_text(json.dumps(cfg))
    proc = sftplan("run", str(plan_path), "--out", str(run_dir))
    assert proc.returncode == 2 and f"{name}: changed since approval" in one_line(proc.stderr)
    proc = subprocess.run(["bash", str(run_dir / "config" / "launch.sh")], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 2 and f"{name}: changed since approval" in one_line(proc.stderr)


def test_model_files_record_local_hashes_and_hub_revisions(assets):
    from advisor.modelfiles import model_files

    from executor.integrity import verify_model

    local = model_files(str(assets / "model"), str(assets / "model"))
    assert local.source == "local"
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= set(local.sha256)
    hub = model_files("meta-llama/Llama-3.1-8B", "meta-llama/Llama-3.1-8B@5206a32")
    assert hub.source == "hub" and hub.revision == "5206a32" and not hub.sha256
    assert model_files("llama-3.1-8b", None) is None  # a preset id plans only
    plan = tiny_plan(assets).replace(**{"request": tiny_plan(assets).request.replace(
        **{"model_files": hub})})
    repo, revision, notes = verify_model(plan, {"model": "meta-llama/Llama-3.1-8B@5206a32"})
    assert (repo, revision) == ("meta-llama/Llama-3.1-8B", "5206a32") and "not verified" in notes[0]


@pytest.mark.parametrize("name", ["model.safetensors", "optimizer.pt", "scheduler.pt", "rng_state.pth",
                                  "trainer_state.json"])
def test_complete_marker_names_a_truncated_file(tmp_path, name):
    from executor.names import check_complete, write_complete

    ckpt = tmp_path / "checkpoint-8"
    ckpt.mkdir()
    for n in ("model.safetensors", "optimizer.pt", "scheduler.pt", "rng_state.pth", "trainer_state.json"):
        (ckpt / n).write_bytes(bytes(range(256)) * 40)
    write_complete(ckpt, step=8, epoch=2.0)
    assert check_complete(ckpt) == ""
    with open(ckpt / name, "r+b") as fh:
        fh.truncate(100)
    why = check_complete(ckpt)
    assert why.startswith(f"{ckpt / name}: damaged") and "\n" not in why


def test_complete_marker_hashes_dcp_metadata_and_reads_older_markers(tmp_path):
    """DCP's ``.metadata`` (FSDP's sharded state, fsdp-tp's tp_state/) is a file a resume reads first: hashed like
    any other; our own ``.<name>.tmp`` files are not part of a checkpoint; a marker written before dot files were
    hashed (no ``hashes_dotfiles``) still verifies."""
    import json

    from executor.names import check_complete, write_complete

    ckpt = tmp_path / "checkpoint-8"
    (ckpt / "tp_state").mkdir(parents=True)
    (ckpt / "model.safetensors").write_bytes(b"w" * 64)
    (ckpt / "tp_state" / "__0_0.distcp").write_bytes(b"s" * 64)
    (ckpt / "tp_state" / ".metadata").write_bytes(b"m" * 64)
    (ckpt / ".gate.json.tmp").write_bytes(b"half")
    marker = write_complete(ckpt, step=8, epoch=2.0)
    assert "tp_state/.metadata" in marker["files"] and ".gate.json.tmp" not in marker["files"]
    assert check_complete(ckpt) == ""
    (ckpt / "tp_state" / ".metadata").write_bytes(b"M" * 64)
    assert check_complete(ckpt).startswith(f"{ckpt / 'tp_state' / '.metadata'}: damaged")
    old = {"step": 8, "epoch": 2.0, "files": {k: v for k, v in marker["files"].items() if not k.endswith(".metadata")}}
    (ckpt / "COMPLETE").write_text(json.dumps(old))
    assert check_complete(ckpt) == ""


def _dry_run_folder(assets, tmp_path):
    plan_path = approved_plan_file(tmp_path, tiny_plan(assets))
    run_dir = tmp_path / "R"
    assert sftplan("run", str(plan_path), "--out", str(run_dir), "--dry-run").returncode == 0
    return plan_path, run_dir


@pytest.mark.parametrize("name", ["gate.json", "run.json", "baseline.json"])
def test_a_malformed_run_file_is_named_in_one_line(assets, tmp_path, name):
    plan_path, run_dir = _dry_run_folder(assets, tmp_path)
    (run_dir / name).write_text('{"baseline": {"loss": 1.2, "exa')  # truncated mid-write
    proc = sftplan("run", str(plan_path), "--out", str(run_dir))
    assert proc.returncode == 2 and name in one_line(proc.stderr)
    if name == "gate.json":
        proc = sftplan("promote", str(run_dir))
        assert proc.returncode == 2 and name in one_line(proc.stderr)


def test_a_resume_without_the_base_models_baseline_is_refused(assets, tmp_path):
    from executor.names import write_complete

    plan_path, run_dir = _dry_run_folder(assets, tmp_path)
    ckpt = run_dir / "checkpoint-4"
    ckpt.mkdir()
    (ckpt / "model.safetensors").write_bytes(b"x" * 64)
    write_complete(ckpt, step=4, epoch=1.0)
    (run_dir / "gate.json").write_text(json.dumps({"baseline": None, "epochs": [], "thresholds": {}}))
    proc = sftplan("run", str(plan_path), "--out", str(run_dir))
    assert proc.returncode == 2
    line = one_line(proc.stderr)
    assert "baseline.json: missing" in line and "cannot be re-scored on a resumed checkpoint" in line


def test_non_finite_loss_or_gradient_norm_raises_at_once():
    from transformers import TrainerControl, TrainerState

    from executor.train_callbacks import NonFiniteCallback, NonFiniteTraining

    cb, state = NonFiniteCallback(), TrainerState()
    state.global_step = 7
    cb.on_log(None, state, TrainerControl(), logs={"loss": 2.5, "grad_norm": 1.0})
    with pytest.raises(NonFiniteTraining, match="non-finite training loss at step 7: nan"):
        cb.on_log(None, state, TrainerControl(), logs={"loss": float("nan"), "grad_norm": 1.0})
    with pytest.raises(NonFiniteTraining, match="non-finite gradient norm at step 7: inf"):
        cb.on_log(None, state, TrainerControl(), logs={"loss": 2.5, "grad_norm": float("inf")})


def test_a_checkpoint_is_resumed_only_by_the_plan_whose_run_wrote_it_at_its_own_step(tmp_path):
    """COMPLETE records the plan and the step: a checkpoint copied from another plan's run, a renamed folder or
    an edited step are set aside (damaged-...) and never resumed, however well their files verify."""
    import json

    from executor.integrity import set_aside_damaged
    from executor.names import check_complete, write_complete

    mine, theirs = "a" * 64, "b" * 64
    run = tmp_path / "run"
    for step, sha in ((4, mine), (8, theirs)):
        ckpt = run / f"checkpoint-{step}"
        ckpt.mkdir(parents=True)
        (ckpt / "model.safetensors").write_bytes(b"w" * 64)
        (ckpt / "trainer_state.json").write_text(json.dumps({"global_step": step}))
        write_complete(ckpt, step=step, epoch=None, plan_sha256=sha)
    assert check_complete(run / "checkpoint-8") == ""  # the files alone verify
    assert "written by plan bbbbbbbbbbbb's run" in check_complete(run / "checkpoint-8", mine)
    notes, damaged = set_aside_damaged(run, mine)
    assert [d["checkpoint"] for d in damaged] == ["checkpoint-8"] and (run / "damaged-checkpoint-8").is_dir()
    assert "resuming from checkpoint-4" in notes[0] and check_complete(run / "checkpoint-4", mine) == ""
    # renamed: the folder's step is not the one COMPLETE records
    (run / "checkpoint-4").rename(run / "checkpoint-50")
    assert "records step 4, but the folder is checkpoint-50" in check_complete(run / "checkpoint-50", mine)
    (run / "checkpoint-50").rename(run / "checkpoint-4")
    # COMPLETE's step edited to match another name: Trainer's hashed trainer_state.json disagrees
    marker = json.loads((run / "checkpoint-4" / "COMPLETE").read_text())
    (run / "checkpoint-4").rename(run / "checkpoint-5")
    (run / "checkpoint-5" / "COMPLETE").write_text(json.dumps({**marker, "step": 5}))
    assert "its trainer_state.json is at step 4" in check_complete(run / "checkpoint-5", mine)
    # a marker written before checkpoints recorded their plan is not resumed by a plan either
    legacy = {k: v for k, v in marker.items() if k != "plan_sha256"}
    (run / "checkpoint-5").rename(run / "checkpoint-4")
    (run / "checkpoint-4" / "COMPLETE").write_text(json.dumps(legacy))
    assert "a run that did not record its plan" in check_complete(run / "checkpoint-4", mine)
