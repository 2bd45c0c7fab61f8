"""The experts' eager epilogue of Megatron-Core's BF16 TEGroupedMLP (advisor.throughput
eager_expert_epilogue_bytes_per_token): fc2's bias added per local expert outside the GEMM (_apply_bias) and the
GLU clamp before the fused activation (weighted_bias_quick_geglu_impl), priced as HBM traffic per routed token copy.
Each test fails without the term, with another byte count or with the recompute counted wrongly."""
import dataclasses

import pytest

from advisor.specs import SpecError
from advisor.step_options import EngineKernels
from advisor.throughput import (BIAS_BWD_BYTES_PER_H, BIAS_BWD_FROZEN_BYTES_PER_H, BIAS_FWD_BYTES_PER_H,
                                CLAMP_BWD_BYTES_PER_F,
                                CLAMP_FWD_BYTES_PER_F, HBM_EFFICIENCY, eager_expert_epilogue_bytes_per_token,
                                step_time)

from test_throughput_megatron_kernels import B200, EP8, GPT_OSS as GPT_OSS_PLAIN, cfg  # the B200 recipe's shape

EAGER = EngineKernels(eager_expert_epilogue=True)
GPT_OSS = GPT_OSS_PLAIN.replace(expert_bias=True, glu_clamp=7.0)  # config.json swiglu_limit 7.0, the experts' biases


def test_byte_counts_follow_the_eager_ops():
    """Clamp: two clamps + the cat forward (4 + 4 + 8 bytes per f), where-masks (8 and 14) + the chunk's cat (8)
    backward; bias: b p, t + b p and the cat forward (2 + 6 + 4 per h), two products and their sums + the split's cat
    backward (6 + 6 + 4)."""
    assert (CLAMP_FWD_BYTES_PER_F, CLAMP_BWD_BYTES_PER_F) == (4 + 4 + 8, 8 + 14 + 8)
    assert (BIAS_FWD_BYTES_PER_H, BIAS_BWD_BYTES_PER_H, BIAS_BWD_FROZEN_BYTES_PER_H) == (2 + 6 + 4, 6 + 6 + 4, 6 + 4)


def test_per_token_bytes_count_k_copies_and_the_recompute():
    k, f, h = 4, 2880, 2880
    c = cfg()
    plain = eager_expert_epilogue_bytes_per_token(GPT_OSS, c, EP8, EAGER)
    assert plain == k * ((16 + 30) * f + (12 + 16) * h)
    # moe_act re-runs the checkpointed activation, clamp included, not the bias
    act = eager_expert_epilogue_bytes_per_token(GPT_OSS, c, EP8, dataclasses.replace(EAGER, recompute_modules=("moe_act",)))
    assert act - plain == k * 16 * f
    # "moe" and full activation checkpointing re-run the whole layer's forward: clamp and bias
    whole = k * (16 * f + 12 * h)
    moe = eager_expert_epilogue_bytes_per_token(GPT_OSS, c, EP8, dataclasses.replace(EAGER, recompute_modules=("moe",)))
    assert moe - plain == whole
    ac = eager_expert_epilogue_bytes_per_token(GPT_OSS, cfg(activation_checkpointing=True), EP8,
                                               dataclasses.replace(EAGER, recompute_modules=("moe_act",)))
    assert ac - plain == whole
    # LoRA: the bias is frozen, so autograd computes only p's gradient through it (10 bytes per h, not 16)
    lora = eager_expert_epilogue_bytes_per_token(GPT_OSS, cfg(trainable="lora"), EP8, EAGER)
    assert plain - lora == k * (16 - 10) * h
    # the busiest rank's load scales the copies
    loaded = eager_expert_epilogue_bytes_per_token(GPT_OSS, c, EP8, dataclasses.replace(EAGER, moe_routing_imbalance=1.5))
    assert loaded == pytest.approx(1.5 * plain)


def test_expert_tensor_parallel_splits_f_not_h():
    """tp 2 with etp None (= tp): each GPU's experts see every token, f / 2 wide; etp 1 below tp 2: half the
    tokens (the sequence-parallel share) through whole experts."""
    k, f, h = 4, 2880, 2880
    tp2 = eager_expert_epilogue_bytes_per_token(GPT_OSS, cfg(tp=2), EP8, EAGER)
    assert tp2 == k * ((16 + 30) * f / 2 + (12 + 16) * h)
    etp1 = eager_expert_epilogue_bytes_per_token(GPT_OSS, cfg(tp=2), dataclasses.replace(EP8, etp=1), EAGER)
    assert etp1 == k / 2 * ((16 + 30) * f + (12 + 16) * h)


def test_nothing_without_the_engine_flag_or_the_architecture():
    c = cfg()
    assert eager_expert_epilogue_bytes_per_token(GPT_OSS, c, EP8, EngineKernels()) == 0.0
    plain = GPT_OSS.replace(expert_bias=False, glu_clamp=None)
    assert eager_expert_epilogue_bytes_per_token(plain, c, EP8, EAGER) == 0.0
    only_clamp = eager_expert_epilogue_bytes_per_token(GPT_OSS.replace(expert_bias=False), c, EP8, EAGER)
    assert only_clamp == 4 * (16 + 30) * 2880


def test_step_time_charges_it_on_every_layer_at_the_hbm_rate():
    c = cfg()
    on = step_time(GPT_OSS, B200, c, layout=EP8, kernels=EAGER)
    off = step_time(GPT_OSS, B200, c, layout=EP8)
    hbm = B200.hbm_bandwidth_tb_per_s * 1e12 * HBM_EFFICIENCY
    per_token = 4 * ((16 + 30) * 2880 + (12 + 16) * 2880)
    expected = c.grad_accum * 36 * 4 * 4096 * per_token / hbm
    assert on.compute_s - off.compute_s == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("changes, field", [
    ({"glu_clamp": 0.0}, "glu_clamp"),
    ({"glu_clamp": 7.0, "ffn_kind": "mlp"}, "glu_clamp"),
    ({"expert_bias": "yes"}, "expert_bias"),
    ({"expert_bias": True, "num_experts": 1, "experts_per_token": 1}, "expert_bias"),
])
def test_model_spec_refuses_impossible_values_on_their_field(changes, field):
    with pytest.raises(SpecError) as err:
        GPT_OSS.replace(**changes)
    assert err.value.field == field


def test_published_rows_on_the_unfused_path_run_the_eager_epilogue():
    """moe_fused: false (Megatron-Core's unfused TEGroupedMLP path) sets it; the data file's GPT-OSS architectures
    carry the bias and the clamp (config.json swiglu_limit 7.0), the other MoE architectures neither."""
    from benchmarks.published_throughput import ROWS, row_inputs
    import yaml
    row = {"id": "x", "source": "megatron-bridge", "model": "gpt-oss-120b", "gpu": "b200", "num_gpus": 64,
           "strategy": "megatron", "tp": 1, "pp": 1, "ep": 8, "seq_len": 4096, "micro_batch_size": 4,
           "global_batch_size": 1280}
    archs = yaml.safe_load(ROWS.read_text())["architectures"]
    assert row_inputs(dict(row, moe_fused=False), archs)[4]["kernels"].eager_expert_epilogue is True
    assert row_inputs(row, archs)[4]["kernels"].eager_expert_epilogue is False
    model = row_inputs(row, archs)[0]
    assert (model.expert_bias, model.glu_clamp) == (True, 7.0)
    qwen = row_inputs(dict(row, model="qwen3-235b-a22b", moe_fused=False), archs)[0]
    assert (qwen.expert_bias, qwen.glu_clamp) == (False, None)
