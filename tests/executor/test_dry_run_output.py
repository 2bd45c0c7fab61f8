"""What `sftplan run --dry-run` prints is what it wrote: the configs and the launch scripts on one node and on
several, and a launch command that is exactly the one config/launch.sh runs (the DeepSpeed port included)."""

import json
import os
import re
import subprocess

import pytest

from tinyplan import ROOT, approved_plan_file, data_files_only, finished_epochs, tiny_assets, tiny_plan


@pytest.fixture(scope="module")
def files_only(tmp_path_factory):
    return data_files_only(tmp_path_factory.mktemp("files"))


def _nodes(plan, nodes, gpus):
    from advisor.planfile import with_hash

    return with_hash(plan.replace(**{"recommended": plan.recommended.replace(**{"num_nodes": nodes, "num_gpus": gpus})}))


def _dry_run(plan_path, run_dir, capsys):
    from executor.run import run

    assert run(plan_path, run_dir, dry_run=True) == 0
    return capsys.readouterr().out


def _launch_line(out):
    lines = [line for line in out.splitlines() if line.startswith("dry run: nothing trained. Launch: ")]
    assert len(lines) == 1, out[-2000:]
    return lines[0][len("dry run: nothing trained. Launch: "):]


@pytest.mark.parametrize("strategy", ["fsdp", "zero3"])
def test_multi_node_dry_run_prints_the_configs_and_scripts(files_only, tmp_path, capsys, strategy):
    """Like one node: each config and each launch script is printed under its path (node i > 0 as its difference
    from node 0's script, when that is only the rank), then the launch command launch.sh runs."""
    plan_path = approved_plan_file(tmp_path, _nodes(tiny_plan(files_only, strategy=strategy, num_gpus=2), 3, 24))
    run_dir = tmp_path / "R"
    out = _dry_run(plan_path, run_dir, capsys)
    cfg = run_dir / "config"
    config = "deepspeed.json" if strategy == "zero3" else "fsdp.json"
    for name in ("training_args.json", config, "node-0.sh", "sbatch.sh", "launch.sh"):
        assert f"--- {cfg / name}\n{(cfg / name).read_text().rstrip()}\n" in out, name
    node0 = (cfg / "node-0.sh").read_text()
    for i in (1, 2):
        as_node_i = node0.replace("# node 0 of 3:", f"# node {i} of 3:").replace(" --node-rank 0 ", f" --node-rank {i} ")
        assert (cfg / f"node-{i}.sh").read_text() == as_node_i  # so the one line printed for it says all of it
        assert f"--- {cfg / f'node-{i}.sh'}: node-0.sh with --node-rank {i} " in out
        assert f"--node-rank {i} " in (cfg / f"node-{i}.sh").read_text()
    assert "3 nodes: submit `sbatch" in out
    launch = _launch_line(out)
    assert launch.startswith(f"sbatch {cfg.resolve() / 'sbatch.sh'} ")
    assert launch.split(" (")[0] in (cfg / "launch.sh").read_text().splitlines()  # what launch.sh runs
    assert out.rstrip().splitlines()[-1].startswith("dry run: nothing trained. Launch: ")


def test_a_real_multi_node_run_prints_no_scripts(files_only, tmp_path, capsys):
    """Without --dry-run a multi-node `sftplan run` still only writes the scripts and says how to start them."""
    from executor.run import run

    plan_path = approved_plan_file(tmp_path, _nodes(tiny_plan(files_only, strategy="fsdp", num_gpus=2), 2, 16))
    assert run(plan_path, tmp_path / "R") == 0
    out = capsys.readouterr().out
    assert "2 nodes: submit" in out and "--- " not in out and "dry run" not in out


def _script_command(launch_sh):
    """The line of config/launch.sh that starts the launcher, less the "$@" it passes on."""
    (line,) = [ln for ln in launch_sh.read_text().splitlines() if ln.endswith(' "$@"')]
    return line[: -len(' "$@"')]


