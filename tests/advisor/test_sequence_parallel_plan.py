"""zero3-sp (ZeRO-3 + DeepSpeed Ulysses sequence parallel, ALST): the estimator's memory and time terms, the
planner's condition (only where one sequence's activations do not fit otherwise) and its rule."""

import dataclasses

import pytest

from advisor import rules
from advisor.architecture import resolve_model
from advisor.catalog import load_catalog
from advisor.estimate import estimate
from advisor.memory import memory_breakdown, ulysses_buffer_bytes
from advisor.models import DatasetSpec, OwnedHardware, PlanRequest, TrainConfig
from advisor.planner import plan
from advisor.step_options import ParallelLayout
from advisor.throughput import compute_time_per_micro_batch_s, step_time, ulysses_all_to_all_s

CAT = load_catalog()
H100 = CAT.gpus["h100-sxm"]
LLAMA8 = resolve_model("llama-3.1-8b")


def cfg(**kw) -> TrainConfig:
    base = dict(num_gpus=8, strategy="zero3-sp", seq_len=65536, micro_batch_size=1, activation_checkpointing=True)
    return TrainConfig(**{**base, **kw})


# ----------------------------------------------------------------------------- memory
def test_model_states_are_zero3s_and_the_sequence_is_split_by_the_node():
    sp, z3 = memory_breakdown(LLAMA8, H100, cfg()), memory_breakdown(LLAMA8, H100, cfg(strategy="zero3"))
    assert (sp.weights, sp.optimizer) == (z3.weights, z3.optimizer)  # ZeRO-3 over all 8 GPUs either way
    # per-token tensors of 65536 / 8 tokens: the saved activations (+ one layer's all-to-all buffers) and logits
    local = memory_breakdown(LLAMA8, H100, cfg(strategy="zero3", seq_len=65536 // 8))
    assert sp.activations == local.activations + ulysses_buffer_bytes(LLAMA8, cfg(), 8)
    assert sp.logits == local.logits
    assert sp.activations + sp.logits < (z3.activations + z3.logits) / 6


def test_ulysses_buffers_are_one_layers_qkvo_of_the_local_tokens():
    # Llama 8B: 32 heads, 8 kv heads, head_dim 128: (2 x 32 + 2 x 8) x 128 bf16 values per local token
    assert ulysses_buffer_bytes(LLAMA8, cfg(), 8) == 2 * (65536 // 8) * (2 * 32 + 2 * 8) * 128
    assert ulysses_buffer_bytes(LLAMA8, cfg(), 1) == 0
    # fewer kv heads than the degree: DeepSpeed replicates them up to one per GPU
    mqa = dataclasses.replace(LLAMA8, num_kv_heads=2)
    assert ulysses_buffer_bytes(mqa, cfg(), 8) == 2 * (65536 // 8) * (2 * 32 + 2 * 8) * 128


def test_a_64k_sequence_fits_with_sp_where_plain_zero3_does_not():
    assert not estimate(LLAMA8, H100, cfg(strategy="zero3")).fits
    assert estimate(LLAMA8, H100, cfg()).fits


# ----------------------------------------------------------------------------- time
def test_compute_is_context_parallels_and_the_all_to_alls_are_added():
    c = cfg()
    st = step_time(LLAMA8, H100, c)
    micro = compute_time_per_micro_batch_s(LLAMA8, H100, c, ParallelLayout(cp=8))
    a2a = ulysses_all_to_all_s(LLAMA8, H100, c, 8)
    assert st.compute_s == pytest.approx((micro + a2a) * c.grad_accum)
    assert st.tokens_per_step == 65536 * c.grad_accum  # one data-parallel replica: the node shares each sequence


def test_all_to_all_volume_follows_ulysses():
    c = cfg()
    one = ulysses_all_to_all_s(LLAMA8, H100, c, 8)
    assert ulysses_all_to_all_s(LLAMA8, H100, cfg(seq_len=131072), 8) == pytest.approx(2 * one)  # linear in tokens
    # forward + backward; recompute adds the forward's 4 all-to-alls again
    assert ulysses_all_to_all_s(LLAMA8, H100, cfg(activation_checkpointing=False), 8) == pytest.approx(one * 2 / 3)
    # per GPU it sends (sp - 1) / sp of seq_len / sp tokens: 2 ranks move 1/4 of the sequence, 8 ranks 7/64
    two = ulysses_all_to_all_s(LLAMA8, H100, c, 2)
    assert one / two == pytest.approx((7 / 64) / (1 / 4))


def test_heads_that_do_not_divide_are_refused_with_a_note():
    odd = dataclasses.replace(LLAMA8, num_heads=28, num_kv_heads=4)  # 28 heads over 8 GPUs (Qwen2.5-7B's shape)
    e = estimate(odd, H100, cfg())
    assert not e.fits and any("does not divide" in n for n in e.notes)
    assert not estimate(LLAMA8, H100, cfg(num_gpus=1)).fits  # one GPU: nothing to split over


# ----------------------------------------------------------------------------- planner and rule
def _req(seq, **kw):
    return PlanRequest(model="llama-3.1-8b", dataset=DatasetSpec(examples=20_000, avg_tokens=seq), max_seq_len=seq,
                       goals=["deep-retask"], have=[OwnedHardware(gpu="h100-sxm", count=8)], **kw)


def test_planner_picks_sp_only_when_a_sequence_does_not_fit():
    p = plan(_req(65536), CAT)
    r = p.recommended
    assert (r.strategy, r.num_gpus, r.num_nodes) == ("zero3-sp", 8, 1)
    from advisor.render import config_str

    assert "zero3-sp, sp 8," in config_str(r)
    assert p.estimate.steps_per_epoch == -(-20_000 // (r.micro_batch_size * r.grad_accum))  # one replica: the node
    f = next(f for f in p.findings if f.rule_id == "parallel.zero3-sp")
    assert f.source == rules.S_ULYSSES and "sequence parallel 8" in f.why
    short = plan(_req(4096), CAT)  # a 4k sequence fits sharded: no sequence parallel anywhere
    assert short.recommended.strategy != "zero3-sp"
    assert all(t.config is None or t.config.strategy != "zero3-sp" for t in short.tiers)


def test_packed_requests_get_no_sp_candidate():
    p = plan(_req(65536, packing=True), CAT)  # the executor refuses packed rows under Ulysses (sdpa drops the mask)
    assert p.recommended is None or p.recommended.strategy != "zero3-sp"
    assert all(t.config is None or t.config.strategy != "zero3-sp" for t in p.tiers)
    assert any("plan without packing" in w and "h100-sxm" in w for w in p.warnings), p.warnings


def test_rule_cites_the_library():
    f = rules.rule_parallelism("zero3-sp", 16, 2, 8e9, 8)
    assert f.rule_id == "parallel.zero3-sp" and "sequence parallel 8" in f.why and "2506.13996" in f.why


def test_without_runs_of_its_own_zero3_sp_takes_zero3s_calibration(tmp_path):
    """Two finished zero3 runs measured 0.7x the planned tokens/s on h100-sxm: the zero3-sp plan (no run of its own,
    DeepSpeed ZeRO-3 on the same stack) is corrected by that factor, as hsdp / fsdp-tp take FSDP's."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    import yaml

    from advisor import calibration

    root = Path(__file__).resolve().parents[2]
    runs = []
    for i in range(2):
        d = tmp_path / f"r{i}"
        d.mkdir()
        sha = f"{i:064x}"
        (d / "plan.yaml").write_text(yaml.safe_dump({
            "plan_sha256": sha, "method": "full-sft", "model": {"params": 8_030_000_000},
            "recommended": {"gpu": "h100-sxm", "strategy": "zero3", "precision": "bf16-mixed"}}))
        (d / "report.json").write_text(json.dumps({"plan_sha256": sha, "status": "finished", "gpu": "h100-sxm", "figures": {
            "tokens_per_s_per_gpu": {"planned": 1000.0, "measured": 700.0, "unit": "tokens/s"},
            "peak_memory_per_gpu_gib": {"planned": 40.0, "measured": 40.0, "unit": "GiB",
                                        "how": "accelerator max allocated"}}}))
        (d / "run.json").write_text(json.dumps({"versions": {"torch": "2.13.0", "transformers": "5.24.0"}}))
        (d / "metrics.jsonl").write_text(json.dumps({"step": 1, "tokens_per_s_per_gpu": 700.0, "peak_memory_bytes": 40 * 2**30,
                                                     "peak_memory_kind": "accelerator max allocated"}) + "\n")
        runs.append(d)
    out = tmp_path / "cal.yaml"
    proc = subprocess.run([sys.executable, "-m", "advisor", "calibrate", *map(str, runs), "-o", str(out)], cwd=root,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    raw, cal = plan(_req(65536), CAT), plan(_req(65536), CAT, calibration=calibration.load(out))
    assert raw.recommended.strategy == cal.recommended.strategy == "zero3-sp"
    assert cal.estimate.tokens_per_s_per_gpu == pytest.approx(raw.estimate.tokens_per_s_per_gpu * 0.7, rel=0.02)
