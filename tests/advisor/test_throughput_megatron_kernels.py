"""Megatron-Core paths the GPT-OSS BF16 recipes run (advisor.throughput): the eager rotary embedding (YaRN's
mscale != 1 is refused by TE's fused RoPE), the fused cross-entropy kernels' bytes per logit (native: four
torch.compile'd functions over fp32 logits; te: Transformer Engine's Triton kernels over bf16 logits), and the
distributed optimizer's one-micro-batch overlap window. Each test fails without its term or with another count."""
import dataclasses

import pytest

from advisor.catalog import load_catalog
from advisor.models import TrainConfig
from advisor.specs import ModelSpec
from advisor.throughput import (HBM_EFFICIENCY, HEAD_BYTES_PER_LOGIT, NATIVE_CE_BYTES_PER_LOGIT,
                                TE_CE_BYTES_PER_LOGIT, step_time, unfused_rope_extra_bytes_per_token)
from advisor.step_options import EngineKernels, ParallelLayout

EP8 = ParallelLayout(ep=8)  # the GPT-OSS recipes' expert parallel degree
B200 = load_catalog().gpus["b200"]
H100 = load_catalog().gpus["h100-sxm"]
GPT_OSS = ModelSpec(name="gpt-oss-120b", family="generic", source="config.json", hidden_size=2880, num_layers=36,
                    num_heads=64, num_kv_heads=8, head_dim=64, ffn_size=2880, ffn_kind="gated", vocab_size=201088,
                    max_context=131072, num_experts=128, experts_per_token=4, sliding_window=128,
                    sliding_window_layers=18)


def cfg(**kw):
    base = dict(num_gpus=64, strategy="megatron", seq_len=4096, micro_batch_size=4, grad_accum=5,
                activation_checkpointing=False)
    base.update(kw)
    return TrainConfig(**base)


def _hbm(gpu):
    return gpu.hbm_bandwidth_tb_per_s * 1e12 * HBM_EFFICIENCY


def test_eager_rope_moves_12_elements_forward_and_10_backward_per_rotated_element():
    """Against the fused kernel's 2 forward + 4 backward: 16 more bf16 elements per element of q and k
    ((64 + 8) heads x 64), 26 with the forward recomputed; split by tp like q and k."""
    rotated = (64 + 8) * 64
    assert unfused_rope_extra_bytes_per_token(GPT_OSS, 1, False) == 2 * 16 * rotated
    assert unfused_rope_extra_bytes_per_token(GPT_OSS, 1, True) == 2 * 26 * rotated
    assert unfused_rope_extra_bytes_per_token(GPT_OSS, 2, False) == 2 * 16 * rotated / 2


def test_eager_rope_costs_every_layer_of_the_busiest_stage():
    c = cfg()
    on = step_time(GPT_OSS, B200, c, layout=EP8, kernels=EngineKernels(unfused_rope=True))
    off = step_time(GPT_OSS, B200, c, layout=EP8)
    expected = c.grad_accum * 36 * 4 * 4096 * 2 * 16 * (64 + 8) * 64 / _hbm(B200)
    assert on.compute_s - off.compute_s == pytest.approx(expected, rel=1e-6)
    # pp 4: 9 layers per stage, 5 micro-batches + 3 bubble slots of the slowest stage
    c4 = cfg(micro_batch_size=1, pp=4)
    on4 = step_time(GPT_OSS, H100, c4, layout=EP8, kernels=EngineKernels(unfused_rope=True))
    off4 = step_time(GPT_OSS, H100, c4, layout=EP8)
    per_slot = 9 * 4096 * 2 * 16 * (64 + 8) * 64 / _hbm(H100)
    assert on4.compute_s - off4.compute_s == pytest.approx((5 + 3) * per_slot, rel=1e-6)


