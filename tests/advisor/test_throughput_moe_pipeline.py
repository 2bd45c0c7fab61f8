"""Issue 14, the Megatron group: the busiest pipeline stage (LM head on the last stage, Llama 3's
balanced ends), interleaving's extra boundary crossings, and the MoE terms (token permutation traffic,
sliding-window attention, the expert-parallel all-to-all's exposure, the expert-gradient sync over the
expert-data-parallel group). Each test fails without its term."""
import dataclasses

import pytest

from advisor.architecture import expert_param_count, param_count, resolve_model
from advisor.catalog import load_catalog
from advisor.models import TrainConfig
from advisor.specs import ModelSpec
from advisor.throughput import (HBM_EFFICIENCY, LINK_EFFICIENCY, _micro_batch_work, busiest_stage_layers,
                                compute_time_per_micro_batch_s, gemm_efficiency, group_link_bytes_per_s,
                                link_bytes_per_s, step_time)
from advisor.step_options import ParallelLayout

EP8 = ParallelLayout(ep=8)  # the GPT-OSS recipes' expert parallel degree
CAT = load_catalog()
H100 = CAT.gpus["h100-sxm"]
B200 = CAT.gpus["b200"]
LLAMA405 = resolve_model("llama-3.1-405b")
# gpt-oss-120b (config.json): 36 layers, hidden 2880, 64 x 64 q heads, 8 kv heads, 128 experts top-4 of
# ffn 2880, vocab 201088, every second layer a 128-token sliding window
GPT_OSS = ModelSpec(name="gpt-oss-120b", family="generic", source="config.json", hidden_size=2880, num_layers=36,
                    num_heads=64, num_kv_heads=8, head_dim=64, ffn_size=2880, ffn_kind="gated", vocab_size=201088,
                    max_context=131072, num_experts=128, experts_per_token=4, sliding_window=128,
                    sliding_window_layers=18)
FULL_ATTENTION = dataclasses.replace(GPT_OSS, sliding_window=None, sliding_window_layers=0)
# its dense twin: the same active FFN width in one MLP (4 experts of 2880 -> 11520)
DENSE_TWIN = dataclasses.replace(FULL_ATTENTION, num_experts=1, experts_per_token=1, ffn_size=4 * 2880)


def cfg(**kw):
    base = dict(num_gpus=64, strategy="megatron", seq_len=4096, micro_batch_size=1, grad_accum=8,
                activation_checkpointing=False)
    base.update(kw)
    return TrainConfig(**base)


def test_busiest_stage_layers():
    assert busiest_stage_layers(126, 1) == (126, 126)
    assert busiest_stage_layers(36, 4) == (9, 9)
    assert busiest_stage_layers(126, 16) == (8, 8)  # ceil(126 / 16): Megatron's even split cannot go lower
    assert busiest_stage_layers(126, 16, layers_off_ends=1) == (8, 7)  # Llama 3: (126 + 2) / 16, ends one fewer


def test_last_stage_carries_the_lm_head():
    """A 201k vocabulary at hidden 2880 is ~4.6 active layers of GEMM: with pp 4 the last stage's 9 layers
    + the head set the pace, not a quarter of the whole model."""
    c1, c4 = cfg(num_gpus=8, pp=1), cfg(num_gpus=32, pp=4)
    work = _micro_batch_work(GPT_OSS, H100, c4, ParallelLayout(ep=8))
    whole = compute_time_per_micro_batch_s(GPT_OSS, H100, c1, ParallelLayout(ep=8))
    stage = compute_time_per_micro_batch_s(GPT_OSS, H100, c4, ParallelLayout(ep=8))
    head = work.head_gemm_s / gemm_efficiency(H100) + work.head_memory_s
    assert stage == pytest.approx(whole / 4 + head * 3 / 4, rel=1e-9)
    assert stage > 1.2 * whole / 4


def test_llama3_balanced_ends_take_the_head_off_the_critical_stage():
    c = cfg(num_gpus=128, tp=8, pp=16, seq_len=8192)
    plain = compute_time_per_micro_batch_s(LLAMA405, H100, c)
    balanced = compute_time_per_micro_batch_s(LLAMA405, H100, c, ParallelLayout(pp_layers_off_ends=1))
    assert balanced < plain
    work = _micro_batch_work(LLAMA405, H100, c)
    per_layer = work.layer_gemm_s / gemm_efficiency(H100) + work.layer_memory_s
    assert balanced == pytest.approx(8 * per_layer, rel=1e-9)  # 8 layers, the head on a lighter stage


