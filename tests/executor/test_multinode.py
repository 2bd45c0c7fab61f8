"""issue 11.3/11.5: a 2-"node" run on localhost started the way an engineer starts one (config/node-<i>.sh on each
node, MASTER_ADDR set), one CPU worker per node (gloo). Each node writes its own run.json, log.txt and report.md
(node 0's are the run's); a node killed mid-run makes the other end with one clear line in bounded time."""

import json
import os
import signal
import subprocess
import time

import pytest

from advisor.errors import UserError
from tinyplan import approved_plan_file, sftplan, tiny_assets, tiny_plan

pytestmark = pytest.mark.slow
ROWS = 64


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    return tiny_assets(tmp_path_factory.mktemp("tiny"), n_train=ROWS, n_golden=4)


def two_node_plan(assets, tmp_path, epochs):
    from advisor.planfile import with_hash

    plan = tiny_plan(assets, strategy="ddp", num_gpus=2, epochs=epochs, micro_batch_size=2)
    plan = with_hash(plan.replace(**{"recommended": plan.recommended.replace(**{"num_nodes": 2})}))
    return approved_plan_file(tmp_path, plan)


def write_scripts(plan_path, run_dir):
    proc = sftplan("run", str(plan_path), "--out", str(run_dir))
    assert proc.returncode == 0, proc.stderr
    assert "2 nodes: submit" in proc.stdout and "devices: checked on each node" in proc.stdout
    return {i: run_dir / "config" / f"node-{i}.sh" for i in (0, 1)}


def start_node(script, port):
    from executor.launch import free_port  # noqa: F401  (port chosen by the caller)

    env = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), SFTPLAN_NODE_WAIT_S="120")
    return subprocess.Popen(["bash", str(script)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)


def test_two_nodes_through_the_node_scripts_each_records_its_end(assets, tmp_path):
    from executor.launch import free_port

    run_dir = tmp_path / "run"
    scripts = write_scripts(two_node_plan(assets, tmp_path, epochs=1), run_dir)
    port = free_port()
    nodes = [start_node(scripts[i], port) for i in (1, 0)]  # node 1 first: arrival order must not decide ranks
    outs = [p.communicate(timeout=600)[0] for p in nodes]
    assert [p.returncode for p in nodes] == [0, 0], outs[0][-3000:] + outs[1][-3000:]
    for where in (run_dir, run_dir / "node-1"):
        info = json.loads((where / "run.json").read_text())
        assert info["status"] == "finished" and info["pid"] is None, info
        assert (where / "log.txt").is_file() and (where / "report.md").is_file()
    assert json.loads((run_dir / "run.json").read_text())["node_rank"] == 0
    shards = [json.loads((run_dir / "shards" / f"rank-{r}.json").read_text()) for r in (0, 1)]
    assert [s["world_size"] for s in shards] == [2, 2]
    assert "[sftplan] finished" in (run_dir / "log.txt").read_text()  # rank 0 (which logs) ran on node 0
    assert json.loads((run_dir / "nodes" / "node-1.json").read_text())["node_rank"] == 1


def test_a_killed_node_ends_the_other_with_one_line_in_bounded_time(assets, tmp_path):
    from executor.launch import free_port

    run_dir = tmp_path / "run"
    scripts = write_scripts(two_node_plan(assets, tmp_path, epochs=20), run_dir)
    port = free_port()
    node0, node1 = start_node(scripts[0], port), start_node(scripts[1], port)
    deadline = time.time() + 300
    while not (run_dir / "metrics.jsonl").is_file():
        assert node0.poll() is None and node1.poll() is None, "a node ended before training"
        assert time.time() < deadline
        time.sleep(0.05)
    # node 1 goes away (a machine that dies): its runner, its torchrun and its worker (in a session of its own)
    worker1 = [pid for pid in _workers(run_dir) if b"\0RANK=1\0" in b"\0" + _environ(pid)]
    assert len(worker1) == 1
    os.killpg(node1.pid, signal.SIGKILL)
    os.kill(worker1[0], signal.SIGKILL)
    t0 = time.time()
    out = node0.communicate(timeout=180)[0]
    node1.wait(timeout=30)
    assert time.time() - t0 < 180 and node0.returncode == 1, out[-3000:]
    info = json.loads((run_dir / "run.json").read_text())
    assert info["status"] == "failed" and "lost contact with another rank" in info["error"], info.get("error")
    assert (run_dir / "report.md").is_file()
    assert out.strip().splitlines()[-1].startswith("run failed:")


def _environ(pid):
    try:
        return open(f"/proc/{pid}/environ", "rb").read()
    except OSError:
        return b""


def _workers(run_dir):
    from test_lifecycle import trainers_of

    return trainers_of(run_dir)


def test_a_killed_launcher_on_one_node_stops_both_at_a_safe_point(assets, tmp_path):
    """Only node 1's runner and torchrun are killed: its worker is told (PDEATHSIG), every rank stops at the same
    step, and node 0 ends "stopped" without waiting out torchrun's 300 s exit barrier for the vanished agent."""
    from executor.launch import free_port

    run_dir = tmp_path / "run"
    scripts = write_scripts(two_node_plan(assets, tmp_path, epochs=20), run_dir)
    port = free_port()
    node0, node1 = start_node(scripts[0], port), start_node(scripts[1], port)
    deadline = time.time() + 300
    while not (run_dir / "metrics.jsonl").is_file():
        assert node0.poll() is None and node1.poll() is None and time.time() < deadline
        time.sleep(0.05)
    os.killpg(node1.pid, signal.SIGKILL)
    t0 = time.time()
    out = node0.communicate(timeout=240)[0]
    assert time.time() - t0 < 240 and node0.returncode == 0, out[-3000:]
    info = json.loads((run_dir / "run.json").read_text())
    assert info["status"] == "stopped" and (run_dir / "report.md").is_file()
    assert not _workers(run_dir)


def test_a_run_folder_the_nodes_do_not_share_is_refused(assets, tmp_path):
    from executor.node import check_shared_storage, marker_text

    run_dir = tmp_path / "run"
    write_scripts(two_node_plan(assets, tmp_path, epochs=1), run_dir)
    token = (run_dir / "config" / "shared-storage.marker").read_text()
    with pytest.raises(UserError, match=r"node\(s\) 1 did not check in .* storage shared by every node"):
        check_shared_storage(run_dir, 0, 2, token, attempt="a", wait_s=1)
    with pytest.raises(UserError, match="shared-storage.marker differs"):
        check_shared_storage(run_dir, 1, 2, marker_text("0" * 64, "/elsewhere"), attempt="a", wait_s=1)
    (run_dir / "config" / "shared-storage.marker").unlink()  # a node-local copy without the submitter's marker
    with pytest.raises(UserError, match="is missing"):
        check_shared_storage(run_dir, 1, 2, token, attempt="a", wait_s=1)
