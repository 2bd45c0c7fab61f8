"""Memory by hand: bytes per parameter per strategy, activations, logits, fits."""
import dataclasses

import pytest

from advisor.architecture import param_count
from advisor.catalog import load_catalog
from advisor.estimate import estimate
from advisor.memory import cpu_bytes_per_node, memory_breakdown
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


@pytest.mark.parametrize("strategy,gpus,w,g,o", [
    ("single", 1, 2, 2, 12),
    ("ddp", 4, 2, 2, 12),
    ("zero2", 4, 2, 2 / 4, 12 / 4),
    ("fsdp", 4, 2 / 4, 2 / 4, 12 / 4),
    ("zero3", 8, 2 / 8, 2 / 8, 12 / 8),
    ("zero3-offload", 8, 2 / 8, 2 / 8, 0),
])
def test_model_states_bytes_per_param(strategy, gpus, w, g, o):
    mem = memory_breakdown(TOY, H100, cfg(num_gpus=gpus, strategy=strategy))
    assert approx(mem.weights, w * N)
    assert approx(mem.gradients, g * N)
    assert approx(mem.optimizer, o * N)


def test_bf16_pure_is_2_2_4():
    mem = memory_breakdown(TOY, H100, cfg(precision="bf16-pure"))
    assert (approx(mem.weights, 2 * N), approx(mem.gradients, 2 * N), approx(mem.optimizer, 4 * N)) == (True,) * 3


def test_offload_host_ram_16_bytes_x1_5_per_node():
    one_node = cpu_bytes_per_node(TOY, H100, cfg(num_gpus=8, strategy="zero3-offload"))
    assert approx(one_node, 16 * N * 1.5)
    two_nodes = cpu_bytes_per_node(TOY, H100, cfg(num_gpus=16, strategy="zero3-offload"))
    assert approx(two_nodes, 16 * N * 1.5 / 2)
    assert cpu_bytes_per_node(TOY, H100, cfg(num_gpus=8, strategy="fsdp")) == 0


def test_activation_checkpointing_lowers_activations():
    on = memory_breakdown(TOY, H100, cfg(seq_len=4096, activation_checkpointing=True)).activations
    off = memory_breakdown(TOY, H100, cfg(seq_len=4096, activation_checkpointing=False)).activations
    assert 0 < on < off / 3


def test_activations_scale_with_tokens():
    a = memory_breakdown(TOY, H100, cfg(micro_batch_size=1)).activations
    b = memory_breakdown(TOY, H100, cfg(micro_batch_size=4)).activations
    assert approx(b, 4 * a) or abs(b - 4 * a) <= 4


def test_logits_scale_with_vocab_and_shrink_with_chunks():
    big_vocab = dataclasses.replace(TOY, vocab_size=128000)
    small = memory_breakdown(TOY, H100, cfg()).logits
    big = memory_breakdown(big_vocab, H100, cfg()).logits
    assert abs(big / small - 4.0) < 0.01
    assert approx(small, 1024 * 32000 * 10)  # bf16 logits + fp32 upcast + fp32 grad
    chunked = memory_breakdown(TOY, H100, cfg(loss_chunks=8)).logits
    assert chunked < small / 3


def test_fits_flips_when_memory_exceeds_hbm():
    small = estimate(TOY, H100, cfg(seq_len=2048, micro_batch_size=1))
    assert small.fits and small.headroom_bytes > 0
    huge = estimate(TOY, H100, cfg(seq_len=4096, micro_batch_size=64, activation_checkpointing=False))
    assert huge.memory_per_gpu_bytes > H100.hbm_gib * GIB
    assert not huge.fits and huge.headroom_bytes < 0
