"""Plan -> launcher command lines, the way a user would start them. Pure text: nothing runs here.

One process: ``python -m executor.train --run-dir RUN_DIR``. One node: ``torchrun --standalone --nproc_per_node N
-m executor.train --run-dir RUN_DIR`` (single, ddp, fsdp) or ``deepspeed --num_gpus N --master_port P --module
executor.train --run-dir RUN_DIR`` (zero2/zero3 variants; config/launch.sh passes ``"$MASTER_PORT"``, 29500 unless
set, and ``sftplan run`` itself $MASTER_PORT or a free port, so that two runs on one machine do not collide).
Several nodes: one ``node-<i>.sh`` per node and an ``sbatch.sh`` (``srun``, one task per node) that
start ``python -m executor.node`` on each node: it checks shared storage and the node's devices, then
runs torchrun with the static rendezvous (``--node_rank`` from the script / ``$SLURM_NODEID``,
``--master_addr`` the first node), so node 0 is rank 0 (torchrun starts DeepSpeed runs too: accelerate
reads the DeepSpeed JSON from the TrainingArguments).
"""

from __future__ import annotations

import shlex
import socket
import sys
from pathlib import Path

from executor.translate import DEEPSPEED_STRATEGIES

ENTRY = ["-m", "executor.train"]
RDZV_PORT = 29500


def project_root() -> Path:
    """The folder holding the ``executor`` package (put on PYTHONPATH by the launch scripts)."""
    return Path(__file__).resolve().parent.parent


def _tool(name: str) -> str:
    """The launcher installed beside this Python (a venv), else the bare name on PATH."""
    here = Path(sys.executable).parent / name
    return str(here) if here.exists() else name


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_port() -> int:
    """DeepSpeed's port for a one-node run that `sftplan run` starts itself: $MASTER_PORT if set, else a free
    port (the launcher's default 29500 would collide with another run, or a test, on the same machine)."""
    import os

    port = os.environ.get("MASTER_PORT", "").strip()
    return int(port) if port.isdigit() and 0 < int(port) < 65536 else free_port()


def single_node_argv(plan, run_dir: str | Path, *, master_port: int | str | None = None) -> list[str]:
    """argv for a one-node run of the plan (DeepSpeed: master_port, else a free port; "$MASTER_PORT" for a script)."""
    strategy = plan.recommended.strategy
    n = plan.recommended.num_gpus
    run_dir = str(run_dir)
    if n == 1 and strategy == "single":
        # One process needs no launcher. Under torchrun (LOCAL_RANK set) accelerate would wrap the model in
        # a one-process DistributedDataParallel: the same training, slower.
        return [sys.executable, *ENTRY, "--run-dir", run_dir]
    if strategy in DEEPSPEED_STRATEGIES:
        return [_tool("deepspeed"), "--num_gpus", str(n), "--master_port", str(master_port or free_port()),
                "--module", "executor.train", "--run-dir", run_dir]
    return [_tool("torchrun"), "--standalone", "--nnodes", "1", "--nproc_per_node", str(n), *ENTRY, "--run-dir", run_dir]


def launch_command(plan, run_dir: str | Path) -> str:
    """The command config/launch.sh of a one-node plan runs (less the "$@" it passes on), as the script spells it:
    DeepSpeed's port is "$MASTER_PORT", which the script sets to RDZV_PORT unless it is set."""
    return shell_join(single_node_argv(plan, run_dir, master_port="$MASTER_PORT"))


def uses_master_port(plan) -> bool:
    """Whether a one-node plan's launcher takes --master_port (DeepSpeed; torchrun --standalone picks its own)."""
    return "--master_port" in single_node_argv(plan, "RUN_DIR", master_port=RDZV_PORT)


def node_argv(plan, run_dir: str | Path, node_rank: int | str, master_addr: str, *,
              master_port: int | str = RDZV_PORT) -> list[str]:
    """torchrun for one node of a multi-node run, static rendezvous: ``--node_rank`` is this node's rank
    (under c10d torchrun ignores it and ranks nodes in arrival order), node 0 hosts the store at
    master_addr:master_port."""
    rec = plan.recommended
    per_node = rec.num_gpus // rec.num_nodes
    return [_tool("torchrun"), "--nnodes", str(rec.num_nodes), "--nproc_per_node", str(per_node),
            "--node_rank", str(node_rank), "--master_addr", master_addr, "--master_port", str(master_port),
            "--max_restarts", "0", *ENTRY, "--run-dir", str(run_dir)]


