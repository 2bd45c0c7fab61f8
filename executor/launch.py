"""Plan -> launcher command lines, the way a user would start them. Pure text: nothing runs here.

One process: ``python -m executor.train --run-dir RUN_DIR``. One node: ``torchrun --standalone --nproc_per_node N -m executor.train --run-dir RUN_DIR`` (single,
ddp, fsdp) or ``deepspeed --num_gpus N --master_port P --module executor.train --run-dir RUN_DIR``
(zero2/zero3 variants). Several nodes: one ``node-<i>.sh`` per node and an ``sbatch.sh`` that runs
``srun torchrun`` with a c10d rendezvous on the first node (torchrun starts DeepSpeed runs too:
accelerate reads the DeepSpeed JSON from the TrainingArguments).
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


def single_node_argv(plan, run_dir: str | Path, *, master_port: int | None = None) -> list[str]:
    """argv for a one-node run of the plan (checked by preflight.check_plan)."""
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


def node_argv(plan, run_dir: str | Path, node_rank: int | str, master_addr: str, *, rdzv_id: str) -> list[str]:
    """argv of one node of a multi-node run: torchrun with a c10d rendezvous on the first node."""
    rec = plan.recommended
    per_node = rec.num_gpus // rec.num_nodes
    return [_tool("torchrun"), "--nnodes", str(rec.num_nodes), "--nproc_per_node", str(per_node),
            "--node_rank", str(node_rank), "--rdzv_backend", "c10d", "--rdzv_endpoint", f"{master_addr}:{RDZV_PORT}",
            "--rdzv_id", rdzv_id, *ENTRY, "--run-dir", str(run_dir)]


def shell_join(argv: list[str]) -> str:
    """Join argv for a shell: arguments holding a $variable go in double quotes (expanded), others quoted."""
    return " ".join(f'"{a}"' if "$" in a else shlex.quote(a) for a in argv)


def _script(lines: list[str], run_dir: str | Path) -> str:
    head = ["#!/usr/bin/env bash", "# written by `sftplan run`; the plan in the run folder is the source of truth",
            "set -euo pipefail", f"export PYTHONPATH={shlex.quote(str(project_root()))}${{PYTHONPATH:+:$PYTHONPATH}}",
            f"cd {shlex.quote(str(project_root()))}"]
    return "\n".join(head + lines) + "\n"


def sbatch_script(plan, run_dir: str | Path) -> str:
    rec = plan.recommended
    per_node = rec.num_gpus // rec.num_nodes
    cmd = shell_join(node_argv(plan, run_dir, "$SLURM_NODEID", "$HEAD_NODE", rdzv_id="$SLURM_JOB_ID"))
    return "\n".join([
        "#!/usr/bin/env bash",
        f"#SBATCH --job-name=sftplan-{plan.plan_sha256[:12]}",
        f"#SBATCH --nodes={rec.num_nodes}",
        "#SBATCH --ntasks-per-node=1",
        f"#SBATCH --gpus-per-node={per_node}",
        "#SBATCH --exclusive",
        f"#SBATCH --output={run_dir}/slurm-%j.txt",
        "# one torchrun per node (srun), rendezvous on the first node of the allocation",
        "set -euo pipefail",
        f"export PYTHONPATH={shlex.quote(str(project_root()))}${{PYTHONPATH:+:$PYTHONPATH}}",
        'export HEAD_NODE=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)',
        f"srun --kill-on-bad-exit=1 bash -c '{cmd}'",
    ]) + "\n"


def launch_files(plan, run_dir: str | Path) -> dict[str, str]:
    """File name -> content of the launch scripts for RUN_DIR/config/ (launch.sh always)."""
    rec = plan.recommended
    files: dict[str, str] = {}
    if rec.num_nodes == 1:
        argv = single_node_argv(plan, run_dir, master_port=RDZV_PORT)
        files["launch.sh"] = _script([shlex.join(argv) + ' "$@"'], run_dir)
        return files
    for i in range(rec.num_nodes):
        argv = node_argv(plan, run_dir, i, "$MASTER_ADDR", rdzv_id=plan.plan_sha256[:12])
        files[f"node-{i}.sh"] = _script([": \"${MASTER_ADDR:?set MASTER_ADDR to the address of node 0}\"",
                                         shell_join(argv)], run_dir)
    files["sbatch.sh"] = sbatch_script(plan, run_dir)
    files["launch.sh"] = _script([f"# {rec.num_nodes} nodes: submit with SLURM, or run node-<i>.sh on node i",
                                  f"sbatch {shlex.quote(str(Path(run_dir) / 'config' / 'sbatch.sh'))}"], run_dir)
    return files
