"""zero3-sp (issue 14 part 2): ZeRO-3 with DeepSpeed's Ulysses sequence parallel (ALST), through accelerate's
ParallelismConfig(sp_backend="deepspeed"), started with `sftplan run` the way a user starts it (the deepspeed
launcher), on the CPU with gloo.

The 2-process run asserts that the sharding is real: in each of the first forwards, rank 0's model saw the
first half of every row and rank 1's the second half of the same rows (position ids run on across the ranks),
the two halves' losses weighted by their label tokens are the loss of the whole rows computed unsharded in this
process from the initial weights (rank 1's half attends to rank 0's through the all-to-all, so a wrong exchange
changes it), ZeRO-3 holds half the parameters on each rank, and training lowered the golden loss.
"""

import json

import pytest

from tinyplan import approved_plan_file, finished_epochs, resume_after_losing_last_epoch, sftplan, tiny_assets, tiny_plan

ROWS = 16


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    return tiny_assets(tmp_path_factory.mktemp("tiny"), n_train=ROWS, n_golden=4)


WIDTH = 32  # max_seq_len: the tiny rows (~30 tokens) fill both halves, answers (the trained tokens) in the second


def sp_plan(assets, *, num_gpus: int = 2, num_nodes: int = 1, packing: bool = False, epochs: int = 1):
    from advisor.planfile import with_hash

    plan = tiny_plan(assets, strategy="zero3-sp", num_gpus=num_gpus, epochs=epochs, micro_batch_size=2,
                     packing=packing, max_seq_len=WIDTH)
    return with_hash(plan.replace(recommended=plan.recommended.replace(num_nodes=num_nodes)))


def test_config_and_launch_as_files(assets, tmp_path):
    """16 GPUs on 2 nodes: Ulysses over the 8 GPUs of a node, ZeRO-3 over all 16, 2 data-parallel replicas."""
    from accelerate import ParallelismConfig
    from accelerate.utils import DeepSpeedSequenceParallelConfig

    from executor.translate import deepspeed_config, parallelism_config, sequence_parallel_size, training_arguments

    plan = sp_plan(assets, num_gpus=16, num_nodes=2)
    assert sequence_parallel_size(plan) == 8
    pc = parallelism_config(plan)
    assert pc["sp_size"] == 8 and pc["sp_backend"] == "deepspeed" and pc["dp_shard_size"] == 2
    obj = ParallelismConfig(**{**pc, "sp_handler": DeepSpeedSequenceParallelConfig(**pc["sp_handler"])})
    assert obj.sp_enabled and obj.data_parallel_size == 2 and obj.total_size == 16
    assert deepspeed_config(plan)["zero_optimization"]["stage"] == 3
    args = training_arguments(plan, "/r", bf16=True, accelerator=True)
    assert args["parallelism_config"] == pc and "fsdp" not in args
    assert sequence_parallel_size(tiny_plan(assets, strategy="zero3", num_gpus=2)) == 1

    run_dir = tmp_path / "run"
    proc = sftplan("run", str(approved_plan_file(tmp_path, plan)), "--out", str(run_dir), "--dry-run")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    written = json.loads((run_dir / "config" / "training_args.json").read_text())
    assert written["parallelism_config"]["sp_size"] == 8
    assert json.loads((run_dir / "config" / "deepspeed.json").read_text())["zero_optimization"]["stage"] == 3
    assert "executor.node" in (run_dir / "config" / "node-0.sh").read_text()


def test_packed_plans_are_refused(assets):
    """Ulysses on sdpa drops the mask (is_causal over the gathered sequence: ulysses_sp.uattn_wrapper), so packed
    documents would attend to each other; checked on this machine: the sharded loss of packed rows was the
    plain-causal one (5.7538), not the packed one (5.7608)."""
    from advisor.errors import UserError
    from executor.preflight import check_plan

    with pytest.raises(UserError, match="packing"):
        check_plan(sp_plan(assets, packing=True))


def test_collator_pads_to_a_multiple_of_sp_with_position_ids():
    from executor.data import Collator

    batch = Collator(0, packed=False, sp=4, width=10)([{"input_ids": [5, 6, 7], "labels": [-100, 6, 7]}])
    assert batch["input_ids"].shape == (1, 12) and "attention_mask" not in batch
    assert batch["position_ids"].tolist() == [list(range(12))]
    assert batch["labels"].tolist()[0][3:] == [-100] * 9
    # one collated batch is sp micro-steps for Ulysses' loader: the metrics callback takes one count per step
    sp = Collator(0, packed=False, sp=2, width=4)
    sp([{"input_ids": [5, 6, 7], "labels": [-100, 6, 7]}])
    assert list(sp.batch_tokens) == [2, 1] and sp.tokens_seen == 3
    plain = Collator(0, packed=False)([{"input_ids": [5, 6, 7], "labels": [-100, 6, 7]}])
    assert plain["input_ids"].shape == (1, 3) and "attention_mask" in plain


