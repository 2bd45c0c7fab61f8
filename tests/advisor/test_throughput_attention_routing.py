"""Two engine choices that change a step's time at the same layout (advisor.step_options.EngineKernels):
the attention kernel family (causal attention's time against its non-causal FLOP count) and the routing
imbalance of a dropless MoE run (the busiest expert-parallel rank's load). Each test fails without the term."""
import dataclasses

import pytest

from advisor.catalog import load_catalog
from advisor.models import TrainConfig
from advisor.specs import ModelSpec
from advisor.step_options import EngineKernels, ParallelLayout
from advisor.throughput import (ATTENTION_RELATIVE_EFFICIENCY, CAUSAL_ATTENTION_TIME_FRACTION, TFLOP,
                                _expert_all_to_all_s, _micro_batch_work, gemm_efficiency, step_time,
                                sustained_hbm_bytes_per_s)

H100 = load_catalog().gpus["h100-sxm"]
QWEN3_235B = ModelSpec(name="qwen3-235b-a22b", family="generic", source="config.json", hidden_size=4096, num_layers=94,
                       num_heads=64, num_kv_heads=4, head_dim=128, ffn_size=1536, ffn_kind="gated", vocab_size=151936,
                       max_context=131072, num_experts=128, experts_per_token=8)
EP8 = ParallelLayout(ep=8, etp=1)  # the Model Zoo's Qwen3-235B layout: EP 8, expert tensor parallel 1


def cfg(**kw):
    base = dict(num_gpus=256, strategy="megatron", seq_len=16384, micro_batch_size=1, grad_accum=32, tp=4, pp=8,
                activation_checkpointing=False)
    base.update(kw)
    return TrainConfig(**base)


def test_te_fused_attention_runs_causal_attention_at_half_the_non_causal_time():
    c = cfg()
    flash = _micro_batch_work(QWEN3_235B, H100, c, EP8, EngineKernels(attention_kernel="flash"))
    te = _micro_batch_work(QWEN3_235B, H100, c, EP8, EngineKernels(attention_kernel="te-fused"))
    assert CAUSAL_ATTENTION_TIME_FRACTION["te-fused"] == 0.5
    q = 64 * 128
    attn_fwd = 4 * 16384 * 16384 * q / 4  # non-causal FLOPs of the core, this GPU's tp share
    per_kind = {k: 3 * attn_fwd * f / (H100.peak_bf16_dense_tflops * TFLOP * ATTENTION_RELATIVE_EFFICIENCY)
                for k, f in CAUSAL_ATTENTION_TIME_FRACTION.items()}
    assert flash.layer_gemm_s - te.layer_gemm_s == pytest.approx(per_kind["flash"] - per_kind["te-fused"], rel=1e-9)
    assert te.layer_memory_s == flash.layer_memory_s and te.moe_fwd_gemm_s == flash.moe_fwd_gemm_s
    layout = ParallelLayout(ep=8, etp=1, pp_interleave=4)
    slow = step_time(QWEN3_235B, H100, c, layout=layout)
    fast = step_time(QWEN3_235B, H100, c, layout=layout, kernels=EngineKernels(attention_kernel="te-fused"))
    assert fast.step_s < slow.step_s


def test_routing_imbalance_loads_the_busiest_ranks_experts_permutation_and_all_to_all():
    c = cfg(seq_len=4096)
    even = _micro_batch_work(QWEN3_235B, H100, c, EP8)
    busy = _micro_batch_work(QWEN3_235B, H100, c, EP8, EngineKernels(moe_routing_imbalance=1.5))
    assert busy.moe_fwd_memory_s == pytest.approx(1.5 * even.moe_fwd_memory_s, rel=1e-12)
    # 1.5x the tokens in each expert GEMM: 1.5x the FLOPs at a slightly better shape
    assert 1.35 * even.moe_fwd_gemm_s < busy.moe_fwd_gemm_s < 1.5 * even.moe_fwd_gemm_s
    assert busy.head_gemm_s == even.head_gemm_s
    # one stage (no bubble): the step's extra compute is exactly the busiest rank's extra expert work + all-to-alls
    c1 = cfg(seq_len=4096, num_gpus=32, pp=1)
    even, busy = (_micro_batch_work(QWEN3_235B, H100, c1, EP8, EngineKernels(moe_routing_imbalance=x))
                  for x in (1.0, 1.5))
    layout = ParallelLayout(ep=8, etp=1)
    one = step_time(QWEN3_235B, H100, c1, layout=layout)
    loaded = step_time(QWEN3_235B, H100, c1, layout=layout, kernels=EngineKernels(moe_routing_imbalance=1.5))
    e = gemm_efficiency(H100)
    a2a_extra = 4 * 0.5 * _expert_all_to_all_s(QWEN3_235B, H100, c1, layout)
    per_layer = (busy.layer_gemm_s - even.layer_gemm_s) / e + (busy.layer_memory_s - even.layer_memory_s) + a2a_extra
    assert loaded.compute_s - one.compute_s == pytest.approx(c1.grad_accum * 94 * per_layer, rel=1e-9)
    dense = dataclasses.replace(QWEN3_235B, num_experts=1, experts_per_token=1)
    assert step_time(dense, H100, c, kernels=EngineKernels(moe_routing_imbalance=1.5)).step_s == \
        step_time(dense, H100, c).step_s