def test_cross_entropy_kernels_move_their_bytes_per_logit():
    """native (Megatron-Core's torch.compile'd functions over fp32 logits): upcast + max (2 + 4), subtract + exp
    in place (4 + 4), divide in place (4 + 4), backward update written back + bf16 cast (4 + 4 + 2) = 32;
    te (Transformer Engine's Triton kernels over the bf16 logits): online softmax (2), loss + in-place
    gradient (2 + 2), backward per-token scaling (2 + 2) = 10; against the head's generic 16."""
    assert HEAD_BYTES_PER_LOGIT == 16
    assert NATIVE_CE_BYTES_PER_LOGIT == 32
    assert TE_CE_BYTES_PER_LOGIT == 10
    c = cfg()
    off = step_time(GPT_OSS, B200, c, layout=EP8)
    for impl, per_logit in (("native", 32), ("te", 10)):
        on = step_time(GPT_OSS, B200, c, layout=EP8, kernels=EngineKernels(cross_entropy_impl=impl))
        expected = c.grad_accum * 4 * 4096 * 201088 * (per_logit - 16) / _hbm(B200)
        assert on.compute_s - off.compute_s == pytest.approx(expected, rel=1e-6)
    # with full checkpointing the loss is still computed once per micro-batch
    ac = dataclasses.replace(c, activation_checkpointing=True)
    d_ac = (step_time(GPT_OSS, B200, ac, layout=EP8, kernels=EngineKernels(cross_entropy_impl="native")).compute_s
            - step_time(GPT_OSS, B200, ac, layout=EP8).compute_s)
    assert d_ac == pytest.approx(c.grad_accum * 4 * 4096 * 201088 * 16 / _hbm(B200), rel=1e-6)
    with pytest.raises(ValueError, match="cross_entropy_impl"):
        step_time(GPT_OSS, B200, c, layout=EP8, kernels=EngineKernels(cross_entropy_impl="liger"))


def test_cross_entropy_lands_on_the_last_pipeline_stage_only_when_it_is_the_busiest():
    """pp 4 of 36 layers: every stage holds 9 layers, the last also the head, so the logit traffic paces the
    pipeline; with 6 layers taken off each end (inner stages 12 layers, the last 6 + the head) the inner
    stages pace it and the loss kernel's traffic hides."""
    c4 = cfg(micro_batch_size=1, pp=4)
    per_slot = 4096 * 201088 * 16 / _hbm(H100)
    d = (step_time(GPT_OSS, H100, c4, layout=EP8, kernels=EngineKernels(cross_entropy_impl="native")).compute_s
         - step_time(GPT_OSS, H100, c4, layout=EP8).compute_s)
    assert d == pytest.approx((5 + 3) * per_slot, rel=1e-6)
    off6 = ParallelLayout(ep=8, pp_layers_off_ends=6)
    off_ends = (step_time(GPT_OSS, H100, c4, layout=off6, kernels=EngineKernels(cross_entropy_impl="native")).compute_s
                - step_time(GPT_OSS, H100, c4, layout=off6).compute_s)
    assert off_ends == pytest.approx(0.0, abs=1e-9)


def test_defaults_are_the_fused_kernels():
    c = cfg()
    assert step_time(GPT_OSS, B200, c, layout=EP8).step_s == \
        step_time(GPT_OSS, B200, c, layout=EP8,
                  kernels=EngineKernels(unfused_rope=False, cross_entropy_impl=None)).step_s


