"""What was approved or saved is never written into: `sftplan run --out` refuses a checkpoint, a model folder, a
promotion or a folder inside another run; `sftplan promote --out` refuses another plan's or run's promotion, and a
run folder whose run is still running. Each refusal is one line (exit 2) and leaves every file as it was."""

import json
import subprocess
import sys

import pytest
from test_promote import _plan, run_dir  # noqa: F401 - run_dir: the fixture (a scored run with 3 checkpoints)

from advisor.cli import main
from advisor.errors import UserError
from advisor.planfile import approve, write_plan
from executor.names import check_complete, write_complete
from executor.preflight import check_out_folder, run_preflight
from executor.promote import promote


def _tree(root):
    """Every path under ``root`` with its bytes (files) or None (folders): what a refusal must leave as it was."""
    return {p.relative_to(root).as_posix(): (p.read_bytes() if p.is_file() else None) for p in sorted(root.rglob("*"))}


@pytest.fixture
def plan_path(tmp_path):
    path = tmp_path / "plans" / "plan.yaml"
    path.parent.mkdir()
    write_plan(_plan(), path)
    return path


def _checkpoint(folder):
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"\0" * 64)
    (folder / "tokenizer.json").write_text("{}")
    write_complete(folder, step=4, epoch=1.0)
    return folder


def _targets(tmp_path):
    """(--out, the folder it would damage, the words of the refusal) for each kind of folder never written into."""
    run = tmp_path / "other-run"
    run.mkdir()
    (run / "run.json").write_text(json.dumps({"plan_sha256": "f" * 64, "status": "finished"}))
    ckpt = _checkpoint(run / "checkpoint-4")
    damaged = tmp_path / "set-aside" / "damaged-checkpoint-8"
    damaged.mkdir(parents=True)
    (damaged / "optimizer.pt").write_bytes(b"x")
    model = tmp_path / "base-model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    (model / "model.safetensors").write_bytes(b"\0" * 64)
    lone_ckpt = _checkpoint(tmp_path / "exported")  # COMPLETE marker, not named checkpoint-N, outside any run
    (lone_ckpt / "config.json").unlink()
    write_complete(lone_ckpt, step=4, epoch=1.0)
    promoted = tmp_path / "promoted"
    promoted.mkdir()
    (promoted / "PROMOTED.md").write_text("# Promoted\n")
    return [(ckpt, ckpt, "is a run's checkpoint folder"),
            (ckpt / "sub", ckpt, f"is inside {ckpt}, a run's checkpoint folder"),
            (lone_ckpt / "x", lone_ckpt, "a run's checkpoint folder"),
            (damaged / "x", damaged, "a run's checkpoint folder"),
            (run / "memory", run, f"is inside {run}, another run's folder"),
            (run / "a" / "b", run, "another run's folder"),
            (model, model, "is a model folder"),
            (model / "runs" / "r1", model, f"is inside {model}, a model folder"),
            (promoted / "run", promoted, "a promotion (holds PROMOTED.md)")]


@pytest.mark.parametrize("dry_run", [True, False])
def test_run_refuses_an_out_in_a_checkpoint_model_promotion_or_other_run(tmp_path, plan_path, capsys, dry_run):
    targets = _targets(tmp_path)
    before = _tree(tmp_path)
    for out, damaged, words in targets:
        argv = ["run", str(plan_path), "--out", str(out)] + (["--dry-run"] if dry_run else [])
        assert main(argv) == 2, out
        err = capsys.readouterr().err
        assert err.startswith(f"sftplan: {out}: ") and words in err and "choose another output folder" in err, err
        assert err.count("\n") == 1
    assert _tree(tmp_path) == before  # nothing written: no plan.yaml, config/, data/ or run.lock anywhere
    assert check_complete(tmp_path / "other-run" / "checkpoint-4") == ""


def test_preflight_refuses_before_any_other_check(tmp_path, plan_path):
    out, _, words = _targets(tmp_path)[1]
    with pytest.raises(UserError, match=words.replace("(", r"\(")):
        run_preflight(plan_path, _plan(), out)


def test_a_symlink_into_a_checkpoint_is_refused(tmp_path):
    ckpt = _checkpoint(tmp_path / "run" / "checkpoint-4")
    (tmp_path / "link").symlink_to(ckpt)
    with pytest.raises(UserError, match="a run's checkpoint folder"):
        check_out_folder(tmp_path / "link" / "new")


def test_ordinary_out_folders_still_run(tmp_path, plan_path, capsys):
    """The default run folder beside the plan (the plan's own folder holds plan.yaml), a fresh folder, and this
    plan's own run folder again (a resume) are all fine."""
    assert main(["run", str(plan_path), "--dry-run"]) == 0
    run = next(plan_path.parent.glob("run-*"))
    assert (run / "plan.yaml").is_file() and (run / "run.lock").is_file()
    assert main(["run", str(plan_path), "--out", str(run), "--dry-run"]) == 0
    assert main(["run", str(plan_path), "--out", str(tmp_path / "fresh" / "run"), "--dry-run"]) == 0
    capsys.readouterr()


# --------------------------------------------------------------------------- promote --out