def test_a_sliding_window_layer_costs_its_band_whatever_the_causal_fraction():
    """Only full (causal) layers take the kernel's causal fraction; a band of w keys is 2 w keys of tile work."""
    c = cfg(seq_len=4096, num_gpus=8, tp=1, pp=1)
    banded = dataclasses.replace(QWEN3_235B, num_experts=1, experts_per_token=1, sliding_window=128,
                                 sliding_window_layers=94)  # every layer banded
    flash = _micro_batch_work(banded, H100, c, kernels=EngineKernels(attention_kernel="flash"))
    te = _micro_batch_work(banded, H100, c, kernels=EngineKernels(attention_kernel="te-fused"))
    assert te.layer_gemm_s == pytest.approx(flash.layer_gemm_s, rel=1e-12)
    full = dataclasses.replace(banded, sliding_window=None, sliding_window_layers=0)
    gap = _micro_batch_work(full, H100, c, kernels=EngineKernels(attention_kernel="flash")).layer_gemm_s - \
        _micro_batch_work(full, H100, c, kernels=EngineKernels(attention_kernel="te-fused")).layer_gemm_s
    assert gap > 0


def test_deepep_sends_a_token_once_per_destination_rank():
    """DeepEP's dispatch sends a token to each rank holding any of its experts (get_dispatch_layout's
    is_token_in_rank), not once per routed expert: fewer copies on the wire and no sort by local expert."""
    from advisor.throughput import expert_parallel_copies_per_token
    assert expert_parallel_copies_per_token(QWEN3_235B, 8, "alltoall") == 8
    assert expert_parallel_copies_per_token(QWEN3_235B, 8, "deepep") == pytest.approx(5.339, abs=1e-3)
    assert expert_parallel_copies_per_token(QWEN3_235B, 32, "deepep") == pytest.approx(7.359, abs=1e-3)
    assert expert_parallel_copies_per_token(QWEN3_235B, 128, "deepep") == pytest.approx(8.0)  # one expert per rank
    assert expert_parallel_copies_per_token(QWEN3_235B, 1, "deepep") == 8
    c = cfg(seq_len=4096)
    layout = ParallelLayout(ep=8, etp=1)
    a2a, deep = (_expert_all_to_all_s(QWEN3_235B, H100, c, layout, d) for d in ("alltoall", "deepep"))
    assert deep == pytest.approx(a2a * 5.339 / 8, rel=1e-3)
    even = _micro_batch_work(QWEN3_235B, H100, c, EP8)
    dispatched = _micro_batch_work(QWEN3_235B, H100, c, EP8, EngineKernels(moe_dispatcher="deepep"))
    h, k, r = 4096, 8, expert_parallel_copies_per_token(QWEN3_235B, 8, "deepep")
    tokens = 4096
    hbm = sustained_hbm_bytes_per_s(H100)
    saved_bytes = tokens * 2 * ((7 * k * h + h) - ((3 * r + 2 * k) * h + h)) / 4  # tp 4
    assert even.moe_fwd_memory_s - dispatched.moe_fwd_memory_s == pytest.approx(saved_bytes / hbm, rel=1e-9)
    assert dispatched.moe_fwd_gemm_s == even.moe_fwd_gemm_s
    with pytest.raises(ValueError, match="moe_dispatcher"):
        EngineKernels(moe_dispatcher="hybridep")


def test_published_rows_map_attention_dispatcher_routing_and_tp_overlap():
    """benchmarks/published_throughput.row_inputs: Megatron-Core sources and `attention: te` rows run TE's fused
    attention, `moe_dispatcher: deepep` one copy per rank, `routing: dropless` the given (or derived) imbalance,
    `tp_comm_overlap: false` exposed TP traffic; everything else keeps the defaults."""
    from benchmarks.published_throughput import row_inputs
    archs = {"qwen3-235b-a22b": {k: v for k, v in dataclasses.asdict(QWEN3_235B).items()
                                 if k not in ("name", "source") and v is not None}}
    row = {"id": "x", "source": "torchtitan-2412", "model": "qwen3-235b-a22b", "gpu": "h100-sxm", "num_gpus": 256,
           "strategy": "megatron", "tp": 4, "pp": 8, "ep": 8, "etp": 1, "seq_len": 4096, "micro_batch_size": 1,
           "grad_accum": 8}
    plain = row_inputs(row, archs)[4]
    assert plain["kernels"] == EngineKernels() and plain["layout"].tp_overlap is None
    assert row_inputs(dict(row, attention="te"), archs)[4]["kernels"].attention_kernel == "te-fused"
    assert row_inputs(dict(row, source="megatron-moe-modelzoo"), archs)[4]["kernels"].attention_kernel == "te-fused"
    assert row_inputs(dict(row, moe_dispatcher="deepep"), archs)[4]["kernels"].moe_dispatcher == "deepep"
    assert row_inputs(dict(row, moe_dispatcher="alltoall"), archs)[4]["kernels"].moe_dispatcher == "alltoall"
    dropless = row_inputs(dict(row, routing="dropless"), archs, routing_imbalance=1.3)[4]["kernels"]
    assert dropless.moe_routing_imbalance == 1.3
    assert row_inputs(dict(row, tp_comm_overlap=False), archs)[4]["layout"].tp_overlap == 0.0
