"""The dropless MoE dispatcher's device-to-host sync per layer forward (advisor.throughput.moe_host_sync_s):
after the sync the GPU's queue is empty and the rest of the layer runs at max(its GPU time, kernels x
launch) plus the drained queue's latency. Each test fails without the term or with another kernel count."""
import dataclasses

import pytest

from advisor.catalog import load_catalog
from advisor.models import TrainConfig
from advisor.specs import ModelSpec
from advisor.throughput import (DRAINED_QUEUE_S, KERNEL_LAUNCH_S, MOE_POST_SYNC_KERNELS, _micro_batch_work,
                                gemm_efficiency, moe_host_sync_s, step_time)
from advisor.step_options import EngineKernels, ParallelLayout

EP8 = ParallelLayout(ep=8)  # the GPT-OSS recipes' expert parallel degree
B200 = load_catalog().gpus["b200"]
GPT_OSS = ModelSpec(name="gpt-oss-120b", family="generic", source="config.json", hidden_size=2880, num_layers=36,
                    num_heads=64, num_kv_heads=8, head_dim=64, ffn_size=2880, ffn_kind="gated", vocab_size=201088,
                    max_context=131072, num_experts=128, experts_per_token=4, sliding_window=128,
                    sliding_window_layers=18)
# a small MoE whose experts' GEMMs are shorter than their launches (host-bound after the sync)
TINY_MOE = ModelSpec(name="tiny-moe", family="generic", source="config.json", hidden_size=256, num_layers=4,
                     num_heads=4, num_kv_heads=4, ffn_size=128, ffn_kind="gated", vocab_size=1000,
                     max_context=512, num_experts=64, experts_per_token=2)


def cfg(**kw):
    base = dict(num_gpus=64, strategy="megatron", seq_len=4096, micro_batch_size=4, grad_accum=5,
                activation_checkpointing=False)
    base.update(kw)
    return TrainConfig(**base)


def _extra_compute_s(m, c, ep):
    on = step_time(m, B200, c, layout=ParallelLayout(ep=ep), kernels=EngineKernels(moe_host_sync=True))
    off = step_time(m, B200, c, layout=ParallelLayout(ep=ep))
    return on.compute_s - off.compute_s


def test_gpu_bound_layer_pays_the_drained_queue_once_per_layer_forward():
    """gpt-oss-120b at the B200 recipe's shape: 16 local experts x 2 GEMMs + 7 kernels = 39 launches
    (0.15 ms) against ~3 ms of expert GPU time: only the drained queue's latency, per layer and micro-batch."""
    c = cfg()
    work = _micro_batch_work(GPT_OSS, B200, c, ParallelLayout(ep=8))
    gpu_s = work.moe_fwd_gemm_s / gemm_efficiency(B200) + work.moe_fwd_memory_s
    assert gpu_s > (MOE_POST_SYNC_KERNELS + 2 * 16) * KERNEL_LAUNCH_S
    assert _extra_compute_s(GPT_OSS, c, 8) == pytest.approx(c.grad_accum * 36 * DRAINED_QUEUE_S, rel=1e-6)
    # a recomputed forward syncs again
    ac = dataclasses.replace(c, activation_checkpointing=True)
    assert _extra_compute_s(GPT_OSS, ac, 8) == pytest.approx(2 * c.grad_accum * 36 * DRAINED_QUEUE_S, rel=1e-6)


def test_host_bound_layer_runs_at_the_launch_rate():
    c = cfg(num_gpus=8, seq_len=256, micro_batch_size=1, grad_accum=1)
    work = _micro_batch_work(TINY_MOE, B200, c)
    e = gemm_efficiency(B200)
    gpu_s = work.moe_fwd_gemm_s / e + work.moe_fwd_memory_s
    kernels = MOE_POST_SYNC_KERNELS + 2 * 64
    assert kernels * KERNEL_LAUNCH_S > gpu_s  # host-bound
    idle = moe_host_sync_s(work, 64, e)
    assert idle == pytest.approx(DRAINED_QUEUE_S + kernels * KERNEL_LAUNCH_S - gpu_s)
    assert _extra_compute_s(TINY_MOE, c, 1) == pytest.approx(4 * idle, rel=1e-6)


def test_dense_models_and_the_default_path_have_no_sync():
    dense = dataclasses.replace(GPT_OSS, num_experts=1, experts_per_token=1, ffn_size=4 * 2880)
    c = cfg()
    assert _extra_compute_s(dense, c, 1) == 0.0
    assert step_time(GPT_OSS, B200, c, layout=EP8).compute_s == \
        step_time(GPT_OSS, B200, c, layout=EP8, kernels=EngineKernels(moe_host_sync=False)).compute_s


