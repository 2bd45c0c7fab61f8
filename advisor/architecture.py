"""Architectures and parameter counts: presets, Hugging Face config.json files and bare sizes ('8B').

Counts are computed from the architecture (embeddings, attention with GQA and head_dim, gated or
plain MLP, MoE experts and router, norms, Qwen2's QKV biases) so they can be tested against the
published figures; MoE memory counts every expert while FLOPs count the active ones.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from advisor.errors import UserError
from advisor.specs import ModelSpec, SpecError

_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([bBmM])\s*$")


# --------------------------------------------------------------------------- counting


def _q_dim(m: ModelSpec) -> int:
    return m.num_heads * m.head_dim_effective


def _kv_dim(m: ModelSpec) -> int:
    return m.num_kv_heads * m.head_dim_effective


def attention_params(m: ModelSpec) -> int:
    """q, k, v, o projections (+ Qwen2's q/k/v biases)."""
    h, q, kv = m.hidden_size, _q_dim(m), _kv_dim(m)
    n = h * q + 2 * h * kv + q * h
    if m.family == "qwen2":
        n += q + 2 * kv
    return n


def mlp_params_per_expert(m: ModelSpec) -> int:
    """gated (SwiGLU/GeGLU): gate, up, down = 3 h f; plain MLP: up, down = 2 h f."""
    mats = 3 if m.ffn_kind == "gated" else 2
    return mats * m.hidden_size * m.ffn_size


def norm_params_per_layer(m: ModelSpec) -> int:
    per_norm = 2 * m.hidden_size if m.family in ("stablelm", "gpt_neox") else m.hidden_size  # LayerNorm bias
    return 2 * per_norm


def layer_params(m: ModelSpec) -> int:
    """One decoder layer, every expert included."""
    router = m.hidden_size * m.num_experts if m.num_experts > 1 else 0
    return attention_params(m) + m.num_experts * mlp_params_per_expert(m) + router + norm_params_per_layer(m)


def embedding_params(m: ModelSpec) -> int:
    """Input embedding plus the output head when it is not tied."""
    emb = m.vocab_size * m.hidden_size
    return emb if m.tied_embeddings else 2 * emb


def arch_key(m: ModelSpec) -> tuple:
    """Everything a count depends on (ModelSpec is mutable, so counts are memoised on this, not on m)."""
    return (m.family, m.hidden_size, m.num_layers, m.num_heads, m.num_kv_heads, m.head_dim, m.ffn_size,
            m.ffn_kind, m.vocab_size, m.tied_embeddings, m.num_experts, m.experts_per_token)


_COUNTS: dict[tuple, tuple[int, int]] = {}  # arch key -> (total, active); the planner asks ~3000 times a plan


def _counts(m: ModelSpec) -> tuple[int, int]:
    key = arch_key(m)
    hit = _COUNTS.get(key)
    if hit is None:
        total = m.num_layers * layer_params(m) + embedding_params(m) + norm_params_per_layer(m) // 2
        inactive = (m.num_experts - m.experts_per_token) * mlp_params_per_expert(m) * m.num_layers
        hit = _COUNTS[key] = (total, total - inactive)
    return hit


def param_count(m: ModelSpec) -> int:
    """Every parameter: layers (all experts), embeddings (and the untied head), the final norm."""
    return _counts(m)[0]


def expert_param_count(m: ModelSpec) -> int:
    """Parameters of the routed experts, all layers (0 for a dense model): what expert parallel shards."""
    if m.num_experts <= 1:
        return 0
    return m.num_layers * m.num_experts * mlp_params_per_expert(m)


def active_param_count(m: ModelSpec) -> int:
    """Parameters that touch one token (MoE: experts_per_token of num_experts)."""
    return _counts(m)[1]


def largest_layer_params(m: ModelSpec) -> int:
    """The biggest unit FSDP / ZeRO-3 gathers at once: a decoder layer or the embedding matrix."""
    return max(layer_params(m), m.vocab_size * m.hidden_size)


def lora_trainable_params(m: ModelSpec, rank: int, dora: bool = True) -> int:
    """LoRA on every linear of every layer (q, k, v, o and the MLP): r * (in + out) per matrix;
    DoRA adds a magnitude vector of size out per matrix (Liu et al. 2024)."""
    h, q, kv, f = m.hidden_size, _q_dim(m), _kv_dim(m), m.ffn_size
    shapes = [(h, q), (h, kv), (h, kv), (q, h)]
    shapes += ([(h, f), (h, f), (f, h)] if m.ffn_kind == "gated" else [(h, f), (f, h)]) * m.num_experts
    n = sum(rank * (i + o) + (o if dora else 0) for i, o in shapes)
    return n * m.num_layers


# --------------------------------------------------------------------------- resolving names


def _presets() -> dict[str, dict]:
    from advisor.catalog import load_model_presets

    return load_model_presets()


def preset_names() -> list[str]:
    return sorted(_presets())


def generic_model(size_params: float, label: str) -> ModelSpec:
    """A Llama-3-shaped architecture of about ``size_params`` parameters (stated as generic).

    Width follows Llama 3's aspect ratio (hidden ~ 128 * layers), GQA with 8 KV heads, SwiGLU with
    ffn = 3.5 * hidden, vocab 128256: the shape of current open models rather than any one of them.
    """
    if size_params < 1e6:
        raise UserError(f"{label}: a model needs at least 1M parameters", field="model")
    # Solve 12.5 h^2 * L + 2 V h = N with L = h / 128 (Llama 3.1 8B: h=4096, L=32).
    vocab = 128256
    best: ModelSpec | None = None
    for layers in range(2, 200):
        hidden = 128 * layers
        heads = max(1, hidden // 128)
        spec = ModelSpec(
            name=label, family="generic", source="generic-size", hidden_size=hidden, num_layers=layers,
            num_heads=heads, num_kv_heads=8 if heads % 8 == 0 else heads, ffn_size=int(3.5 * hidden) // 256 * 256 or 256,
            ffn_kind="gated", vocab_size=vocab, tied_embeddings=size_params < 5e9, max_context=131072,
        )
        if best is None or abs(param_count(spec) - size_params) < abs(param_count(best) - size_params):
            best = spec
        if param_count(spec) > size_params:
            break
    assert best is not None
    return best


def _config_to_spec(cfg: dict, name: str) -> ModelSpec:
    """Map a Hugging Face config.json (llama, mistral, mixtral, qwen2, gemma, gemma2, phi3, mpt, gpt_neox)."""
    kind = str(cfg.get("model_type", "")).lower()
    if kind == "mpt":
        h = cfg["d_model"]
        return ModelSpec(
            name=name, family="mpt", source="config.json", hidden_size=h, num_layers=cfg["n_layers"],
            num_heads=cfg["n_heads"], num_kv_heads=cfg.get("attn_config", {}).get("kv_n_heads") or cfg["n_heads"],
            ffn_size=int(cfg.get("expansion_ratio", 4) * h), ffn_kind="mlp", vocab_size=cfg["vocab_size"],
            tied_embeddings=not cfg.get("no_tie_embeddings", False) if "no_tie_embeddings" in cfg else True,
            max_context=cfg.get("max_seq_len", 2048),
        )
    families = {"llama", "mistral", "mixtral", "qwen2", "gemma", "gemma2", "phi3", "gpt_neox", "stablelm", "qwen2_moe"}
    if kind not in families:
        raise UserError(f"{name}: model_type '{kind}' is not supported (supported: {', '.join(sorted(families | {'mpt'}))})",
                        field="model", names_file=True)
    heads = cfg["num_attention_heads"]
    h = cfg["hidden_size"]
    default_tied = kind in ("gemma", "gemma2")
    return ModelSpec(
        name=name, family=kind, source="config.json", hidden_size=h, num_layers=cfg["num_hidden_layers"],
        num_heads=heads, num_kv_heads=cfg.get("num_key_value_heads") or heads, head_dim=cfg.get("head_dim"),
        ffn_size=cfg.get("intermediate_size") or 4 * h, ffn_kind="mlp" if kind == "gpt_neox" else "gated",
        vocab_size=cfg["vocab_size"], tied_embeddings=bool(cfg.get("tie_word_embeddings", default_tied)),
        max_context=cfg.get("max_position_embeddings") or 2048,
        num_experts=cfg.get("num_local_experts") or cfg.get("num_experts") or 1,
        experts_per_token=cfg.get("num_experts_per_tok") or 1,
    )


def load_config_json(path: Path) -> ModelSpec:
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg})", field="model", names_file=True) from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.__class__.__name__})", field="model", names_file=True) from None
    if not isinstance(cfg, dict):
        raise UserError(f"{path}: expected a JSON object", field="model", names_file=True)
    try:
        return _config_to_spec(cfg, str(path))
    except KeyError as exc:
        raise UserError(f"{path}: missing field {exc.args[0]!r}", field="model", names_file=True) from None
    except (TypeError, ValueError) as exc:  # SpecError: '<ModelSpec field>: <reason>'
        raise UserError(f"{path}: {exc}", field="model", names_file=True) from None


