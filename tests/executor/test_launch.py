"""launch.py (pure): torchrun / deepspeed argv for one node; per-node scripts and sbatch for several."""

import subprocess

import pytest

from tinyplan import data_files_only, tiny_plan


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    return data_files_only(tmp_path_factory.mktemp("tiny"))


def _nodes(plan, nodes, gpus):
    return plan.model_copy(update={"recommended": plan.recommended.model_copy(update={"num_nodes": nodes,
                                                                                      "num_gpus": gpus})})


def test_single_node_launchers(assets):
    from executor.launch import single_node_argv

    fsdp = single_node_argv(tiny_plan(assets, strategy="fsdp", num_gpus=2), "/runs/r")
    assert fsdp[0].endswith("torchrun") and fsdp[1:] == ["--standalone", "--nnodes", "1", "--nproc_per_node", "2",
                                                         "-m", "executor.train", "--run-dir", "/runs/r"]
    one = single_node_argv(tiny_plan(assets), "/runs/r")
    assert one[1:] == ["-m", "executor.train", "--run-dir", "/runs/r"] and "python" in one[0]
    ds = single_node_argv(tiny_plan(assets, strategy="zero3", num_gpus=2), "/runs/r", master_port=29511)
    assert ds[0].endswith("deepspeed") and ds[1:] == ["--num_gpus", "2", "--master_port", "29511", "--module",
                                                      "executor.train", "--run-dir", "/runs/r"]


def test_multi_node_scripts(assets, tmp_path):
    from executor.launch import launch_files

    plan = _nodes(tiny_plan(assets, strategy="zero3", num_gpus=2), 2, 16)
    files = launch_files(plan, "/runs/r")
    assert set(files) == {"node-0.sh", "node-1.sh", "sbatch.sh", "launch.sh"}
    node1 = files["node-1.sh"]
    assert "--nnodes 2 --nproc_per_node 8 --node_rank 1 --rdzv_backend c10d" in node1
    assert '--rdzv_endpoint "$MASTER_ADDR:29500"' in node1 and f"--rdzv_id {plan.plan_sha256[:12]}" in node1
    sb = files["sbatch.sh"]
    assert "#SBATCH --nodes=2" in sb and "#SBATCH --gpus-per-node=8" in sb and "srun" in sb
    assert '--node_rank "$SLURM_NODEID"' in sb and '"$HEAD_NODE:29500"' in sb and "scontrol show hostnames" in sb
    for name, text in files.items():  # every script is valid bash
        (tmp_path / name).write_text(text)
        assert subprocess.run(["bash", "-n", str(tmp_path / name)]).returncode == 0, name


def test_single_node_launch_script(assets, tmp_path):
    from executor.launch import launch_files

    files = launch_files(tiny_plan(assets, strategy="fsdp", num_gpus=2), "/runs/r")
    assert set(files) == {"launch.sh"}
    assert "--nproc_per_node 2 -m executor.train --run-dir /runs/r" in files["launch.sh"]
    (tmp_path / "launch.sh").write_text(files["launch.sh"])
    assert subprocess.run(["bash", "-n", str(tmp_path / "launch.sh")]).returncode == 0
