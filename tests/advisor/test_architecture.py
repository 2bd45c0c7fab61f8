"""Parameter counts against published figures; sizes, config.json families, bad configs."""
import json

import pytest

from advisor.architecture import _presets, active_param_count, param_count, preset_names, resolve_model
from advisor.errors import UserError


# MPT-13B and MPT-70B exist only as llm-foundry training yamls (nominal '13B'/'70B', no exact count).
# Their expected count is MPT's closed form, 12 L d^2 + V d (no biases, 4x GELU MLP, tied embeddings),
# with the yamls' d_model / n_layers; the same form is within 0.01% of the published MPT-7B and
# MPT-30B counts (checked below), so it stands in for a published figure.
MPT_YAML = {"mpt-13b": (5120, 40), "mpt-70b": (8192, 80)}


def _mpt_closed_form(d: int, layers: int, vocab: int = 50432) -> int:
    return 12 * layers * d * d + vocab * d


def _preset_cases():
    for name in preset_names():
        pub = _presets()[name].get("published_params") or (_mpt_closed_form(*MPT_YAML[name]) if name in MPT_YAML else None)
        assert pub, f"{name}: neither a published count nor a stated closed form to test against"
        yield pytest.param(name, pub, id=name)


@pytest.mark.parametrize("name,d,layers", [("mpt-7b", 4096, 32), ("mpt-30b", 7168, 48)])
def test_mpt_closed_form_matches_the_published_counts(name, d, layers):
    published = _presets()[name]["published_params"]
    assert abs(_mpt_closed_form(d, layers) - published) / published < 1e-4


@pytest.mark.parametrize("name,published", list(_preset_cases()))
def test_preset_params_within_1pct(name, published):
    n = param_count(resolve_model(name))
    assert abs(n - published) / published < 0.01, (name, n, published)


def test_mixtral_active_less_than_total():
    m = resolve_model("mixtral-8x7b")
    active, total = active_param_count(m), param_count(m)
    assert active < total
    assert abs(active - 12.9e9) / 12.9e9 < 0.03


@pytest.mark.parametrize("size,expected", [("8B", 8e9), ("0.5B", 0.5e9), ("8.5B", 8.5e9), ("34B", 34e9), ("2.2B", 2.2e9),
                                           ("600B", 600e9)])
def test_bare_size_is_generic_and_that_size(size, expected):
    m = resolve_model(size)
    assert m.source == "generic-size"
    # between two layer counts (8B and 8.5B share 31 layers) the FFN width takes up the rest, as Llama-like models'
    # widths do (3-4 x hidden)
    assert abs(param_count(m) - expected) / expected < 0.015
    assert 3 <= m.ffn_size / m.hidden_size <= 4


BASE = {"hidden_size": 512, "num_hidden_layers": 4, "num_attention_heads": 8, "num_key_value_heads": 8,
        "intermediate_size": 1376, "vocab_size": 32000, "max_position_embeddings": 4096}
CONFIGS = {
    "llama": dict(BASE, model_type="llama"),
    "mistral": dict(BASE, model_type="mistral", num_key_value_heads=2),
    "mixtral": dict(BASE, model_type="mixtral", num_local_experts=8, num_experts_per_tok=2),
    "qwen2": dict(BASE, model_type="qwen2", vocab_size=151936),
    "gemma": dict(BASE, model_type="gemma", head_dim=64, num_key_value_heads=1),
    "gemma2": dict(BASE, model_type="gemma2", head_dim=64),
    "phi3": dict(BASE, model_type="phi3"),
    "mpt": {"model_type": "mpt", "d_model": 512, "n_layers": 4, "n_heads": 8, "expansion_ratio": 4,
            "vocab_size": 50432, "max_seq_len": 2048},
    "gpt_neox": dict(BASE, model_type="gpt_neox", intermediate_size=2048),
}


@pytest.mark.parametrize("family", list(CONFIGS))
def test_config_json_families(tmp_path, family):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(CONFIGS[family]))
    m = resolve_model(str(path))
    assert m.source == "config.json" and m.family == family
    assert m.num_layers == 4 and m.hidden_size == 512
    assert param_count(m) > 0
    assert param_count(resolve_model(str(tmp_path))) == param_count(m)  # the directory too
    if family == "mixtral":
        assert active_param_count(m) < param_count(m)


@pytest.mark.parametrize("content", [
    "{not json",
    json.dumps({"model_type": "t5", "d_model": 512}),
    json.dumps({"model_type": "llama", "hidden_size": 512}),
    json.dumps([1, 2]),
    json.dumps(dict(BASE, model_type="llama", num_key_value_heads=3)),
])
def test_bad_config_is_user_error(tmp_path, content):
    path = tmp_path / "config.json"
    path.write_text(content)
    with pytest.raises(UserError) as exc:
        resolve_model(str(path))
    assert str(path) in str(exc.value)


def test_unknown_model_is_user_error():
    with pytest.raises(UserError, match="^model: ") as exc:  # names its field; the CLI maps it to --model
        resolve_model("lama-3.1-8b")
    assert exc.value.field == "model" and "--" not in exc.value.message