def resolve_model(name_or_path: str) -> ModelSpec:
    """A preset id, a bare size ('8B', '0.5B', '350M'), a config.json path or a model directory."""
    text = str(name_or_path).strip()
    presets = _presets()
    if text.lower() in presets:
        try:
            return ModelSpec.from_dict({**presets[text.lower()], "name": text.lower(), "source": "preset"})
        except SpecError as exc:
            raise UserError(f"model_presets.yaml: presets.{text.lower()}.{exc.field}: {exc.reason}") from None
    match = _SIZE_RE.match(text)
    if match:
        scale = 1e9 if match.group(2).lower() == "b" else 1e6
        return generic_model(float(match.group(1)) * scale, text.upper())
    path = Path(text)
    if path.is_dir() and (path / "config.json").is_file():
        return load_config_json(path / "config.json")
    if path.is_file():
        return load_config_json(path)
    from advisor.errors import did_you_mean

    hint = did_you_mean(text, list(presets))
    raise UserError(
        f"unknown model '{text}'{hint}; use a preset ({', '.join(sorted(presets))}), "
        "a size such as 8B, or a config.json / model directory", field="model",
    )


def describe(m: ModelSpec) -> str:
    total = param_count(m)
    txt = f"{m.name}: {total / 1e9:.2f}B params"
    if m.num_experts > 1:
        txt += f" ({active_param_count(m) / 1e9:.2f}B active, {m.experts_per_token} of {m.num_experts} experts)"
    if m.source == "generic-size":
        txt += " - generic Llama-shaped architecture (no preset or config.json given)"
    return txt

