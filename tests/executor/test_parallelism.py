"""hsdp and fsdp-tp (issue 14 part 2) through accelerate's ParallelismConfig, started with `sftplan run` the way
a user starts them, on the CPU with gloo: each asserts that the parameters really are laid out on the 2-D mesh
(the shard report train.py writes per rank: the DTensor mesh, its placements, the local share of the elements),
that the epoch checkpoint holds a loadable full model.safetensors whose golden loss is the one the gate
recorded, and that training lowered the golden loss.

- fsdp-tp: 4 workers on one node, tensor parallel 2 (transformers' tp_plan, DistributedConfig at load) x FSDP 2.
- hsdp: 2 "nodes" x 2 workers through the generated node scripts: FSDP inside a node, replicated across nodes.
"""

import json
import os
import subprocess

import pytest

from tinyplan import approved_plan_file, resume_after_losing_last_epoch, sftplan, tiny_assets, tiny_plan

ROWS = 32


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    return tiny_assets(tmp_path_factory.mktemp("tiny"), n_train=ROWS, n_golden=4)


def layout_plan(assets, strategy: str, *, num_gpus: int = 4, num_nodes: int = 1, tp: int = 1, epochs: int = 1):
    from advisor.planfile import with_hash

    plan = tiny_plan(assets, strategy=strategy, num_gpus=num_gpus, epochs=epochs, micro_batch_size=2)
    rec = plan.recommended.replace(num_nodes=num_nodes, tp=tp)
    return with_hash(plan.replace(recommended=rec))


