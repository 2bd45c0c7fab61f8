"""MoE parallel layouts: FSDP with expert parallel (NeMo AutoModel's MoE parallelizer shards the experts only over
the "ep_shard" ranks, dp / ep) and expert tensor parallel (Megatron-Core's --expert-tensor-parallel-size, MoE
parallel folding). Each test fails without its term."""
import pytest

from advisor.architecture import expert_param_count, param_count
from advisor.catalog import load_catalog
from advisor.models import TrainConfig
from advisor.specs import ModelSpec
from advisor.step_options import ParallelLayout
from advisor.units import GB
from advisor.throughput import (LINK_EFFICIENCY, TP_LINK_EFFICIENCY, _expert_all_to_all_s, _micro_batch_work,
                                _tensor_parallel_comm_s, group_link_bytes_per_s, link_bytes_per_s, step_time)

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


# ---- expert tensor parallel (Megatron-Core --expert-tensor-parallel-size, MoE parallel folding)

def megatron(**kw):
    base = dict(num_gpus=64, strategy="megatron", seq_len=4096, micro_batch_size=1, grad_accum=8,
                activation_checkpointing=False, tp=2)
    base.update(kw)
    return TrainConfig(**base)


def test_etp_default_is_tp():
    """etp None and etp = tp price the same step (the experts split as the dense layers)."""
    c = megatron()
    a = step_time(QWEN3_30B, H100, c, layout=ParallelLayout(ep=8))
    b = step_time(QWEN3_30B, H100, c, layout=ParallelLayout(ep=8, etp=2))
    assert a == b


def test_etp_must_be_a_positive_degree():
    with pytest.raises(ValueError, match="etp"):
        ParallelLayout(ep=8, etp=0)


def test_etp1_experts_see_the_sequence_parallel_share_whole():
    """ETP 1 under TP 2: each GPU's experts get its seq / tp tokens' routed copies (x ep) through the whole ffn, the
    expert GEMM shapes of TP 1 at half the tokens per GPU."""
    folded = _micro_batch_work(QWEN3_30B, H100, megatron(micro_batch_size=2), ParallelLayout(ep=8, etp=1))
    tp1 = _micro_batch_work(QWEN3_30B, H100, megatron(micro_batch_size=1, tp=1), ParallelLayout(ep=8))
    assert folded.moe_fwd_gemm_s == pytest.approx(tp1.moe_fwd_gemm_s, rel=1e-12)
    split = _micro_batch_work(QWEN3_30B, H100, megatron(micro_batch_size=2), ParallelLayout(ep=8))
    assert folded.moe_fwd_gemm_s != split.moe_fwd_gemm_s  # ffn / 2 on every token: other shapes


def test_etp1_all_to_all_moves_the_sequence_parallel_share_on_nvlink():
    """TP 2 x EP 8 is 16 GPUs, across nodes when the experts split by tp; with ETP 1 the EP 8 group is 8 GPUs of a
    node and each GPU dispatches seq / tp tokens."""
    c = megatron()
    routed = 4096 * 8 * 2048 * 2
    nvlink = H100.intra_node_bandwidth_gb_per_s * GB * TP_LINK_EFFICIENCY
    folded = _expert_all_to_all_s(QWEN3_30B, H100, c, ParallelLayout(ep=8, etp=1))
    assert folded == pytest.approx(routed / 2 * 7 / 8 / nvlink, rel=1e-12)
    assert _expert_all_to_all_s(QWEN3_30B, H100, c, ParallelLayout(ep=8)) > 2 * folded  # whole batch, network


def test_etp1_leaves_only_the_attention_blocks_tp_collectives():
    c = megatron()
    split = _tensor_parallel_comm_s(QWEN3_30B, H100, c, ParallelLayout(ep=8, tp_overlap=0.0))
    folded = _tensor_parallel_comm_s(QWEN3_30B, H100, c, ParallelLayout(ep=8, etp=1, tp_overlap=0.0))
    assert folded == pytest.approx(split / 2, rel=1e-12)


def test_etp1_expert_gradients_sync_over_dp_tp_over_ep_ranks():
    """64 GPUs, TP 2, EP 8, ETP 1: 32 data-parallel ranks; each expert shard (1/8 of the experts, unsplit) is held by
    32 x 2 / 8 = 8 ranks, one per node (rank order etp-ep-edp)."""
    c = megatron()
    st = step_time(QWEN3_30B, H100, c, layout=ParallelLayout(ep=8, etp=1))
    experts = 2 * expert_param_count(QWEN3_30B)
    dense = 2 * param_count(QWEN3_30B) - experts
    dp_link = link_bytes_per_s(H100, c) * LINK_EFFICIENCY
    e_link = group_link_bytes_per_s(H100, c, 1) * LINK_EFFICIENCY
    want = 2 * dense / 2 * 31 / 32 / dp_link + 2 * experts / 8 * 7 / 8 / e_link
    assert st.comm_s == pytest.approx(want, rel=1e-9)