def node_runner_argv(plan, run_dir: str | Path, node_rank: str, master_addr: str, master_port: str,
                     attempt: str | None = None) -> list[str]:
    """``python -m executor.node ...``: the node-side checks (shared storage, devices) and lifecycle, then torchrun."""
    from executor.node import marker_text

    argv = [sys.executable, "-m", "executor.node", "--run-dir", str(run_dir), "--node-rank", node_rank,
            "--master-addr", master_addr, "--master-port", master_port,
            "--marker", marker_text(plan.plan_sha256, run_dir).strip()]
    return argv + (["--attempt", attempt] if attempt else [])


def shell_join(argv: list[str]) -> str:
    """Join argv for a shell: arguments holding a $variable go in double quotes (expanded), others quoted."""
    return " ".join(f'"{a}"' if "$" in a else shlex.quote(a) for a in argv)


def _script(lines: list[str], run_dir: str | Path) -> str:
    head = ["#!/usr/bin/env bash", "# written by `sftplan run`; the plan in the run folder is the source of truth",
            "set -euo pipefail", f"export PYTHONPATH={shlex.quote(str(project_root()))}${{PYTHONPATH:+:$PYTHONPATH}}",
            f"cd {shlex.quote(str(project_root()))}"]
    return "\n".join(head + lines) + "\n"


CPUS_PER_GPU = 8   # data loading + the launcher; lower it where a node has fewer cores per GPU
TIME_MARGIN = 1.25  # --time: the plan's hours x 1.25 + 30 min (start-up, eval, checkpoints), in whole 15 min
NCCL_NOTES = [
    "# NCCL (GPU collectives). WARN prints what fails without flooding the log; INFO to debug a hang.",
    'export NCCL_DEBUG="${NCCL_DEBUG:-WARN}"',
    "# The network interface NCCL and the rendezvous use is cluster-specific, so it is left to you:",
    "# export NCCL_SOCKET_IFNAME=ib0        # e.g. ib0 / eth0 / ens (see `ip -br addr` on a compute node)",
    "# export GLOO_SOCKET_IFNAME=ib0        # the same for the CPU side (gloo)",
    "# export NCCL_IB_HCA=mlx5              # InfiniBand adapters, where there are several",
    "# A lost node aborts the collectives after the process-group timeout instead of hanging forever:",
    'export TORCH_NCCL_ASYNC_ERROR_HANDLING="${TORCH_NCCL_ASYNC_ERROR_HANDLING:-1}"',
]
STORAGE_NOTE = ["# Shared storage: the run folder must be on a file system every node mounts at the same path",
                "# (checkpoints, gate.json and the logs of all nodes go there). Each node checks it before training:",
                "# config/shared-storage.marker must read as written by `sftplan run`, and every node must see the",
                "# others' check-ins in nodes/ (executor/node.py); the Python environment must be there too."]


def cpus_per_node(gpu: str, gpus_per_node: int) -> tuple[int, str]:
    """--cpus-per-task (one task per node): the catalog's host cores for the tier, else CPUS_PER_GPU per GPU."""
    try:
        from advisor.catalog import load_catalog

        cores = int(getattr(load_catalog().gpus.get(gpu), "host_cpu_cores_per_node", 0) or 0)
    except Exception:  # noqa: BLE001 - a missing/broken catalog falls back to the rule of thumb
        cores = 0
    if cores > 0:
        return cores, f"the {gpu} node's host cores (catalog)"
    return gpus_per_node * CPUS_PER_GPU, f"{CPUS_PER_GPU} per GPU"


def slurm_time(hours: float) -> str:
    """--time for sbatch: the plan's hours x TIME_MARGIN + 30 min, rounded up to 15 minutes (D-HH:MM:SS)."""
    import math

    minutes = max(15, math.ceil((hours * TIME_MARGIN * 60 + 30) / 15) * 15)
    days, rest = divmod(minutes, 24 * 60)
    return f"{days}-{rest // 60:02d}:{rest % 60:02d}:00"


