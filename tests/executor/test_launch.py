"""launch.py (pure): torchrun / deepspeed argv for one node; per-node scripts and sbatch for several."""

import subprocess

import pytest

from tinyplan import data_files_only, tiny_plan


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    return data_files_only(tmp_path_factory.mktemp("tiny"))


def data_files_only_tmp():
    import tempfile
    from pathlib import Path

    return data_files_only(Path(tempfile.mkdtemp()))


def _nodes(plan, nodes, gpus):
    return plan.replace(**{"recommended": plan.recommended.replace(**{"num_nodes": nodes,
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
    from executor.launch import cpus_per_node, launch_files, slurm_time

    plan = _nodes(tiny_plan(assets, strategy="zero3", num_gpus=2), 2, 16)
    files = launch_files(plan, "/runs/r")
    assert set(files) == {"node-0.sh", "node-1.sh", "sbatch.sh", "launch.sh", "shared-storage.marker"}
    node1 = files["node-1.sh"]
    assert "-m executor.node --run-dir /runs/r --node-rank 1" in node1 and '--master-addr "$MASTER_ADDR"' in node1
    assert "NCCL_DEBUG" in node1 and "NCCL_SOCKET_IFNAME" in node1 and "shared" in node1.lower()
    assert f"--marker {files['shared-storage.marker'].strip()}" in node1
    sb = files["sbatch.sh"]
    for line in ("#SBATCH --nodes=2", "#SBATCH --gpus-per-node=8", "#SBATCH --ntasks-per-node=1",
                 f"#SBATCH --cpus-per-task={cpus_per_node('cpu', 8)[0]}", f"#SBATCH --time={slurm_time(plan.estimate.hours)}"):
        assert line in sb, line
    assert '--node-rank "$SLURM_NODEID"' in sb and '--master-addr "$MASTER_ADDR"' in sb and "scontrol show hostnames" in sb
    assert 'export NCCL_DEBUG="${NCCL_DEBUG:-WARN}"' in sb and "# export NCCL_SOCKET_IFNAME=" in sb
    assert "TORCH_NCCL_ASYNC_ERROR_HANDLING" in sb and "shared by every node" in sb.lower() or "shared storage" in sb.lower()
    assert '--attempt "$SLURM_JOB_ID"' in sb
    for name, text in files.items():  # every script is valid bash
        if name.endswith(".sh"):
            (tmp_path / name).write_text(text)
            assert subprocess.run(["bash", "-n", str(tmp_path / name)]).returncode == 0, name


def test_static_rendezvous_makes_node_rank_the_rank():
    """Under c10d torchrun ignores --node_rank; the static rendezvous honours it (SLURM node 0 is rank 0)."""
    from executor.launch import node_argv

    plan = _nodes(tiny_plan(data_files_only_tmp(), strategy="fsdp", num_gpus=2), 2, 16)
    argv = node_argv(plan, "/runs/r", 1, "head", master_port=29555)
    assert "--rdzv_backend" not in argv and "c10d" not in argv
    joined = " ".join(argv)
    assert "--nnodes 2 --nproc_per_node 8 --node_rank 1 --master_addr head --master_port 29555" in joined


def test_cpus_per_task_from_the_catalog():
    from executor.launch import cpus_per_node

    assert cpus_per_node("no-such-tier", 8) == (64, "8 per GPU")
    cores, how = cpus_per_node("h100-sxm", 8)
    assert cores > 0 and "catalog" in how


def test_slurm_time_has_a_margin():
    from executor.launch import slurm_time

    assert slurm_time(0) == "0-00:30:00" and slurm_time(0.001) == "0-00:45:00"  # whole 15 min, rounded up
    assert slurm_time(10.0) == "0-13:00:00"   # 10 h x 1.25 + 30 min
    assert slurm_time(40.0) == "2-02:30:00"


def test_single_node_launch_script(assets, tmp_path):
    from executor.launch import launch_files

    files = launch_files(tiny_plan(assets, strategy="fsdp", num_gpus=2), "/runs/r")
    assert set(files) == {"launch.sh"}
    assert "--nproc_per_node 2 -m executor.train --run-dir /runs/r" in files["launch.sh"]
    (tmp_path / "launch.sh").write_text(files["launch.sh"])
    assert subprocess.run(["bash", "-n", str(tmp_path / "launch.sh")]).returncode == 0
