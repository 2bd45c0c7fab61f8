"""One node of a multi-node run: what config/node-<i>.sh and config/sbatch.sh start on each machine.

    python -m executor.node --run-dir RUN_DIR --node-rank I --master-addr HOST --master-port PORT --marker TOKEN

On the node itself (a SLURM compute node, not the login node that wrote the scripts), in order:

1. shared storage: RUN_DIR must be the folder the submitter wrote (config/shared-storage.marker holds
   TOKEN), and every node must see every other node's check-in file in RUN_DIR/nodes/ within
   ``SFTPLAN_NODE_WAIT_S`` (300 s): a node-local copy of the folder is refused in one line, before
   anything trains (checkpoints written on node-local disks would be lost or torn);
2. the devices of this node against the plan (executor/preflight.py check_devices; --allow-mismatch);
3. torchrun with the static rendezvous: ``--node_rank I --master_addr HOST --master_port PORT``, so the
   node given rank 0 (SLURM node 0 in sbatch.sh) is rank 0 (under the c10d rendezvous torchrun
   ignores --node_rank and assigns ranks in arrival order);
4. the same lifecycle as ``sftplan run`` (executor/run.py launch/finish): lock, signals forwarded to the
   workers, orphans reaped, the end recorded. Node 0 writes RUN_DIR/run.json, log.txt and report.md
   (the run's); node i > 0 writes RUN_DIR/node-<i>/run.json, log.txt and report.md.

If another node dies, this node's workers fail at their next collective (gloo: connection closed; NCCL:
TORCH_NCCL_ASYNC_ERROR_HANDLING aborts after the process-group timeout) and the node ends "failed" with
one line naming the lost peer, not a hang.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import time
from pathlib import Path

from executor import names

MARKER = names.SHARED_MARKER
NODES_DIR = names.NODES
WAIT_S = float(os.environ.get("SFTPLAN_NODE_WAIT_S", "300"))


def node_dir(run_dir: Path, node_rank: int) -> Path:
    """Where a node's run.json, log.txt and report.md go: the run folder itself for node 0."""
    return run_dir if node_rank == 0 else run_dir / f"{names.NODE_PREFIX}{node_rank}"


def marker_text(plan_sha256: str, run_dir: str | Path) -> str:
    """The marker `sftplan run` writes: the plan and the run folder's path, as one shell-safe word."""
    import hashlib

    return f"sftplan-{plan_sha256[:12]}-{hashlib.sha256(str(Path(run_dir)).encode()).hexdigest()[:12]}\n"


def check_shared_storage(run_dir: Path, node_rank: int, num_nodes: int, token: str, attempt: str,
                         wait_s: float = WAIT_S) -> list[str]:
    """Refuse a run folder that is not the submitter's, or one the other nodes do not share."""
    from advisor.errors import UserError
    from advisor.yamlio import atomic_write_text

    host = socket.gethostname()
    marker = run_dir / "config" / MARKER
    try:
        found = marker.read_text(encoding="utf-8").strip()
    except OSError:
        found = None
    if found != token.strip():
        raise UserError(f"node {node_rank} ({host}): {marker} {'is missing' if found is None else 'differs'}: the run "
                        "folder must be the one `sftplan run` wrote, on storage shared by every node")
    nodes = run_dir / NODES_DIR
    nodes.mkdir(exist_ok=True)
    atomic_write_text(nodes / f"node-{node_rank}.json",
                      json.dumps({"node_rank": node_rank, "host": host, "pid": os.getpid(), "attempt": attempt}) + "\n")
    deadline = time.monotonic() + wait_s
    while True:
        seen = {}
        for i in range(num_nodes):
            try:
                info = json.loads((nodes / f"node-{i}.json").read_text())
            except (OSError, ValueError):
                continue
            if info.get("attempt") == attempt:
                seen[i] = info.get("host")
        if len(seen) == num_nodes:
            return [f"shared storage: all {num_nodes} nodes checked in to {nodes} ({', '.join(map(str, seen.values()))})"]
        if time.monotonic() > deadline:
            missing = [str(i) for i in range(num_nodes) if i not in seen]
            raise UserError(f"node {node_rank} ({host}): node(s) {', '.join(missing)} did not check in to {nodes} within "
                            f"{wait_s:.0f} s: the run folder must be on storage shared by every node (same file "
                            "system), and every node's script must be started")
        time.sleep(0.5)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m executor.node")
    p.add_argument("--run-dir", required=True)
    p.add_argument("--node-rank", type=int, required=True)
    p.add_argument("--master-addr", required=True)
    p.add_argument("--master-port", type=int, required=True)
    p.add_argument("--marker", required=True, help="the text `sftplan run` wrote to config/shared-storage.marker")
    p.add_argument("--attempt", default=None, help="one id per launch, the same on every node (sbatch: the job id)")
    p.add_argument("--allow-mismatch", action="store_true")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    from advisor.errors import UserError

    args = parse_args(argv)
    try:
        return node(args)
    except UserError as exc:
        print(f"sftplan: {exc}", file=sys.stderr, flush=True)
        return 2


def node(args: argparse.Namespace) -> int:
    from advisor.errors import UserError
    from advisor.planfile import read_plan
    from executor.launch import node_argv
    from executor.lifecycle import RunLock
    from executor.preflight import check_devices
    from executor.run import _attempts, _now, _write_run, finish, launch

    run_dir = Path(args.run_dir).resolve()
    plan = read_plan(run_dir / "plan.yaml")
    rec = plan.recommended
    if not 0 <= args.node_rank < rec.num_nodes:
        raise UserError(f"--node-rank {args.node_rank}: the plan has {rec.num_nodes} nodes (0..{rec.num_nodes - 1})")
    attempt = args.attempt or os.environ.get("SLURM_JOB_ID") or f"{args.master_addr}:{args.master_port}"
    notes = check_shared_storage(run_dir, args.node_rank, rec.num_nodes, args.marker, attempt)
    notes += check_devices(plan, args.allow_mismatch)  # here, on the node that trains
    where = node_dir(run_dir, args.node_rank)
    where.mkdir(parents=True, exist_ok=True)
    lock = RunLock(where).acquire()
    try:
        if args.node_rank == 0:
            (run_dir / "STOP").unlink(missing_ok=True)
            (run_dir / "train_result.json").unlink(missing_ok=True)
        previous = json.loads((where / "run.json").read_text()) if (where / "run.json").is_file() else {}
        argv = node_argv(plan, run_dir, args.node_rank, args.master_addr, master_port=args.master_port)
        record = lambda **f: _write_run(where, **f)  # noqa: E731
        record(plan_sha256=plan.plan_sha256, status="running", node_rank=args.node_rank, num_nodes=rec.num_nodes,
               started_at=previous.get("started_at") or _now(), finished_at=None, notes=notes, launch=argv,
               allow_mismatch=args.allow_mismatch, strategy=rec.strategy, attempt=attempt,
               attempts=_attempts(where, previous))
        for note in notes:
            print(f"preflight (node {args.node_rank}): {note}", flush=True)
        done = launch(argv, where, lock=lock, log_path=where / "log.txt", record=record)
        if done.rc and args.node_rank and not (run_dir / "train_result.json").is_file():
            time.sleep(2)  # rank 0 may still be writing the result on the shared folder
        return finish(plan, where, done, notes, say=lambda m: print(m, flush=True), record=record, report_dir=where,
                      result_dir=run_dir)
    finally:
        lock.release()


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    sys.exit(main())
