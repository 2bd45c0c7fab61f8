"""Memory by hand: bytes per parameter per strategy, activations, logits, fits."""
import dataclasses

import pytest

from advisor.architecture import param_count
from advisor.catalog import load_catalog
from advisor.estimate import estimate
from advisor.memory import (
    activation_bytes, autocast_copy_bytes, cpu_bytes_per_node, logits_bytes, memory_breakdown, model_state_bytes,
)
from advisor.models import ModelSpec, TrainConfig
from advisor.units import GIB

# ~1B-parameter toy: 16 layers, hidden 2048, MHA, SwiGLU 5504, vocab 32000.
TOY = ModelSpec(name="toy-1b", family="llama", hidden_size=2048, num_layers=16, num_heads=16, num_kv_heads=16,
                ffn_size=5504, ffn_kind="gated", vocab_size=32000, max_context=4096)
N = param_count(TOY)
H100 = load_catalog().gpus["h100-sxm"]


def cfg(**kw):
    base = dict(num_gpus=1, strategy="single", seq_len=1024, micro_batch_size=1)
    base.update(kw)
    return TrainConfig(**base)


def approx(a, b):
    return abs(a - b) <= 1 + 1e-9 * abs(b)


def test_toy_is_about_1b():
    assert 0.9e9 < N < 1.2e9


@pytest.mark.parametrize("strategy,gpus,precision,w,g,o", [
    ("single", 1, "bf16-mixed", 4, 4, 8),  # the executor loads fp32 weights; Adam's moments like them
    ("ddp", 4, "bf16-mixed", 4, 4, 8),
    ("single", 1, "bf16-pure", 2, 2, 4),
    ("fsdp", 4, "bf16-mixed", 4 / 4, 4 / 4, 8 / 4),
    ("fsdp", 4, "bf16-pure", 4 / 4, 4 / 4, 8 / 4),  # accelerate's FSDP2 upcasts the shards to fp32
    ("zero2", 4, "bf16-mixed", 2, 2 / 4, 12 / 4),  # DeepSpeed bf16: 2 + 2 + 12
    ("zero3", 8, "bf16-mixed", 2 / 8, 2 / 8, 12 / 8),
    ("zero3-offload", 8, "bf16-mixed", 2 / 8, 0, 0),  # the gradient partitions live on the host (DeepSpeed stage3.py)
    ("zero3-offload-all", 8, "bf16-mixed", 0, 0, 0),  # parameter offload: no gradient shard on the GPU either
])
def test_model_states_bytes_per_param(strategy, gpus, precision, w, g, o):
    weights, grads, optim = model_state_bytes(TOY, cfg(num_gpus=gpus, strategy=strategy, precision=precision))
    assert approx(weights, w * N) and approx(grads, g * N) and approx(optim, o * N)


def test_the_peak_is_a_moment_gradients_coexist_with_activations_only_when_accumulating():
    one = memory_breakdown(TOY, H100, cfg(seq_len=4096, micro_batch_size=4, activation_checkpointing=False))
    assert one.gradients == 0 and one.activations > 0  # backward starts with no gradients (set to None)
    acc = memory_breakdown(TOY, H100, cfg(seq_len=4096, micro_batch_size=4, activation_checkpointing=False, grad_accum=4))
    assert acc.gradients > 0 and acc.total > one.total
    tiny = memory_breakdown(TOY, H100, cfg(seq_len=128))  # the end of backward: every gradient, no logits
    assert tiny.logits == 0 and tiny.gradients > 0


def test_offload_host_ram_16_bytes_x1_5_per_node():
    one_node = cpu_bytes_per_node(TOY, H100, cfg(num_gpus=8, strategy="zero3-offload"))
    assert approx(one_node, 16 * N * 1.5)
    two_nodes = cpu_bytes_per_node(TOY, H100, cfg(num_gpus=16, strategy="zero3-offload"))
    assert approx(two_nodes, 16 * N * 1.5 / 2)
    assert cpu_bytes_per_node(TOY, H100, cfg(num_gpus=8, strategy="fsdp")) == 0