def test_promote_refuses_another_plans_promotion_and_keeps_it(run_dir, tmp_path, capsys):  # noqa: F811
    out = promote(run_dir, tmp_path / "export")
    other = json.loads((out / "promoted.json").read_text())
    other["plan_sha256"] = "a" * 64
    (out / "promoted.json").write_text(json.dumps(other))
    before = _tree(out)
    assert main(["promote", str(run_dir), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"sftplan: {out}: holds the promotion of another plan (plan aaaaaaaaaaaa, run {run_dir}")
    assert err.count("\n") == 1 and _tree(out) == before


def test_promote_refuses_an_old_promotion_of_another_plan_named_only_in_promoted_md(run_dir, tmp_path):  # noqa: F811
    out = promote(run_dir, tmp_path / "export")
    (out / "promoted.json").unlink()
    md = (out / "PROMOTED.md").read_text()
    sha = _plan().plan_sha256
    (out / "PROMOTED.md").write_text(md.replace(sha, "b" * 64))
    with pytest.raises(UserError, match="another plan \\(plan bbbbbbbbbbbb, run run;"):
        promote(run_dir, out)
    (out / "PROMOTED.md").write_text("# Promoted: someone's model\n")
    with pytest.raises(UserError, match="cannot be identified"):
        promote(run_dir, out)


def test_promote_refuses_another_run_of_the_same_plan(run_dir, tmp_path):  # noqa: F811
    import shutil

    out = promote(run_dir, tmp_path / "export")
    twin = tmp_path / "twin"
    shutil.copytree(run_dir, twin)
    before = _tree(out)
    with pytest.raises(UserError, match=f"another run of this plan \\(plan {_plan().plan_sha256[:12]}, run {run_dir};"):
        promote(twin, out)
    assert _tree(out) == before
    assert promote(twin) == twin / "promoted"  # its own promotion folder: fine, and again
    assert promote(twin) == twin / "promoted"


def test_re_promoting_the_same_run_replaces_its_own_promotion(run_dir, tmp_path):  # noqa: F811
    out = promote(run_dir, tmp_path / "export")
    assert promote(run_dir, out) == out
    recorded = json.loads((out / "promoted.json").read_text())
    assert recorded["run_dir"] == str(run_dir.resolve()) and recorded["plan_sha256"] == _plan().plan_sha256
    del recorded["run_dir"]  # a promotion written before runs were recorded: the same plan may replace it
    (out / "promoted.json").write_text(json.dumps(recorded))
    assert promote(run_dir, out) == out
    assert promote(run_dir) == run_dir / "promoted" and promote(run_dir) == run_dir / "promoted"


def test_a_moved_run_may_re_promote_into_its_own_folder_and_where_it_promoted(run_dir, tmp_path):  # noqa: F811
    (run_dir / "run.json").write_text(json.dumps({"plan_sha256": _plan().plan_sha256, "status": "finished",
                                                  "started_at": "2026-01-01T00:00:00Z"}))
    out = promote(run_dir, tmp_path / "export")
    promote(run_dir)
    moved = run_dir.rename(tmp_path / "moved")
    assert promote(moved) == moved / "promoted"
    assert promote(moved, out) == out  # the same run (run.json's started_at), moved


# --------------------------------------------------------------------------- promote while running


def test_promote_refuses_a_run_folder_locked_by_a_live_run(run_dir, tmp_path, capsys):  # noqa: F811
    from executor.lifecycle import RunLock

    lock = RunLock(run_dir).acquire()
    try:
        assert main(["promote", str(run_dir), "--out", str(tmp_path / "export")]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"sftplan: {run_dir}: still running (pid ") and "promote when it finishes" in err
        assert err.count("\n") == 1 and not (tmp_path / "export").exists()
    finally:
        lock.release()
    assert promote(run_dir, tmp_path / "export") == tmp_path / "export"  # ended: the lock file left behind is fine


def test_promote_refuses_a_run_json_running_under_a_live_pid(run_dir, tmp_path):  # noqa: F811
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (run_dir / "run.json").write_text(json.dumps({"plan_sha256": _plan().plan_sha256, "status": "running",
                                                      "pid": sleeper.pid}))
        with pytest.raises(UserError, match=f"still running \\(pid {sleeper.pid},"):
            promote(run_dir, tmp_path / "export")
    finally:
        sleeper.kill()
        sleeper.wait()
    assert promote(run_dir, tmp_path / "export").is_dir()  # killed: nothing runs there any more


def test_another_plans_approved_plan_is_refused_in_one_line_by_name(run_dir, tmp_path):  # noqa: F811
    """The refusal names whose promotion is there even when promoted.json is the only record."""
    out = promote(run_dir, tmp_path / "export")
    other = approve(_plan().replace(**{"approval": None, "plan_sha256": "", "method": "lora"}), "Bo")
    recorded = json.loads((out / "promoted.json").read_text())
    recorded["plan_sha256"] = other.plan_sha256
    (out / "promoted.json").write_text(json.dumps(recorded))
    with pytest.raises(UserError) as err:
        promote(run_dir, out)
    assert f"plan {other.plan_sha256[:12]}" in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("dry_run", [True, False])
def test_run_never_writes_among_files_that_are_not_a_run(tmp_path, plan_path, capsys, dry_run):
    """A folder holding other files (the data's folder, a deploy-tasks folder) or the plan's own folder is not a run
    folder: a run, or --dry-run, writing config/, data/, plan.yaml and run.lock there would mix them in."""
    data = tmp_path / "tiny"
    data.mkdir()
    (data / "train.jsonl").write_text('{"prompt": "a", "response": "b"}\n')
    before = _tree(tmp_path)
    for out, words in ((data, "holds train.jsonl, which are not a run's"), (plan_path.parent, "is the plan's own folder")):
        argv = ["run", str(plan_path), "--out", str(out)] + (["--dry-run"] if dry_run else [])
        assert main(argv) == 2, out
        err = capsys.readouterr().err
        assert words in err and "choose another output folder" in err and err.count("\n") == 1, err
    assert _tree(tmp_path) == before