def test_published_rows_map_moe_fused_false_to_the_sync():
    from benchmarks.published_throughput import row_inputs
    row = {"id": "x", "source": "megatron-bridge", "model": "gpt-oss-120b", "gpu": "b200", "num_gpus": 64,
           "strategy": "megatron", "tp": 1, "pp": 1, "ep": 8, "seq_len": 4096, "micro_batch_size": 4,
           "global_batch_size": 1280, "moe_fused": False}
    archs = {"gpt-oss-120b": {k: v for k, v in dataclasses.asdict(GPT_OSS).items()
                              if k not in ("name", "source") and v is not None}}
    assert row_inputs(row, archs)[4]["kernels"].moe_host_sync is True
    assert row_inputs(dict(row, moe_fused=True), archs)[4]["kernels"].moe_host_sync is False


def test_selective_recompute_of_norms_and_moe_act_moves_their_forward_bytes_again():
    """Megatron-Core --recompute-modules layernorm moe_act (the GPT-OSS BF16 recipes): the two norms (read +
    write h) and the experts' activation (read 2 k f, write k f) once more per layer and token, in bf16."""
    from advisor.throughput import HBM_EFFICIENCY, moe_act_norm_recompute_bytes_per_token
    h, k, f = 2880, 4, 2880
    assert moe_act_norm_recompute_bytes_per_token(GPT_OSS, 1, ("layernorm",)) == 2 * 4 * h
    assert moe_act_norm_recompute_bytes_per_token(GPT_OSS, 1, ("layernorm", "moe_act")) == 2 * (4 * h + 3 * k * f)
    c = cfg()
    on = step_time(GPT_OSS, B200, c, layout=EP8, kernels=EngineKernels(recompute_modules=("layernorm", "moe_act")))
    off = step_time(GPT_OSS, B200, c, layout=EP8)
    hbm = B200.hbm_bandwidth_tb_per_s * 1e12 * HBM_EFFICIENCY
    expected = c.grad_accum * 36 * 4 * 4096 * 2 * (4 * h + 3 * k * f) / hbm
    assert on.compute_s - off.compute_s == pytest.approx(expected, rel=1e-6)
    # full activation checkpointing recomputes everything already
    ac = dataclasses.replace(c, activation_checkpointing=True)
    assert step_time(GPT_OSS, B200, ac, layout=EP8, kernels=EngineKernels(recompute_modules=("moe_act",))).compute_s == \
        step_time(GPT_OSS, B200, ac, layout=EP8).compute_s
    with pytest.raises(ValueError, match="recompute_modules"):
        step_time(GPT_OSS, B200, c, layout=EP8, kernels=EngineKernels(recompute_modules=("mlp",)))


def test_recompute_of_the_moe_layer_runs_its_experts_all_to_alls_and_host_sync_again():
    """--recompute-modules moe (Megatron-Core: "recompute the MoE layer", normal checkpointing): every MoE layer's
    forward once more in backward: its experts' GEMMs, permutation / activation traffic, the dispatch and combine
    all-to-alls and the dropless dispatcher's host sync; "moe_act" beside it is part of that forward, not twice."""
    from advisor.throughput import _expert_all_to_all_s, moe_layer_recompute_s
    c = cfg()
    sync = EngineKernels(moe_host_sync=True)
    off = step_time(GPT_OSS, B200, c, layout=EP8, kernels=sync)
    on = step_time(GPT_OSS, B200, c, layout=EP8, kernels=dataclasses.replace(sync, recompute_modules=("moe",)))
    e = gemm_efficiency(B200)
    work = _micro_batch_work(GPT_OSS, B200, c, ParallelLayout(ep=8))
    a2a_fwd = 2 * _expert_all_to_all_s(GPT_OSS, B200, c, EP8)
    host = moe_host_sync_s(work, 128 // 8, e, a2a_fwd)
    per_layer = work.moe_fwd_gemm_s / e + work.moe_fwd_memory_s + a2a_fwd + host
    assert moe_layer_recompute_s(work, e, a2a_fwd, host) == pytest.approx(per_layer)
    assert on.compute_s - off.compute_s == pytest.approx(c.grad_accum * 36 * per_layer, rel=1e-9)
    both = step_time(GPT_OSS, B200, c, layout=EP8,
                     kernels=dataclasses.replace(sync, recompute_modules=("moe", "moe_act")))
    assert both.compute_s == pytest.approx(on.compute_s, rel=1e-12)
    # a dense model has no MoE layer to recompute
    dense = dataclasses.replace(GPT_OSS, num_experts=1, experts_per_token=1)
    assert step_time(dense, B200, c, kernels=EngineKernels(recompute_modules=("moe",))).compute_s == \
        step_time(dense, B200, c).compute_s