def test_zero3_dry_run_prints_the_command_launch_sh_runs(files_only, tmp_path, capsys):
    """issue: the dry run printed --master_port <a new random port> while launch.sh said 29500."""
    plan_path = approved_plan_file(tmp_path, tiny_plan(files_only, strategy="zero3", num_gpus=2))
    run_dir = tmp_path / "R"
    first = _launch_line(_dry_run(plan_path, run_dir, capsys))
    again = _launch_line(_dry_run(plan_path, run_dir, capsys))
    launch_sh = run_dir / "config" / "launch.sh"
    command = _script_command(launch_sh)
    assert first == again and first.startswith(command + " (")  # exactly the script's command, every time
    assert '--master_port "$MASTER_PORT"' in command and "MASTER_PORT: 29500 unless set" in first
    assert 'MASTER_PORT="${MASTER_PORT:-29500}"' in launch_sh.read_text()
    # the port the script really passes: 29500, or $MASTER_PORT (the launcher swapped for echo)
    launcher = command.split()[0]
    stub = tmp_path / "launch-echo.sh"
    stub.write_text(launch_sh.read_text().replace(launcher + " ", "echo ", 1))
    for env, port in (({}, "29500"), ({"MASTER_PORT": "29517"}, "29517")):
        base = {k: v for k, v in os.environ.items() if k != "MASTER_PORT"}
        got = subprocess.run(["bash", str(stub)], capture_output=True, text=True, env={**base, **env}, check=True).stdout
        assert f"--master_port {port} --module executor.train" in got, got


def test_torchrun_dry_run_prints_the_command_launch_sh_runs(files_only, tmp_path, capsys):
    plan_path = approved_plan_file(tmp_path, tiny_plan(files_only, strategy="fsdp", num_gpus=2))
    run_dir = tmp_path / "R"
    out = _dry_run(plan_path, run_dir, capsys)
    launch_sh = run_dir / "config" / "launch.sh"
    assert f"--- {launch_sh}\n{launch_sh.read_text().rstrip()}\n" in out
    assert _launch_line(out) == _script_command(launch_sh) + " (config/launch.sh)"


def test_sftplan_run_takes_master_port_or_a_free_port(monkeypatch):
    """`sftplan run` starts DeepSpeed itself on $MASTER_PORT, else on a free port (not 29500: two runs, or tests,
    on one machine would collide)."""
    from executor.launch import run_port

    monkeypatch.setenv("MASTER_PORT", "29533")
    assert run_port() == 29533
    monkeypatch.delenv("MASTER_PORT")
    assert 1024 < run_port() < 65536


@pytest.mark.slow
def test_zero3_launch_sh_trains_on_master_port(tmp_path, capsys):
    """The written config/launch.sh really trains (2 CPU processes, the deepspeed launcher) on $MASTER_PORT."""
    from executor.launch import free_port

    assets = tiny_assets(tmp_path / "tiny", n_train=16, n_golden=2)
    plan_path = approved_plan_file(tmp_path, tiny_plan(assets, strategy="zero3", num_gpus=2, epochs=1))
    run_dir = tmp_path / "R"
    command = _launch_line(_dry_run(plan_path, run_dir, capsys))
    assert '--master_port "$MASTER_PORT"' in command and (run_dir / "data" / "train.jsonl").is_file()  # staged
    port = str(free_port())
    env = dict(os.environ, MASTER_PORT=port, TORCH_EXTENSIONS_DIR=str(tmp_path / "ext"))
    proc = subprocess.run(["bash", str(run_dir / "config" / "launch.sh")], cwd=ROOT, capture_output=True, text=True,
                          env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert re.search(rf"--master_port[= ]{port}\b", proc.stdout + proc.stderr), (proc.stdout + proc.stderr)[-3000:]
    shards = [json.loads((run_dir / "shards" / f"rank-{r}.json").read_text()) for r in (0, 1)]
    assert [s["world_size"] for s in shards] == [2, 2]
    assert finished_epochs(run_dir)["epochs"]