def _unsharded_loss(model_dir, rows_ids, rows_shift, start=0):
    """The loss of right-padded rows in one process (pads on the right: under the causal mask no real token sees
    them, so no attention mask is needed)."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    model.config.use_cache = False
    ids = torch.tensor(rows_ids)
    pos = torch.arange(start, start + ids.shape[1]).expand(ids.shape[0], -1)
    with torch.no_grad():
        out = model(input_ids=ids, position_ids=pos, labels=torch.tensor(rows_shift),
                    shift_labels=torch.tensor(rows_shift))
    return float(out.loss)


@pytest.mark.slow
def test_two_ranks_split_every_sequence_and_train(assets, tmp_path):
    plan_path = approved_plan_file(tmp_path, sp_plan(assets))
    run_dir = tmp_path / "run"
    proc = sftplan("run", str(plan_path), "--out", str(run_dir))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "deepspeed" in json.loads((run_dir / "run.json").read_text())["launch"][0]

    for r in (0, 1):  # ZeRO-3 under sp: the states are partitioned over both ranks
        rep = json.loads((run_dir / "shards" / f"rank-{r}.json").read_text())
        assert rep["param_kinds"] == ["zero3-partition"] and rep["world_size"] == 2
        assert rep["local_param_numel"] <= rep["full_param_numel"] * 0.55, rep
    seen = [json.loads((run_dir / "shards" / f"sp-rank-{r}.json").read_text()) for r in (0, 1)]
    for a, b in zip(*seen):  # every row: rank 0 holds tokens 0..15, rank 1 tokens 16..31 of the same row
        assert [len(r) for r in a["input_ids"]] == [len(r) for r in b["input_ids"]] == [WIDTH // 2] * 2
        assert a["position_ids"] == [list(range(WIDTH // 2))] * 2
        assert b["position_ids"] == [list(range(WIDTH // 2, WIDTH))] * 2
    first_a, first_b = seen[0][0], seen[1][0]
    goods = [sum(t != -100 for row in s["shift_labels"] for t in row) for s in (first_a, first_b)]
    assert goods[1] > 0, goods  # the second half carries trained tokens (the answers)
    # the whole rows = rank 0's half + rank 1's half; their unsharded loss (initial weights: the first step)
    ids = [x + y for x, y in zip(first_a["input_ids"], first_b["input_ids"])]
    shift = [x + y for x, y in zip(first_a["shift_labels"], first_b["shift_labels"])]
    whole = _unsharded_loss(assets / "model", ids, shift)
    combined = sum(s["loss"] * g for s, g in zip((first_a, first_b), goods) if g) / sum(goods)
    assert combined == pytest.approx(whole, rel=1e-5)
    # rank 1's half alone, without rank 0's tokens to attend to, has another loss: the exchange is what made it
    alone = _unsharded_loss(assets / "model", first_b["input_ids"], first_b["shift_labels"], start=WIDTH // 2)
    assert abs(alone - first_b["loss"]) > 1e-3

    # tokens/s counted on every step (one collated batch feeds sp micro-steps)
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == ROWS // 2 and all(r["tokens_per_s_per_gpu"] > 0 for r in rows), rows  # 16 rows / 2 a step

    gate = json.loads((run_dir / "gate.json").read_text())
    (epoch,) = gate["epochs"]
    assert (run_dir / epoch["checkpoint"] / "model.safetensors").is_file()
    assert epoch["score"]["loss"] < gate["baseline"]["loss"]


@pytest.mark.slow
def test_every_epoch_trains_every_step_and_a_lost_epoch_resumes_to_the_same_loss(assets, tmp_path):
    """Two epochs of 8 steps each (16 rows, one sequence-parallel group: 2 rows a step): every step trains on a real
    batch (DeepSpeed's Ulysses loader adapter has no set_epoch; without executor/sp_epoch.py the second epoch
    lost a step and a resumed run replayed the first epoch's order), and a run that lost epoch 2 resumes from the
    epoch-1 checkpoint to the uninterrupted run's epoch-2 golden loss."""
    plan_path = approved_plan_file(tmp_path, sp_plan(assets, epochs=2))
    run_dir = tmp_path / "run"
    proc = sftplan("run", str(plan_path), "--out", str(run_dir))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    steps = [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 17)), steps
    gate = finished_epochs(run_dir)
    first, second = gate["epochs"]
    assert second["score"]["loss"] < first["score"]["loss"] < gate["baseline"]["loss"]

    again = resume_after_losing_last_epoch(plan_path, run_dir, gate)
    assert again[0] == first and again[1]["score"]["loss"] == pytest.approx(second["score"]["loss"], rel=1e-6)
