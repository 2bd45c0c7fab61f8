"""executor/memtrace.py: the traced step of a real transformers model on fake tensors (small models, seconds)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("transformers")

from advisor.architecture import param_count  # noqa: E402
from advisor.specs import ModelSpec  # noqa: E402
from executor.memtrace import trace  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


def small(family="llama", layers=4, **kw) -> ModelSpec:
    base = dict(name=f"small-{family}", family=family, hidden_size=256, num_layers=layers, num_heads=8, num_kv_heads=2,
                ffn_size=512, ffn_kind="gated", vocab_size=1024, max_context=4096)
    base.update(kw)
    return ModelSpec(**base)


def test_model_states_are_exact_per_precision_and_strategy():
    m = small()
    n = param_count(m)
    mixed = trace(m, precision="bf16-mixed", seq_len=128, depth=None)
    close = lambda x, y: abs(x - y) <= 0.001 * y  # noqa: E731 - buffers (rotary inv_freq) and Adam's step counters
    assert close(mixed.model_states_max, 16 * n)  # fp32 weights + fp32 grads + fp32 Adam moments
    pure = trace(m, precision="bf16-pure", seq_len=128, depth=None)
    assert close(pure.model_states_max, 8 * n)  # bf16 weights, grads and moments
    fsdp = trace(m, precision="bf16-pure", strategy="fsdp", world_size=4, seq_len=128, depth=None)
    assert abs(fsdp.model_states_max - 16 * n / 4) < 0.01 * 16 * n / 4  # accelerate's FSDP2 upcasts to fp32
    assert fsdp.gathered_max > 0 and mixed.gathered_max == 0


def test_checkpointing_and_sequence_length_move_the_transient_memory():
    m = small()
    on = trace(m, seq_len=512, activation_checkpointing=True, depth=None)
    off = trace(m, seq_len=512, activation_checkpointing=False, depth=None)
    longer = trace(m, seq_len=1024, activation_checkpointing=False, depth=None)
    assert on.transient_max < off.transient_max < longer.transient_max
    assert off.peak >= off.model_states_max


def test_per_layer_extrapolation_matches_the_full_depth_trace():
    m = small(layers=8)
    full = trace(m, seq_len=256, activation_checkpointing=False, depth=None)
    ext = trace(m, seq_len=256, activation_checkpointing=False, depth=1)
    assert ext.extrapolated and not full.extrapolated
    for key in ("model_states_max", "transient_max", "peak"):
        assert abs(getattr(ext, key) - getattr(full, key)) <= 0.02 * getattr(full, key), key


def test_estimate_trace_on_a_users_config_json(tmp_path):
    cfg = {"model_type": "qwen2", "hidden_size": 256, "intermediate_size": 512, "num_hidden_layers": 4,
           "num_attention_heads": 8, "num_key_value_heads": 2, "vocab_size": 1024, "max_position_embeddings": 4096,
           "tie_word_embeddings": False}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg))
    out = subprocess.run([sys.executable, "-m", "advisor", "estimate", "--model", str(path), "--gpu", "h100-sxm",
                          "--seq-len", "256", "--trace", "--json"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    t = json.loads(out.stdout)["trace"]
    assert t["traced_gib"]["model_states"] > 0 and t["traced_gib"]["peak"] >= t["traced_gib"]["model_states"]
    assert any("not traced" in n for n in t["not_traced"])
    bad = subprocess.run([sys.executable, "-m", "advisor", "estimate", "--model", str(path), "--gpu", "h100-sxm",
                          "--num-gpus", "8", "--strategy", "megatron", "--tp", "2", "--trace"], cwd=REPO,
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "--trace" in bad.stderr and "Traceback" not in bad.stderr


def test_fsdp_gathered_set_is_a_working_set_not_extrapolated_per_layer():
    """FSDP holds a few units unsharded at a time: a trace extrapolated from shallow depths matches the
    full-depth trace (extrapolating the gathered set from 1 and 2 layers charged Mixtral 75 GiB)."""
    m = small(family="mixtral", layers=8, num_experts=4, experts_per_token=2, ffn_size=1024)
    full = trace(m, precision="bf16-pure", strategy="fsdp", world_size=4, seq_len=128, depth=None)
    ext = trace(m, precision="bf16-pure", strategy="fsdp", world_size=4, seq_len=128, depth=1)
    assert ext.extrapolated and ext.traced_layers == (3, 6)
    assert abs(ext.gathered_max - full.gathered_max) <= 0.02 * full.gathered_max
    assert abs(ext.peak - full.peak) <= 0.03 * full.peak


def test_end_of_backward_is_extrapolated_as_its_own_phase():
    """Where the start of backward (activations + logits) peaks at the traced depths but the end of backward
    (every gradient) peaks at the real depth, extrapolating one backward phase misses the peak."""
    m = small(layers=16, vocab_size=4096)
    full = trace(m, precision="bf16-pure", seq_len=256, activation_checkpointing=True, depth=None)
    ext = trace(m, precision="bf16-pure", seq_len=256, activation_checkpointing=True, depth=1)
    assert ext.extrapolated and ext.traced_layers == (2, 4)
    assert full.peak_phase == ext.peak_phase == "end of backward"
    assert abs(ext.peak - full.peak) <= 0.01 * full.peak


def test_fsdp_end_of_backward_is_its_own_phase_too():
    """FSDP2's sharded parameters have no accumulate-grad hook: the gradient reaching the first layer's output
    marks the end of backward instead. Without it FSDP's backward was one phase, extrapolated from depths where
    the loss's backward peaks: Llama 3.1 8B FSDP x 8 at 1024 x 2 traced 17.08 GiB where its first layer's
    backward (every sharded gradient, the head's gradient) holds 18.80."""
    m = small(hidden_size=512, ffn_size=2048, layers=16, vocab_size=16384)
    full = trace(m, precision="bf16-pure", strategy="fsdp", world_size=2, seq_len=128, depth=None)
    ext = trace(m, precision="bf16-pure", strategy="fsdp", world_size=2, seq_len=128, depth=1)
    assert ext.extrapolated and ext.traced_layers == (3, 6)
    assert full.peak_phase == ext.peak_phase == "end of backward"
    assert abs(ext.peak - full.peak) <= 0.01 * full.peak
