"""Bad models, on one line with exit 2: config.json files that are not text or whose architecture cannot be
built (named by the key the file has), bare sizes outside the generic range, a tp that splits the heads
unevenly, --trace's transformers refusals, and `estimate --model x` listing the presets."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from advisor.architecture import param_count, resolve_model
from advisor.errors import UserError
from advisor.specs import SpecError, TrainConfig, check_tensor_parallel

REPO = Path(__file__).resolve().parents[2]
RUN = ["--gpu", "h100-sxm", "--num-gpus", "1", "--strategy", "single", "--seq-len", "1024", "--micro-batch", "1"]
LLAMA = {"model_type": "llama", "hidden_size": 64, "num_attention_heads": 4, "num_hidden_layers": 2,
         "intermediate_size": 128, "vocab_size": 1000, "max_position_embeddings": 2048}


def _sftplan(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "advisor", *args], cwd=REPO, capture_output=True, text=True, timeout=120)


def _one_line_error(out: subprocess.CompletedProcess, *needles: str) -> str:
    line = out.stderr.strip()
    assert out.returncode == 2, (out.returncode, out.stdout, out.stderr)
    assert "\n" not in line and "Traceback" not in line and line.startswith("sftplan: "), line
    for needle in needles:
        assert needle in line, (needle, line)
    return line


def _config(tmp_path: Path, **changes) -> Path:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({**LLAMA, **changes}))
    return path


@pytest.mark.parametrize("command", [["estimate", *RUN], ["plan", "--examples", "1000", "--avg-tokens", "500"]])
def test_a_config_json_that_is_not_utf8_names_the_file(tmp_path, command):
    path = tmp_path / "bin.json"
    path.write_bytes(b"\xff\xfe{")
    _one_line_error(_sftplan(command[0], "--model", str(path), *command[1:]), str(path), "not UTF-8")


@pytest.mark.parametrize("changes,key", [
    ({"num_attention_heads": 3}, "hidden_size"),  # 64 / 3: LlamaConfig refuses it, head_dim or not
    ({"num_attention_heads": 3, "head_dim": 16}, "hidden_size"),
    ({"num_key_value_heads": 0}, "num_key_value_heads"),
    ({"num_key_value_heads": 3}, "num_key_value_heads"),
    ({"hidden_size": 10**13}, "hidden_size"),
    ({"hidden_size": 1e13}, "hidden_size"),
    ({"num_hidden_layers": 0}, "num_hidden_layers"),
    ({"intermediate_size": 0}, "intermediate_size"),
    ({"vocab_size": True}, "vocab_size"),
    ({"tie_word_embeddings": "false"}, "tie_word_embeddings"),
    ({"model_type": "mixtral", "num_local_experts": 0, "num_experts_per_tok": 2}, "num_local_experts"),
    ({"model_type": "mixtral", "num_local_experts": 2, "num_experts_per_tok": 4}, "num_experts_per_tok"),
    ({"model_type": "mistral", "num_attention_heads": 3}, "hidden_size"),  # no head_dim: 64 // 3 is no head size
])
def test_a_config_json_architecture_is_refused_on_its_own_key(tmp_path, changes, key):
    path = _config(tmp_path, **changes)
    with pytest.raises(UserError) as exc:
        resolve_model(str(path))
    assert str(exc.value).startswith(f"{path}: {key}: "), str(exc.value)
    assert "num_layers" not in str(exc.value) and "num_heads " not in str(exc.value)


def test_the_cli_names_the_config_key(tmp_path):
    path = _config(tmp_path, num_key_value_heads=0)
    _one_line_error(_sftplan("estimate", "--model", str(path), *RUN), f"{path}: num_key_value_heads: ")


def test_an_explicit_head_dim_lets_a_mistral_config_split_hidden_unevenly(tmp_path):
    m = resolve_model(str(_config(tmp_path, model_type="mistral", num_attention_heads=3, head_dim=16)))
    assert m.head_dim_effective == 16 and param_count(m) > 0  # transformers' MistralConfig takes it


def test_a_model_directory_without_config_json_names_it(tmp_path):
    with pytest.raises(UserError, match="needs a config.json") as exc:
        resolve_model(str(tmp_path))
    assert str(tmp_path) in str(exc.value)


@pytest.mark.parametrize("size", ["2000B", "5000B", "99999999B", "1M", "0.001B", "0B"])
def test_a_bare_size_outside_the_generic_range_is_refused_with_the_range(size):
    with pytest.raises(UserError, match=r"must be 0\.05B-1800B") as exc:
        resolve_model(size)
    assert exc.value.field == "model"


@pytest.mark.parametrize("size,params", [("0.05B", 0.05e9), ("1800B", 1800e9), ("350M", 350e6)])
def test_a_bare_size_inside_the_range_is_honoured(size, params):
    assert abs(param_count(resolve_model(size)) - params) / params < 0.15


@pytest.mark.parametrize("strategy,tp,gpus", [("megatron", "3", "6"), ("fsdp-tp", "6", "6")])
def test_a_tp_that_does_not_divide_the_heads_is_an_error_on_tp(strategy, tp, gpus):
    out = _sftplan("estimate", "--model", "llama-3.1-8b", "--gpu", "h100-sxm", "--strategy", strategy, "--tp", tp,
                   "--num-gpus", gpus, "--seq-len", "1024", "--micro-batch", "1")
    _one_line_error(out, "--tp: ", "32 attention heads and 8 key-value heads", f"got {tp}")


def test_check_tensor_parallel():
    m = resolve_model("llama-3.1-8b")
    check_tensor_parallel(m, TrainConfig(num_gpus=8, strategy="megatron", seq_len=1024, micro_batch_size=1, tp=8))
    with pytest.raises(SpecError) as exc:  # 32 heads but 8 kv heads: 16 splits the heads, not the kv heads
        check_tensor_parallel(m, TrainConfig(num_gpus=16, strategy="megatron", seq_len=1024, micro_batch_size=1, tp=16))
    assert exc.value.field == "tp"


def test_estimate_with_an_unknown_model_lists_the_presets_whatever_else_is_missing():
    line = _one_line_error(_sftplan("estimate", "--model", "x"), "--model: unknown model 'x'", "llama-3.1-8b")
    assert "--gpu" not in line
    _one_line_error(_sftplan("estimate", "--model", "llama-3.1-8c"), "did you mean 'llama-3.1-8b'")
    _one_line_error(_sftplan("estimate", "--model", "llama-3.1-8b"), "--gpu: required", "h100-sxm")


def test_trace_turns_a_config_transformers_refuses_into_one_line(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    # head_dim 15 passes our checks; transformers' RoPE validator refuses an odd rotary dimension
    path = _config(tmp_path, model_type="mistral", head_dim=15)
    _one_line_error(_sftplan("estimate", "--model", str(path), *RUN, "--trace"), "--trace: ", "RoPE")
    path = _config(tmp_path, pad_token_id=5000)  # torch's embedding asserts the pad id is in the vocabulary
    _one_line_error(_sftplan("estimate", "--model", str(path), *RUN, "--trace"), "--trace: ", "Padding_idx")


def test_the_megatron_search_only_picks_a_tp_that_splits_the_heads():
    """The planner's Megatron candidates take the largest tp inside a node that divides the attention and key-value
    heads (12 heads, 4 kv heads: tp 4, not 8), the one check_tensor_parallel lets through."""
    import dataclasses

    from advisor.catalog import load_catalog
    from advisor.plan_search import Search
    from advisor.architecture import resolve_model

    base = resolve_model("llama-3.1-8b")
    model = dataclasses.replace(base, num_heads=12, num_kv_heads=4, hidden_size=12 * 128)
    search = Search.__new__(Search)
    search.model = model
    seen = []
    search.est = lambda gpu, n, s, mb, ac, tp=1, pp=1: seen.append(tp) or None
    search._megatron(load_catalog().gpu("h100-sxm"), [16], quick=True)
    assert seen and set(seen) == {4}
