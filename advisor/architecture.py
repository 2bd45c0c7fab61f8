"""Architectures and parameter counts: presets, Hugging Face config.json files and bare sizes ('8B').

Counts are computed from the architecture (embeddings, attention with GQA and head_dim, gated or
plain MLP, MoE experts and router, norms, Qwen2's QKV biases) so they can be tested against the
published figures; MoE memory counts every expert while FLOPs count the active ones.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

from advisor.errors import UserError
from advisor.specs import ModelSpec, SpecError

_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([bBmM])\s*$")
# The sizes a bare size may name: generic_model's architectures run from 2 to 199 layers (0.03B to 1878B); a size
# outside this range is refused, not rounded to the nearest architecture.
GENERIC_MIN_PARAMS, GENERIC_MAX_PARAMS = 50e6, 1800e9

# The most each config.json size key may be: about 10x the largest preset's (llama-3.1-405b: hidden 16384, 126 layers,
# 128 heads, ffn 53248; gemma: vocab 256000, head_dim 256), a context of 2**24 tokens, 1024 experts. Beyond: a typo.
_KEY_MAX = {"hidden_size": 163_840, "d_model": 163_840, "num_hidden_layers": 1_260, "n_layers": 1_260,
            "num_attention_heads": 1_280, "n_heads": 1_280, "num_key_value_heads": 1_280, "kv_n_heads": 1_280,
            "head_dim": 2_560, "intermediate_size": 532_480, "vocab_size": 2_560_000,
            "max_position_embeddings": 2**24, "max_seq_len": 2**24,
            "num_local_experts": 1_024, "num_experts": 1_024, "num_experts_per_tok": 1_024}
# Families whose transformers code splits hidden_size into the heads whatever head_dim says (transformers 5:
# LlamaConfig / Gemma2Config / GPTNeoXConfig.validate_architecture, StableLmAttention; MPT has no head_dim key)
_HIDDEN_SPLIT_BY_HEADS = ("llama", "gemma2", "gpt_neox", "stablelm", "mpt")


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
    ffn = 3.5 * hidden, vocab 128256: the shape of current open models rather than any one of them. The layer
    count nearest the size, then the FFN width (3-4 x hidden) that brings the count closest to it.
    """
    if not GENERIC_MIN_PARAMS <= size_params <= GENERIC_MAX_PARAMS:
        raise UserError(f"{label}: a bare size must be 0.05B-1800B (generic Llama shapes); else give a config.json",
                        field="model")
    # Solve 12.5 h^2 * L + 2 V h = N with L = h / 128 (Llama 3.1 8B: h=4096, L=32), then the FFN width.
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
    # The layer grid steps ~10% in size: the FFN width (multiples of 256, within 3-4 x hidden: Llama 2 / 3 use 2.7
    # and 3.5, Qwen2.5 and Mistral 3.5-5.4) takes the rest, so a size asked is a size planned (within ~1%).
    widths = range(3 * best.hidden_size // 256 * 256, 4 * best.hidden_size + 1, 256)
    return min((replace(best, ffn_size=f) for f in widths), key=lambda sp: abs(param_count(sp) - size_params))


def _size(cfg: dict, key: str, default: int | None = None) -> int:
    """config.json's ``key`` as an integer from 1 to _KEY_MAX[key]; absent or null: ``default`` (None: required).
    A bad value is a SpecError on the key the file has, not on a ModelSpec field."""
    v = cfg.get(key)
    if v is None:
        if default is None:
            raise KeyError(key)
        return default
    if type(v) is not int:
        raise SpecError(key, f"must be an integer, got {v!r}")
    if not 1 <= v <= _KEY_MAX[key]:
        raise SpecError(key, f"must be from 1 to {_KEY_MAX[key]:,}, got {v!r}")
    return v


def _flag(cfg: dict, key: str, default: bool) -> bool:
    v = cfg.get(key, default)
    if type(v) is not bool:
        raise SpecError(key, f"must be true or false, got {v!r}")
    return v


def _check_heads(family: str, hidden: tuple[str, int], heads: tuple[str, int], kv: tuple[str, int],
                 head_dim: int | None) -> None:
    """What transformers (and the counts) need of the heads, on the config.json keys: the key-value heads divide the
    attention heads, and hidden_size splits into the heads unless head_dim is given (and the family reads it)."""
    (h_key, h), (n_key, n), (kv_key, k) = hidden, heads, kv
    if n % k:
        raise SpecError(kv_key, f"must divide {n_key} ({n}), got {k}")
    if h % n and (head_dim is None or family in _HIDDEN_SPLIT_BY_HEADS):
        also = "" if family in _HIDDEN_SPLIT_BY_HEADS else " (or give head_dim)"
        raise SpecError(h_key, f"must be a multiple of {n_key} ({n}){also}, got {h}")


def _experts(cfg: dict) -> tuple[int, int]:
    """(experts, experts per token) from num_local_experts / num_experts and num_experts_per_tok; dense: (1, 1)."""
    key = "num_local_experts" if cfg.get("num_local_experts") is not None else "num_experts"
    experts, per_token = _size(cfg, key, 1), _size(cfg, "num_experts_per_tok", 1)
    if per_token > experts:
        raise SpecError("num_experts_per_tok", f"cannot exceed {key} ({experts}), got {per_token}")
    return experts, per_token


def _config_to_spec(cfg: dict, name: str) -> ModelSpec:
    """Map a Hugging Face config.json (llama, mistral, mixtral, qwen2, gemma, gemma2, phi3, mpt, gpt_neox); a bad
    value is refused on its config.json key."""
    kind = str(cfg.get("model_type", "")).lower()
    if kind == "mpt":
        h, heads = _size(cfg, "d_model"), _size(cfg, "n_heads")
        attn = cfg.get("attn_config") or {}
        if not isinstance(attn, dict):
            raise SpecError("attn_config", f"must be a mapping, got {attn!r}")
        kv = _size(attn, "kv_n_heads", heads)
        _check_heads(kind, ("d_model", h), ("n_heads", heads), ("attn_config.kv_n_heads", kv), None)
        ratio = cfg.get("expansion_ratio", 4)
        if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 < ratio <= 64:
            raise SpecError("expansion_ratio", f"must be a number above 0 and at most 64, got {ratio!r}")
        return ModelSpec(
            name=name, family="mpt", source="config.json", hidden_size=h, num_layers=_size(cfg, "n_layers"),
            num_heads=heads, num_kv_heads=kv, ffn_size=int(ratio * h), ffn_kind="mlp", vocab_size=_size(cfg, "vocab_size"),
            tied_embeddings=not _flag(cfg, "no_tie_embeddings", False), max_context=_size(cfg, "max_seq_len", 2048),
        )
    families = {"llama", "mistral", "mixtral", "qwen2", "gemma", "gemma2", "phi3", "gpt_neox", "stablelm", "qwen2_moe"}
    if kind not in families:
        raise UserError(f"{name}: model_type '{kind}' is not supported (supported: {', '.join(sorted(families | {'mpt'}))})",
                        field="model", names_file=True)
    heads, h = _size(cfg, "num_attention_heads"), _size(cfg, "hidden_size")
    kv = _size(cfg, "num_key_value_heads", heads)
    head_dim = _size(cfg, "head_dim", 0) or None
    _check_heads(kind, ("hidden_size", h), ("num_attention_heads", heads), ("num_key_value_heads", kv), head_dim)
    experts, per_token = _experts(cfg)
    return ModelSpec(
        name=name, family=kind, source="config.json", hidden_size=h, num_layers=_size(cfg, "num_hidden_layers"),
        num_heads=heads, num_kv_heads=kv, head_dim=head_dim,
        ffn_size=_size(cfg, "intermediate_size", 4 * h), ffn_kind="mlp" if kind == "gpt_neox" else "gated",
        vocab_size=_size(cfg, "vocab_size"), tied_embeddings=_flag(cfg, "tie_word_embeddings", kind in ("gemma", "gemma2")),
        max_context=_size(cfg, "max_position_embeddings", 2048), num_experts=experts, experts_per_token=per_token,
    )


def load_config_json(path: Path) -> ModelSpec:
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg})", field="model", names_file=True) from None
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start}); "
                        "a config.json is JSON", field="model", names_file=True) from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.__class__.__name__})", field="model", names_file=True) from None
    if not isinstance(cfg, dict):
        raise UserError(f"{path}: expected a JSON object", field="model", names_file=True)
    try:
        return _config_to_spec(cfg, str(path))
    except KeyError as exc:
        raise UserError(f"{path}: missing field {exc.args[0]!r}", field="model", names_file=True) from None
    except (TypeError, ValueError) as exc:  # SpecError: '<config.json key>: <reason>' (or a ModelSpec field's)
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
    if path.is_dir():
        raise UserError(f"{path}: a model directory needs a config.json", field="model", names_file=True)
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

