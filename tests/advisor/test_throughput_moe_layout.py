"""MoE parallel layouts: FSDP with expert parallel (NeMo AutoModel's MoE parallelizer shards the experts only over
the "ep_shard" ranks, dp / ep) and expert tensor parallel (Megatron-Core's --expert-tensor-parallel-size, MoE
parallel folding). Each test fails without its term."""
import dataclasses

import pytest

from advisor.architecture import expert_param_count, param_count
from advisor.catalog import load_catalog
from advisor.models import TrainConfig
from advisor.specs import ModelSpec
from advisor.step_options import ParallelLayout
from advisor.throughput import LINK_EFFICIENCY, group_link_bytes_per_s, link_bytes_per_s, step_time

H100 = load_catalog().gpus["h100-sxm"]
# qwen3-30b-a3b (config.json): 48 layers, hidden 2048, 32 x 128 q heads, 4 kv heads, 128 experts top-8 of ffn 768
QWEN3_30B = ModelSpec(name="qwen3-30b-a3b", family="generic", source="config.json", hidden_size=2048, num_layers=48,
                      num_heads=32, num_kv_heads=4, head_dim=128, ffn_size=768, ffn_kind="gated", vocab_size=151936,
                      max_context=40960, num_experts=128, experts_per_token=8)


def fsdp(**kw):
    base = dict(num_gpus=8, strategy="fsdp", seq_len=4096, micro_batch_size=4, grad_accum=4,
                activation_checkpointing=True)
    base.update(kw)
    return TrainConfig(**base)


def test_fsdp_with_ep_equal_to_dp_moves_no_expert_bytes():
    """EP 8 on 8 FSDP ranks: each rank owns its 16 experts alone, so only the dense part is gathered and
    reduce-scattered every micro-batch (AutoModel: experts left out of the block's fully_shard, no ep_shard mesh)."""
    c = fsdp()
    st = step_time(QWEN3_30B, H100, c, layout=ParallelLayout(ep=8))
    dense = param_count(QWEN3_30B) - expert_param_count(QWEN3_30B)
    link = link_bytes_per_s(H100, c) * LINK_EFFICIENCY
    want = (2 * 2 * dense + 2 * dense) * c.grad_accum * 7 / 8 / link
    assert st.comm_s == pytest.approx(want, rel=1e-9)


def test_fsdp_with_ep_shards_the_local_experts_over_dp_over_ep_ranks():
    """EP 4 on 8 FSDP ranks: the dense part over 8 ranks, each rank's 1/4 of the experts over the 2 ep_shard
    ranks holding the same experts."""
    c = fsdp()
    st = step_time(QWEN3_30B, H100, c, layout=ParallelLayout(ep=4))
    experts = expert_param_count(QWEN3_30B)
    dense = param_count(QWEN3_30B) - experts
    link = link_bytes_per_s(H100, c) * LINK_EFFICIENCY
    e_link = group_link_bytes_per_s(H100, c, 2) * LINK_EFFICIENCY
    want = 6 * dense * c.grad_accum * 7 / 8 / link + 6 * experts / 4 * c.grad_accum * 1 / 2 / e_link
    assert st.comm_s == pytest.approx(want, rel=1e-9)
    assert st.comm_s < step_time(QWEN3_30B, H100, c).comm_s  # ep 1: every parameter over every rank