def test_activation_checkpointing_lowers_activations():
    for precision in ("bf16-pure", "bf16-mixed"):
        on = activation_bytes(TOY, cfg(seq_len=4096, activation_checkpointing=True, precision=precision))
        off = activation_bytes(TOY, cfg(seq_len=4096, activation_checkpointing=False, precision=precision))
        assert 0 < on < off / 3


def test_autocast_copies_only_with_fp32_weights_on_one_replica():
    mixed = autocast_copy_bytes(TOY, cfg())
    assert mixed > 1.9 * N * 0.9  # a bf16 copy of (almost) every weight
    assert autocast_copy_bytes(TOY, cfg(precision="bf16-pure")) == 0
    assert autocast_copy_bytes(TOY, cfg(num_gpus=4, strategy="fsdp")) == 0  # FSDP gathers bf16 weights


def test_activations_scale_with_tokens():
    a = activation_bytes(TOY, cfg(micro_batch_size=1))
    b = activation_bytes(TOY, cfg(micro_batch_size=4))
    assert approx(b, 4 * a) or abs(b - 4 * a) <= 4


def test_logits_scale_with_vocab_and_shrink_with_chunks():
    big_vocab = dataclasses.replace(TOY, vocab_size=128000)
    small = logits_bytes(TOY, cfg())
    big = logits_bytes(big_vocab, cfg())
    assert abs(big / small - 4.0) < 0.01
    assert approx(small, 1024 * 32000 * 12)  # log-softmax backward: saved output + its grad + input grad, fp32
    chunked = logits_bytes(TOY, cfg(loss_chunks=8))
    assert chunked < small / 3


def test_fits_flips_when_memory_exceeds_hbm():
    small = estimate(TOY, H100, cfg(seq_len=2048, micro_batch_size=1))
    assert small.fits and small.headroom_bytes > 0
    huge = estimate(TOY, H100, cfg(seq_len=4096, micro_batch_size=64, activation_checkpointing=False))
    assert huge.memory_per_gpu_bytes > H100.hbm_gib * GIB
    assert not huge.fits and huge.headroom_bytes < 0


def test_fsdp_backward_holds_the_output_heads_unsharded_gradient_beside_the_recompute():
    """FSDP2's root unit (embedding, head) reduce-scatters only after the whole backward: the head's bf16
    vocab x h gradient, made by the first matmul of backward, sits beside every layer's recompute."""
    from advisor.memory import fsdp_head_gradient_bytes, transient_moments

    tied = dataclasses.replace(TOY, tied_embeddings=True)
    for m in (TOY, tied):
        fsdp = cfg(num_gpus=8, strategy="fsdp", precision="bf16-pure", seq_len=2048, activation_checkpointing=True)
        single = cfg(precision="bf16-pure", seq_len=2048, activation_checkpointing=True)
        head = 2 * m.vocab_size * m.hidden_size
        assert fsdp_head_gradient_bytes(m, fsdp) == head and fsdp_head_gradient_bytes(m, single) == 0
        assert fsdp_head_gradient_bytes(m, dataclasses.replace(fsdp, trainable="lora")) == 0
        f, s = transient_moments(m, fsdp)["recompute"], transient_moments(m, single)["recompute"]
        assert f[0] - s[0] == head  # same activations and recompute (bf16 compute both), plus the head's gradient


def test_mpt_fsdp_transient_matches_its_cached_trace():
    """MPT-7B, FSDP x 8, 1024 x 2 with checkpointing: the traced transient peak (benchmarks/data/
    memory_trace_cache.json, executor/memtrace.py) is the last block's ALiBi recompute + the tied head's
    gradient; the estimate without that gradient was -22%."""
    import json
    from pathlib import Path

    from advisor.architecture import resolve_model
    from advisor.memory import transient_bytes

    cache = json.loads((Path(__file__).resolve().parents[2] / "benchmarks/data/memory_trace_cache.json").read_text())
    traced = cache["mpt-7b|1024|2|True|bf16-pure|fsdp|8"]["transient"]
    c = cfg(num_gpus=8, strategy="fsdp", precision="bf16-pure", seq_len=1024, micro_batch_size=2,
            activation_checkpointing=True)
    assert abs(transient_bytes(resolve_model("mpt-7b"), c) - traced) / traced <= 0.10
