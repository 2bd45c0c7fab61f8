"""The LoRA memory estimate against a traced peft step (executor/memtrace.py trace_lora, on fake tensors).

Two small Llama-shaped layers, DoRA with dropout, no checkpointing: the model states (bf16 frozen base,
fp32 adapter + gradients + Adam) and the saved activations (including DoRA's bf16 weight copy and second
copy of the dropped input, advisor/lora_plan.py) are what peft really keeps. benchmarks/lora_memory.py
does the same on Llama-3.1-8B and Qwen2.5-7B.
"""

import pytest

from advisor.catalog import load_catalog
from advisor.lora_plan import TARGET_MODULES, lora_weight_copy_bytes_per_layer
from advisor.memory import memory_breakdown, model_state_bytes
from advisor.specs import ModelSpec, TrainConfig

pytestmark = pytest.mark.slow


def test_traced_lora_step_matches_the_estimate():
    from executor.memtrace import trace_lora

    spec = ModelSpec(name="small-llama", family="llama", source="preset", hidden_size=512, num_layers=2, num_heads=8,
                     num_kv_heads=2, ffn_size=1536, ffn_kind="gated", vocab_size=2000, tied_embeddings=False,
                     max_context=1024)
    cfg = TrainConfig(num_gpus=1, strategy="single", seq_len=512, micro_batch_size=2, activation_checkpointing=False,
                      trainable="lora", lora_rank=16)
    traced = trace_lora(spec, rank=16, alpha=32, dropout=0.1, dora=True, target_modules=TARGET_MODULES["llama"],
                        seq_len=512, micro_batch_size=2, activation_checkpointing=False, depth=None)
    m = memory_breakdown(spec, load_catalog().gpu("h100-sxm"), cfg)
    peak = m.weights + m.gradients + m.optimizer + m.activations + m.logits + m.gathered_layer
    assert sum(model_state_bytes(spec, cfg)) == pytest.approx(traced.model_states_max, rel=0.001)
    assert peak == pytest.approx(traced.peak, rel=0.03), (peak, traced)
    # without the DoRA weight copies the estimate would be short by about their size
    assert traced.peak - (peak - lora_weight_copy_bytes_per_layer(spec)) > 0.5 * lora_weight_copy_bytes_per_layer(spec)


def test_estimate_lora_flag_and_trace(tmp_path):
    """`sftplan estimate --lora`: the LoRA estimate (frozen base, adapter states), and --trace traces peft's step."""
    import json

    from transformers import LlamaConfig

    from tinyplan import sftplan

    LlamaConfig(hidden_size=1024, intermediate_size=2816, num_hidden_layers=2, num_attention_heads=8,
                num_key_value_heads=2, vocab_size=32000, max_position_embeddings=512).save_pretrained(tmp_path / "m")
    common = ["estimate", "--model", str(tmp_path / "m"), "--gpu", "h100-sxm", "--seq-len", "128", "--micro-batch", "2",
              "--no-activation-checkpointing", "--json"]
    full, lora = (json.loads(sftplan(*common, *extra).stdout) for extra in ([], ["--lora"]))
    assert lora["memory_breakdown_gib"]["gradients"] < full["memory_breakdown_gib"]["gradients"] / 50
    proc = sftplan(*common, "--lora", "--trace")
    assert proc.returncode == 0, proc.stderr[-2000:]
    t = json.loads(proc.stdout)["trace"]
    states = t["traced_gib"]["model_states"]  # bf16 frozen base + fp32 adapter states: peft's step was traced
    assert states == pytest.approx(t["analytic_gib"]["model_states"], rel=0.02)
    assert states < 0.2 * sum(full["memory_breakdown_gib"][k] for k in ("weights", "gradients", "optimizer"))
    proc = sftplan(*common, "--lora", "--trace", "--num-gpus", "2", "--strategy", "fsdp")
    assert proc.returncode == 2 and "not traced (traced: LoRA: single, ddp)" in proc.stderr, proc.stderr