def test_interleaving_crosses_v_times_the_stage_boundaries():
    c = cfg(num_gpus=128, tp=8, pp=16, seq_len=8192, grad_accum=32)
    v1 = step_time(LLAMA405, H100, c)
    v8 = step_time(LLAMA405, H100, c, layout=ParallelLayout(pp_interleave=8))
    per1 = (v1.compute_s - v1.bubble_s) / 32
    per8 = (v8.compute_s - v8.bubble_s) / 32
    act = 1 * 8192 * LLAMA405.hidden_size * 2 / 8
    bw = H100.inter_node_bandwidth_gbit_per_s * 1e9 / 8 / H100.gpus_per_node
    assert per8 - per1 == pytest.approx(2 * act / bw * 7, rel=1e-6)
    assert v8.bubble_s == pytest.approx(per8 * 15 / 8, rel=1e-9)


def test_moe_token_permutation_traffic_over_its_dense_twin():
    """Same active FFN width and attention: the MoE layer's memory-bound time exceeds its dense twin's by
    the permute / sort / unsort / unpermute bytes (3 passes: forward, backward x2)."""
    c = cfg(num_gpus=8)
    moe = _micro_batch_work(FULL_ATTENTION, H100, c, ParallelLayout(ep=8))
    dense = _micro_batch_work(DENSE_TWIN, H100, c)
    k, h = 4, 2880
    permute_bytes = 2 * (2 * k * h + 4 * k * h + k * h + h)
    hbm = H100.hbm_bandwidth_tb_per_s * 1e12 * HBM_EFFICIENCY
    assert moe.layer_memory_s - dense.layer_memory_s == pytest.approx(3 * permute_bytes * 4096 / hbm, rel=1e-9)
    # and the whole micro-batch is slower than the dense twin's (router GEMM, smaller expert GEMMs, traffic)
    assert compute_time_per_micro_batch_s(FULL_ATTENTION, H100, c, ParallelLayout(ep=8)) > \
        compute_time_per_micro_batch_s(DENSE_TWIN, H100, c)


def test_sliding_window_layers_do_banded_attention():
    c = cfg(num_gpus=8, seq_len=8192)
    full = _micro_batch_work(FULL_ATTENTION, H100, c, ParallelLayout(ep=8))
    banded = _micro_batch_work(GPT_OSS, H100, c, ParallelLayout(ep=8))
    q = 64 * 64
    attn_full = 3 * 4 * 8192 * 8192 * q / (H100.peak_bf16_dense_tflops * 1e12 * 0.75)
    # half the layers keep 2 x 128 of 8192 keys per query
    assert full.layer_gemm_s - banded.layer_gemm_s == pytest.approx(attn_full * 0.5 * (1 - 256 / 8192), rel=1e-9)
    assert full.layer_memory_s == banded.layer_memory_s


def test_expert_all_to_all_is_not_hidden_by_tp_comm_overlap():
    c = cfg(num_gpus=64, grad_accum=4)
    plain = step_time(GPT_OSS, B200, c, layout=ParallelLayout(ep=8, tp_overlap=0.0))
    tp_overlapped = step_time(GPT_OSS, B200, c, layout=ParallelLayout(ep=8, tp_overlap=0.5))
    assert plain.step_s == pytest.approx(tp_overlapped.step_s, rel=1e-12)  # tp 1: nothing for TP overlap to hide
    a2a_hidden = step_time(GPT_OSS, B200, c, layout=ParallelLayout(ep=8, ep_overlap=1.0))
    assert a2a_hidden.compute_s < plain.compute_s


def test_expert_gradients_sync_over_the_expert_data_parallel_group():
    """With ep 8 on 8-GPU nodes each GPU holds 1/8 of the experts; their reduce-scatter + all-gather run over
    the 8 ranks holding the same experts, one per node: a NIC's share of the network."""
    c = cfg(num_gpus=64, grad_accum=4)
    st = step_time(GPT_OSS, B200, c, layout=EP8)
    experts = 2 * expert_param_count(GPT_OSS)
    dense = 2 * param_count(GPT_OSS) - experts
    dp_link = link_bytes_per_s(B200, c) * LINK_EFFICIENCY
    edp_link = group_link_bytes_per_s(B200, c, 1) * LINK_EFFICIENCY
    want = 2 * dense * 63 / 64 / dp_link + 2 * experts / 8 * 7 / 8 / edp_link
    assert st.comm_s == pytest.approx(want, rel=1e-9)
    assert edp_link == pytest.approx(dp_link / 8)
