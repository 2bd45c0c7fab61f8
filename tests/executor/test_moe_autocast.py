"""MoE experts on the executor's bf16-mixed path (fp32 weights + autocast): the expert matmuls run in bf16,
like every other matmul of the step, and memtrace can trace that path (executor/moe.py)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402

from advisor.specs import ModelSpec  # noqa: E402


class _GroupedMmDtypes(TorchDispatchMode):
    """The dtypes of every aten._grouped_mm call (forward and backward)."""

    def __init__(self):
        super().__init__()
        self.calls: list[tuple] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.overloadpacket is torch.ops.aten._grouped_mm:
            self.calls.append((args[0].dtype, args[1].dtype))
        return func(*args, **(kwargs or {}))


def _tiny_mixtral(tmp_path):
    from transformers import AutoModelForCausalLM, MixtralConfig

    cfg = MixtralConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                        num_key_value_heads=2, vocab_size=300, num_local_experts=4, num_experts_per_tok=2)
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(cfg).save_pretrained(tmp_path)
    return str(tmp_path)


def _step(model, ids):
    """One forward + backward the way Trainer's bf16=True runs it (accelerate's autocast around forward);
    CPU autocast stands in for CUDA's, with the same cast rules for matmuls."""
    with _GroupedMmDtypes() as seen:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
    return loss, seen.calls


def test_bf16_mixed_runs_the_experts_in_bf16_and_trains_the_fp32_weights(tmp_path):
    from executor.train import setup_model

    path = _tiny_mixtral(tmp_path)
    plan = SimpleNamespace(method="full", recommended=SimpleNamespace(precision="bf16-mixed", strategy="single"))
    model = setup_model(plan, path, None, bf16=True)  # the executor's GPU path: fp32 weights, autocast bf16
    experts = model.model.layers[0].mlp.experts
    assert experts.gate_up_proj.dtype == torch.float32
    ids = torch.randint(0, 300, (2, 16), generator=torch.Generator().manual_seed(1))
    loss, calls = _step(model, ids)
    assert calls, "the experts did not go through grouped_mm"
    assert all(a == b == torch.bfloat16 for a, b in calls), calls  # fwd and bwd: bf16 like every other matmul
    for p in (experts.gate_up_proj, experts.down_proj):
        assert p.grad is not None and p.grad.dtype == torch.float32 and torch.isfinite(p.grad).all()
        assert p.grad.abs().sum() > 0
    # Same numbers as transformers' own implementation (experts in fp32) to bf16 precision.
    from transformers import AutoModelForCausalLM

    ref = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    ref_loss, ref_calls = _step(ref, ids)
    assert all(a == torch.float32 for a, _ in ref_calls)  # what the run did before executor/moe.py
    assert abs(loss.item() - ref_loss.item()) <= 0.02 * ref_loss.item()
    g, ref_g = experts.down_proj.grad, ref.model.layers[0].mlp.experts.down_proj.grad
    assert torch.nn.functional.cosine_similarity(g.flatten(), ref_g.flatten(), dim=0) > 0.99


def test_bf16_pure_and_no_autocast_are_transformers_own_path(tmp_path):
    from executor.moe import AUTOCAST_GROUPED_MM
    from executor.train import setup_model

    path = _tiny_mixtral(tmp_path)
    plan = SimpleNamespace(method="full", recommended=SimpleNamespace(precision="bf16-pure", strategy="single"))
    pure = setup_model(plan, path, None, bf16=True)
    assert pure.config._experts_implementation == "grouped_mm"  # bf16 weights: nothing to cast
    mixed = setup_model(SimpleNamespace(method="full", recommended=SimpleNamespace(precision="bf16-mixed",
                                                                                  strategy="single")),
                        path, None, bf16=False)  # CPU run: fp32, no autocast
    assert mixed.config._experts_implementation == AUTOCAST_GROUPED_MM
    ids = torch.randint(0, 300, (1, 8))
    with _GroupedMmDtypes() as seen:
        mixed(input_ids=ids, labels=ids).loss.backward()
    assert seen.calls and all(a == torch.float32 for a, _ in seen.calls)  # no autocast: fp32 throughout


def test_memtrace_traces_mixtral_bf16_mixed_on_one_gpu():
    """The fake-tensor trace of the executor's bf16-mixed single-GPU path (refused before: grouped_mm's
    meta kernel takes bf16 only)."""
    from advisor.architecture import param_count
    from executor.memtrace import trace

    m = ModelSpec(name="small-mixtral", family="mixtral", hidden_size=256, num_layers=2, num_heads=8, num_kv_heads=2,
                  ffn_size=512, ffn_kind="gated", vocab_size=1024, max_context=4096, num_experts=4,
                  experts_per_token=2)
    mixed = trace(m, precision="bf16-mixed", strategy="single", seq_len=256, depth=None)
    n = param_count(m)
    assert abs(mixed.model_states_max - 16 * n) <= 0.001 * 16 * n
    pure = trace(m, precision="bf16-pure", strategy="single", seq_len=256, depth=None)
    # bf16-mixed holds autocast's bf16 copies beside the fp32 weights; its activations are bf16 as pure's
    # (fp32 expert activations would make the mixed transient far larger).
    assert pure.transient_max < mixed.transient_max < pure.transient_max + 2 * n + 0.25 * pure.transient_max