def sbatch_script(plan, run_dir: str | Path) -> str:
    rec = plan.recommended
    per_node = rec.num_gpus // rec.num_nodes
    hours = plan.estimate.hours if plan.estimate and plan.estimate.hours else 1.0
    cpus, cpus_how = cpus_per_node(rec.gpu, per_node)
    cmd = shell_join(node_runner_argv(plan, run_dir, "$SLURM_NODEID", "$MASTER_ADDR", "$MASTER_PORT",
                                      attempt="$SLURM_JOB_ID"))
    return "\n".join([
        "#!/usr/bin/env bash",
        f"#SBATCH --job-name=sftplan-{plan.plan_sha256[:12]}",
        f"#SBATCH --nodes={rec.num_nodes}",
        "#SBATCH --ntasks-per-node=1            # one launcher (torchrun) per node; it starts the GPU workers",
        f"#SBATCH --gpus-per-node={per_node}",
        f"#SBATCH --cpus-per-task={cpus}           # {cpus_how}; lower it to fit your nodes",
        f"#SBATCH --time={slurm_time(hours)}            # plan: {hours:.2f} h, x {TIME_MARGIN} + 30 min",
        "#SBATCH --exclusive",
        f"#SBATCH --output={run_dir}/slurm-%j.txt",
        *STORAGE_NOTE,
        "set -euo pipefail",
        f"export PYTHONPATH={shlex.quote(str(project_root()))}${{PYTHONPATH:+:$PYTHONPATH}}",
        f"cd {shlex.quote(str(project_root()))}",
        *NCCL_NOTES,
        "# Rendezvous: the first node of the allocation is rank 0 (SLURM_NODEID 0) and hosts it (static rendezvous).",
        'export MASTER_ADDR="$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)"',
        f'export MASTER_PORT="${{MASTER_PORT:-{RDZV_PORT}}}"',
        "# Devices are checked on each compute node (not here on the login node), then torchrun starts.",
        f"srun --kill-on-bad-exit=1 --ntasks-per-node=1 bash -c '{cmd}'",
    ]) + "\n"


def submit_command(run_dir: str | Path) -> str:
    """What config/launch.sh of a multi-node plan runs: sbatch of the run's sbatch.sh."""
    return f"sbatch {shlex.quote(str(Path(run_dir) / 'config' / 'sbatch.sh'))}"


def launch_files(plan, run_dir: str | Path) -> dict[str, str]:
    """File name -> content of the launch scripts for RUN_DIR/config/ (launch.sh always)."""
    rec = plan.recommended
    files: dict[str, str] = {}
    if rec.num_nodes == 1:
        port = [f'MASTER_PORT="${{MASTER_PORT:-{RDZV_PORT}}}"  # the DeepSpeed launcher\'s port (set it to use another)']
        lines = (port if uses_master_port(plan) else []) + [launch_command(plan, run_dir) + ' "$@"']
        files["launch.sh"] = _script(lines, run_dir)
        return files
    from executor.node import MARKER, marker_text

    for i in range(rec.num_nodes):
        argv = node_runner_argv(plan, run_dir, str(i), "$MASTER_ADDR", "$MASTER_PORT")
        files[f"node-{i}.sh"] = _script([f"# node {i} of {rec.num_nodes}: start node-<i>.sh on every node (node 0 is rank 0)",
                                         *STORAGE_NOTE, *NCCL_NOTES,
                                         ": \"${MASTER_ADDR:?set MASTER_ADDR to the address of node 0}\"",
                                         f'MASTER_PORT="${{MASTER_PORT:-{RDZV_PORT}}}"',
                                         "exec " + shell_join(argv) + ' "$@"'], run_dir)
    files["sbatch.sh"] = sbatch_script(plan, run_dir)
    files[MARKER] = marker_text(plan.plan_sha256, run_dir)
    files["launch.sh"] = _script([f"# {rec.num_nodes} nodes: submit with SLURM, or run node-<i>.sh on node i",
                                  submit_command(run_dir)], run_dir)
    return files