def _golden_loss(ckpt, golden_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from executor.evalgate import load_golden, score_golden

    model = AutoModelForCausalLM.from_pretrained(ckpt)
    tok = AutoTokenizer.from_pretrained(ckpt)
    return score_golden(model, tok, load_golden(golden_path), max_new_tokens=8)["loss"]


def _reports(run_dir, world):
    return [json.loads((run_dir / "shards" / f"rank-{r}.json").read_text()) for r in range(world)]


def _check_trained(run_dir, golden):
    gate = json.loads((run_dir / "gate.json").read_text())
    (epoch,) = gate["epochs"]
    ckpt = run_dir / epoch["checkpoint"]
    assert (ckpt / "COMPLETE").is_file() and (ckpt / "model.safetensors").is_file()
    assert epoch["score"]["loss"] < gate["baseline"]["loss"]
    assert _golden_loss(ckpt, golden) == pytest.approx(epoch["score"]["loss"], rel=1e-4)
    return ckpt


# ----------------------------------------------------------------------------- the configs, as files (fast)
def test_configs_and_launch_as_files(assets, tmp_path):
    """What `sftplan run --dry-run` writes for each layout on a real cluster shape (16 GPUs, 2 nodes)."""
    from executor.translate import distributed_config, parallelism_config, training_arguments

    hsdp = layout_plan(assets, "hsdp", num_gpus=16, num_nodes=2)
    assert parallelism_config(hsdp) == {"dp_replicate_size": 2, "dp_shard_size": 8}
    assert distributed_config(hsdp) is None
    args = training_arguments(hsdp, "/r", bf16=True, accelerator=True)
    assert args["fsdp"] is True and args["fsdp_config"]["version"] == 2 and args["parallelism_config"]["dp_shard_size"] == 8

    tp = layout_plan(assets, "fsdp-tp", num_gpus=16, num_nodes=2, tp=8)
    assert parallelism_config(tp) == {"dp_shard_size": 2, "tp_size": 8}
    assert distributed_config(tp) == {"tp_size": 8, "fsdp_size": 2}
    args = training_arguments(tp, "/r", bf16=True, accelerator=True)
    assert "fsdp" not in args and args["save_only_model"] is True  # transformers shards it while loading
    from accelerate import ParallelismConfig
    from transformers.distributed import DistributedConfig

    assert ParallelismConfig(**parallelism_config(tp)).total_size == 16
    assert DistributedConfig(**distributed_config(tp)).dp_size == 2

    run_dir = tmp_path / "run"
    proc = sftplan("run", str(approved_plan_file(tmp_path, hsdp)), "--out", str(run_dir), "--dry-run")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    written = json.loads((run_dir / "config" / "training_args.json").read_text())
    assert written["parallelism_config"] == {"dp_replicate_size": 2, "dp_shard_size": 8}
    node0 = (run_dir / "config" / "node-0.sh").read_text()
    assert "executor.node" in node0 and (run_dir / "config" / "sbatch.sh").is_file()


def test_lora_plans_are_refused_on_the_layouts(assets):
    """With the reason the planner gives a request for the same (advisor/run_limits.py: one rule, both sides)."""
    from advisor.errors import UserError
    from advisor.run_limits import full_sft_only_reason
    from executor.preflight import check_plan

    for strategy, tp in (("hsdp", 1), ("fsdp-tp", 2)):
        plan = layout_plan(assets, strategy, tp=tp).replace(method="lora")
        with pytest.raises(UserError) as err:
            check_plan(plan)
        assert str(err.value) == f"strategy {full_sft_only_reason(strategy)}"


# ----------------------------------------------------------------------------- real runs on gloo
@pytest.mark.slow
def test_fsdp_tp_four_workers_tensor_parallel_2_x_fsdp_2_and_its_resume(assets, tmp_path):
    plan_path = approved_plan_file(tmp_path, layout_plan(assets, "fsdp-tp", num_gpus=4, tp=2, epochs=2))
    run_dir = tmp_path / "run"
    proc = sftplan("run", str(plan_path), "--out", str(run_dir))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "torchrun" in json.loads((run_dir / "run.json").read_text())["launch"][0]
    for rep in _reports(run_dir, 4):
        lay = rep["dtensor_layout"]
        assert rep["world_size"] == 4 and rep["param_kinds"] == ["dtensor"], rep
        assert lay["mesh_dim_names"] == ["fsdp", "tp"] and lay["mesh_shape"] == [2, 2], lay
        assert any("Shard" in p for p in lay["placements"]) and len(lay["placements"]) == 2
        # every weight is split 4 ways (tp x fsdp; norms: fsdp x replicated over tp): at most ~1/4 + the norms
        assert rep["local_param_numel"] <= rep["full_param_numel"] * 0.30, rep
    ref = json.loads((run_dir / "gate.json").read_text())
    last = run_dir / ref["epochs"][-1]["checkpoint"]
    assert [e["epoch"] for e in ref["epochs"]] == [1, 2] and ref["epochs"][-1]["score"]["loss"] < ref["baseline"]["loss"]
    assert _golden_loss(last, assets / "golden.jsonl") == pytest.approx(ref["epochs"][-1]["score"]["loss"], rel=1e-4)
    # every rank's model and optimizer shards are in the checkpoint (DCP), and hashed into its COMPLETE marker
    marker = json.loads((last / "COMPLETE").read_text())["files"]
    assert "tp_state/.metadata" in marker and sum(k.startswith("tp_state/") and k.endswith(".distcp") for k in marker) == 4
    from test_distributed import assert_checkpoint_bytes_as_planned

    assert_checkpoint_bytes_as_planned(last, "fsdp-tp")

    # lose epoch 2, resume from the sharded epoch-1 checkpoint: the same epoch-2 model again (its optimizer state,
    # scheduler and data position came back, not just the weights)
    first, second = ref["epochs"]
    again = resume_after_losing_last_epoch(plan_path, run_dir, ref)
    assert again[0] == first and again[1]["checkpoint"] == second["checkpoint"]
    assert again[1]["score"]["loss"] == pytest.approx(second["score"]["loss"], rel=1e-5)


@pytest.mark.slow
def test_hsdp_two_nodes_of_two_workers_through_the_node_scripts(assets, tmp_path):
    from executor.launch import free_port

    plan_path = approved_plan_file(tmp_path, layout_plan(assets, "hsdp", num_gpus=4, num_nodes=2))
    run_dir = tmp_path / "run"
    proc = sftplan("run", str(plan_path), "--out", str(run_dir))
    assert proc.returncode == 0 and "2 nodes: submit" in proc.stdout, proc.stdout[-2000:] + proc.stderr[-2000:]
    port = free_port()
    env = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), SFTPLAN_NODE_WAIT_S="120")
    nodes = [subprocess.Popen(["bash", str(run_dir / "config" / f"node-{i}.sh")], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, start_new_session=True) for i in (0, 1)]
    outs = [p.communicate(timeout=600)[0] for p in nodes]
    assert [p.returncode for p in nodes] == [0, 0], outs[0][-3000:] + outs[1][-3000:]
    reports = _reports(run_dir, 4)
    for rep in reports:
        lay = rep["dtensor_layout"]
        assert rep["world_size"] == 4 and rep["param_kinds"] == ["dtensor"], rep
        assert lay["mesh_dim_names"] == ["dp_replicate", "dp_shard_cp"] and lay["mesh_shape"] == [2, 2], lay
        assert lay["placements"] == ["Replicate()", "Shard(dim=0)"], lay
        # sharded over the 2 workers of a node, not the 4 of the job: about half each
        assert rep["full_param_numel"] * 0.45 <= rep["local_param_numel"] <= rep["full_param_numel"] * 0.55, rep
    # the replicas hold the same shard sizes (rank r and r + 2 are one shard of two copies)
    assert [r["local_param_numel"] for r in reports[:2]] == [r["local_param_numel"] for r in reports[2:]]
    _check_trained(run_dir, assets / "golden.jsonl")