def test_published_rows_map_rope_fusion_and_cross_entropy_impl():
    from benchmarks.published_throughput import row_inputs
    row = {"id": "x", "source": "megatron-bridge", "model": "gpt-oss-120b", "gpu": "b200", "num_gpus": 64,
           "strategy": "megatron", "tp": 1, "pp": 1, "ep": 8, "seq_len": 4096, "micro_batch_size": 4,
           "global_batch_size": 1280, "rope_fusion": False, "cross_entropy_fusion_impl": "te"}
    archs = {"gpt-oss-120b": {k: v for k, v in dataclasses.asdict(GPT_OSS).items()
                              if k not in ("name", "source") and v is not None}}
    kernels = row_inputs(row, archs)[4]["kernels"]
    assert kernels.unfused_rope is True and kernels.cross_entropy_impl == "te"
    plain = row_inputs({k: v for k, v in row.items() if k not in ("rope_fusion", "cross_entropy_fusion_impl")},
                       archs)[4]["kernels"]
    assert plain.unfused_rope is False and plain.cross_entropy_impl is None
    assert row_inputs(dict(row, cross_entropy_fusion_impl="native"), archs)[4]["kernels"].cross_entropy_impl == "native"


def test_last_micro_batch_window_exposes_what_one_micro_batch_cannot_hide():
    from advisor.throughput import COMM_OVERLAP_EFFICIENCY, last_micro_batch_overlap_s
    rest = 1 - COMM_OVERLAP_EFFICIENCY
    # RS 0.5 s behind a 0.4 s backward, AG 0.5 s behind a 0.2 s forward: 0.1 + 0.3 s exposed, 0.6 s hidden
    assert last_micro_batch_overlap_s(3.0, 0.5, 0.5, 0.2, 0.4) == pytest.approx(3.0 + 0.4 + rest * 0.6)
    # a sync that fits its windows costs only the overlap's inefficiency
    assert last_micro_batch_overlap_s(3.0, 0.1, 0.1, 0.2, 0.4) == pytest.approx(3.0 + rest * 0.2)


def test_dp_overlap_window_on_the_b200_recipe_shape():
    """gpt-oss-120b, 64 B200, EP 8, 5 micro-batches of 4 x 4096: its experts' gradients (16 local experts,
    ~14.3 B parameters) reduce-scatter and all-gather over 8 nodes, one NIC each, ~0.5 s each way: more than
    one micro-batch's backward / forward hides, so the step grows by the part left over; with 80 micro-batches
    of 1 x 4096 on 4 pipeline stages (the H100 recipe) the sync nearly fits and little changes."""
    from advisor.throughput import COMM_OVERLAP_EFFICIENCY
    c = cfg()
    whole = step_time(GPT_OSS, B200, c, layout=EP8)
    window = step_time(GPT_OSS, B200, c, layout=EP8, kernels=EngineKernels(dp_overlap_window=True))
    per_micro = whole.compute_s / c.grad_accum
    rs = ag = whole.comm_s / 2
    fwd, bwd = per_micro / 3, 2 * per_micro / 3
    assert rs > bwd and ag > fwd
    hidden = bwd + fwd
    expected = whole.compute_s + (rs + ag - hidden) + (1 - COMM_OVERLAP_EFFICIENCY) * hidden
    assert window.step_s - whole.step_s == pytest.approx(expected - (whole.compute_s + (1 - COMM_OVERLAP_EFFICIENCY)
                                                                      * whole.comm_s), rel=1e-6)
    assert window.step_s > whole.step_s
    h = cfg(micro_batch_size=1, pp=4, grad_accum=80)
    window = EngineKernels(dp_overlap_window=True)
    grow = (step_time(GPT_OSS, H100, h, layout=EP8, kernels=window).step_s
            / step_time(GPT_OSS, H100, h, layout=EP8).step_s)
    assert 1.0 <= grow < 1.01


def test_dp_overlap_window_is_the_distributed_optimizer_only():
    """fsdp-tp (FSDP over the data-parallel ranks, every micro-batch) and the FSDP strategies keep their overlap."""
    c = cfg(strategy="fsdp-tp", tp=2)
    window = EngineKernels(dp_overlap_window=True)
    assert step_time(GPT_OSS, B200, c, layout=EP8, kernels=window).step_s == \
        step_time(GPT_OSS, B200, c, layout=EP8).step_s
    f = cfg(strategy="fsdp", num_gpus=8)
    assert step_time(GPT_OSS, B200, f, kernels=window).step_s == step_time(GPT_OSS, B200, f).step_s


