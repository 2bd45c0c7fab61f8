"""An OSError about a path (read-only file system, permission denied, disk full) is one line, exit 2, from every
command; an OSError that names no path and no machine condition stays a traceback (a programming error)."""

import errno
import os

import pytest

from advisor.cli import main


def _plan_path(tmp_path):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parents[1] / "executor"))
    from test_promote import _plan

    from advisor.planfile import write_plan

    path = tmp_path / "plan.yaml"
    write_plan(_plan(), path)
    return path


def _erofs(path):
    return OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))


def test_run_into_a_read_only_folder_is_one_line(tmp_path, monkeypatch, capsys):
    from executor.lifecycle import RunLock

    plan = _plan_path(tmp_path)
    out = tmp_path / "ro" / "run"

    def acquire(self):
        raise _erofs(self.path)

    monkeypatch.setattr(RunLock, "acquire", acquire)
    assert main(["run", str(plan), "--out", str(out), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert err == f"sftplan: {out / 'run.lock'}: Read-only file system\n"


def test_run_into_a_folder_it_cannot_create_is_one_line(tmp_path, monkeypatch, capsys):
    from pathlib import Path

    plan = _plan_path(tmp_path)
    out = tmp_path / "ro" / "run"
    real = Path.mkdir

    def mkdir(self, *a, **k):
        if self == out:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(self))
        return real(self, *a, **k)

    monkeypatch.setattr(Path, "mkdir", mkdir)
    assert main(["run", str(plan), "--out", str(out), "--dry-run"]) == 2
    assert capsys.readouterr().err == f"sftplan: {out}: Permission denied\n"


def test_a_chmod_read_only_folder_is_one_line(tmp_path, capsys):
    plan = _plan_path(tmp_path)
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        if os.access(ro, os.W_OK):
            pytest.skip("this user (root) can write into a 0o555 folder: see the monkeypatched tests")
        assert main(["run", str(plan), "--out", str(ro / "run"), "--dry-run"]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"sftplan: {ro / 'run'}") and err.endswith(": Permission denied\n")
    finally:
        ro.chmod(0o755)


def test_promote_into_a_read_only_folder_is_one_line(tmp_path, monkeypatch, capsys):
    import executor.promote as promote_mod

    run_dir = _scored_run(tmp_path)
    out = tmp_path / "ro" / "prom"
    out.parent.mkdir()

    def mkdtemp(prefix="", suffix="", dir=None):
        raise _erofs(os.path.join(dir, f"{prefix}x{suffix}"))

    monkeypatch.setattr(promote_mod.tempfile, "mkdtemp", mkdtemp)
    capsys.readouterr()  # saving the checkpoint's progress bars
    assert main(["promote", str(run_dir), "--out", str(out)]) == 2
    assert capsys.readouterr().err == f"sftplan: {out.parent}: cannot write the promotion there (Read-only file system)\n"
    assert list(out.parent.iterdir()) == []


def _scored_run(tmp_path):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parents[1] / "executor"))
    from test_promote import BASE, EV, _plan, _save_checkpoint

    from advisor.planfile import write_plan
    from executor.evalgate import record_baseline, record_epoch

    run = tmp_path / "run"
    run.mkdir()
    write_plan(_plan(), run / "plan.yaml")
    record_baseline(run, BASE, EV)
    _save_checkpoint(run / "checkpoint-4", seed=1)
    record_epoch(run, epoch=1, step=4, checkpoint="checkpoint-4", score={"loss": 2.0, "exact_match": 0.2,
                                                                         "contains": 0.3}, evaluation=EV)
    return run


def test_evaluate_writing_deploy_json_on_a_read_only_run_is_one_line(tmp_path, monkeypatch, capsys):
    """After scoring, deploy.json is written atomically (a temp file beside it): a read-only run folder refuses it."""
    import advisor.cli.evaluate as evaluate_cli
    import advisor.yamlio as yamlio
    import executor.deploy as deploy

    run = tmp_path / "run"
    run.mkdir()

    def evaluate(run_dir, **kw):  # the scoring is done; the write is what fails
        yamlio.atomic_write_text(os.path.join(run_dir, "deploy.json"), "{}\n")

    def mkstemp(prefix="", suffix="", dir=None):
        raise _erofs(os.path.join(dir, f"{prefix}x{suffix}"))

    monkeypatch.setattr(evaluate_cli, "require_eval_packages", lambda: None)
    monkeypatch.setattr(deploy, "evaluate", evaluate)
    monkeypatch.setattr(yamlio.tempfile, "mkstemp", mkstemp)
    assert main(["evaluate", str(run)]) == 2
    assert capsys.readouterr().err == f"sftplan: {run / '.deploy.json.x.tmp'}: Read-only file system\n"


def _dispatch_to(monkeypatch, handler) -> None:
    """Every command's parsed arguments run ``handler`` instead of the command (the CLI's dispatcher is what is tested)."""
    import argparse

    real = argparse.ArgumentParser.parse_args

    def parse_args(self, *a, **k):
        ns = real(self, *a, **k)
        ns.func = handler
        return ns

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", parse_args)


@pytest.mark.parametrize("argv", [["run", "x"], ["promote", "x"], ["evaluate", "x"], ["verify", "x"]])
def test_every_command_maps_a_path_oserror(argv, tmp_path, monkeypatch, capsys):
    def handler(args):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(tmp_path / "x"))

    _dispatch_to(monkeypatch, handler)
    assert main(argv) == 2
    assert capsys.readouterr().err == f"sftplan: {tmp_path / 'x'}: Permission denied\n"


def test_os_error_line():
    from advisor.cli import os_error_line

    assert os_error_line(OSError(errno.EROFS, "Read-only file system", "/ro/run.lock")) == \
        "/ro/run.lock: Read-only file system"
    assert os_error_line(OSError(errno.EXDEV, "Invalid cross-device link", "/a", None, "/b")) == \
        "/a -> /b: Invalid cross-device link"
    assert os_error_line(OSError(errno.ENOSPC, "No space left on device")) == "No space left on device (errno ENOSPC)"
    assert os_error_line(OSError(errno.EBADF, "Bad file descriptor")) is None  # no path: a programming error
    assert os_error_line(OSError("no errno")) is None


def test_an_oserror_about_no_path_stays_a_traceback(monkeypatch):
    def handler(args):
        raise OSError(errno.EBADF, "Bad file descriptor")

    _dispatch_to(monkeypatch, handler)
    with pytest.raises(OSError, match="Bad file descriptor"):
        main(["promote", "x"])