def _recipe_kernels(**fields) -> EngineKernels:
    """The EngineKernels benchmarks/published_throughput.row_inputs builds for the B200 GPT-OSS recipe row + fields."""
    from benchmarks.published_throughput import row_inputs
    row = {"id": "x", "source": "megatron-bridge", "model": "gpt-oss-120b", "gpu": "b200", "num_gpus": 64,
           "strategy": "megatron", "tp": 1, "pp": 1, "ep": 8, "seq_len": 4096, "micro_batch_size": 4,
           "global_batch_size": 1280, **fields}
    archs = {"gpt-oss-120b": {k: v for k, v in dataclasses.asdict(GPT_OSS).items()
                              if k not in ("name", "source") and v is not None}}
    return row_inputs(row, archs)[4]["kernels"]


def test_published_rows_map_dp_overlap():
    assert _recipe_kernels(dp_overlap="last-micro-batch").dp_overlap_window is True
    assert _recipe_kernels(dp_overlap="whole-step").dp_overlap_window is False


def test_fp32_gradient_reduce_moves_twice_the_gradient_bytes():
    """grad_reduce_bytes 4 (Megatron-LM's --bf16 default, Megatron-Bridge's grad_reduce_in_fp32=True): the distributed
    optimizer's reduce-scatter moves fp32 gradients, its all-gather bf16 parameters: (4 + 2) / (2 + 2) = 1.5 x the
    data-parallel traffic, dense and expert alike; the window then hides a reduce-scatter of 2/3 of it."""
    from advisor.throughput import COMM_OVERLAP_EFFICIENCY
    c = cfg()
    bf16 = step_time(GPT_OSS, B200, c, layout=EP8)
    fp32 = step_time(GPT_OSS, B200, c, layout=EP8, kernels=EngineKernels(grad_reduce_bytes=4))
    assert fp32.comm_s == pytest.approx(1.5 * bf16.comm_s, rel=1e-12) and bf16.comm_s > 0
    assert fp32.compute_s == bf16.compute_s
    window = step_time(GPT_OSS, B200, c, layout=EP8, kernels=EngineKernels(grad_reduce_bytes=4, dp_overlap_window=True))
    per_micro = bf16.compute_s / c.grad_accum
    rs, ag = fp32.comm_s * 2 / 3, fp32.comm_s / 3
    fwd, bwd = per_micro / 3, 2 * per_micro / 3
    hidden = min(rs, bwd) + min(ag, fwd)
    busy = bf16.compute_s + (rs + ag - hidden) + (1 - COMM_OVERLAP_EFFICIENCY) * hidden
    assert window.step_s - busy == pytest.approx(fp32.step_s - (max(fp32.compute_s, fp32.comm_s) + (
        1 - COMM_OVERLAP_EFFICIENCY) * min(fp32.compute_s, fp32.comm_s)), rel=1e-6)  # the same fixed overhead
    # FSDP: gathers stay bf16, only the reduce-scatter doubles
    f = cfg(strategy="fsdp", num_gpus=8, micro_batch_size=1, grad_accum=1)
    dense = dataclasses.replace(GPT_OSS, num_experts=1, experts_per_token=1)
    one, two = (step_time(dense, B200, f, kernels=EngineKernels(grad_reduce_bytes=b)).comm_s for b in (2, 4))
    assert two == pytest.approx(one * (4 + 4) / (4 + 2), rel=1e-12)  # AG fwd + bwd (2 x 2 bytes) + RS (2 or 4)
    with pytest.raises(ValueError, match="grad_reduce_bytes must be 2 .bf16. or 4 .fp32., got 3"):
        EngineKernels(grad_reduce_bytes=3)


def test_published_rows_map_grad_reduce():
    assert _recipe_kernels(grad_reduce="fp32").grad_reduce_bytes == 4
    assert _recipe_kernels().grad_reduce_bytes == 2
