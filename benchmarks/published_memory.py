"""Estimated vs published peak GPU memory (benchmarks/data/published_memory.yaml).

For each row: our estimate at the level the source measured (allocated = tensors + cuBLAS workspaces;
reserved = + the allocator's fragmentation; device = + CUDA context + NCCL buffers; unstated: the
reserved level), the published figure, and the error (estimate / measured - 1). Then the median and
worst |error| over the modelled rows, per source and in all. Rows the estimator cannot express
(modelled: false) are printed with the reason and kept out of the medians.

Defaults for a setting a row leaves out (printed per row as "assumed"): grad_accum 1, loss_chunks 1,
trainable full, attention flash (every source runs flash / SDPA-flash kernels), memory headroom 0 (a
run that happened fits; the plan's margin is not the question here).

Usage: python benchmarks/published_memory.py [--rows path.yaml] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from advisor.architecture import resolve_model  # noqa: E402
from advisor.catalog import load_catalog  # noqa: E402
from advisor.estimate import estimate  # noqa: E402
from advisor.models import ModelSpec, TrainConfig  # noqa: E402
from advisor.units import GIB  # noqa: E402

ROWS = REPO / "benchmarks" / "data" / "published_memory.yaml"
LEVELS = {  # the components outside each measured level
    "allocated": ("cuda_context", "nccl_buffers", "fragmentation"),
    "reserved": ("cuda_context", "nccl_buffers"),
    "unstated": ("cuda_context", "nccl_buffers"),
    "device": (),
}


def load(path: Path = ROWS) -> dict:
    return yaml.safe_load(path.read_text())


def row_model(row: dict, models: dict) -> ModelSpec:
    name = row["model"]
    if name in models:
        return ModelSpec(name=name, **models[name])
    return resolve_model(name)


def row_config(row: dict) -> tuple[TrainConfig, list[str]]:
    assumed = []
    for key, default in (("grad_accum", 1), ("loss_chunks", 1), ("trainable", "full")):
        if key not in row:
            assumed.append(f"{key} {default}")
    cfg = TrainConfig(
        num_gpus=row["num_gpus"], strategy=row["strategy"], precision=row["precision"], seq_len=row["seq_len"],
        micro_batch_size=row["micro_batch_size"], grad_accum=row.get("grad_accum", 1),
        activation_checkpointing=row["activation_checkpointing"], loss_chunks=row.get("loss_chunks", 1),
        trainable=row.get("trainable", "full"), lora_rank=row.get("lora_rank", 16), attention="flash",
        memory_headroom=0.0,
    )
    return cfg, assumed


_LINEARS = ("q", "k", "v", "o", "gate", "up", "down")


def _linear_shapes(m: ModelSpec) -> dict[str, tuple[int, int]]:
    h, f = m.hidden_size, m.ffn_size
    q, kv = m.num_heads * m.head_dim_effective, m.num_kv_heads * m.head_dim_effective
    shapes = {"q": (h, q), "k": (h, kv), "v": (h, kv), "o": (q, h), "up": (h, f), "down": (f, h)}
    if m.ffn_kind == "gated":
        shapes["gate"] = (h, f)
    return shapes


def _adapter_bytes(m: ModelSpec, rank: int, targets, dora: bool, dropout: bool) -> tuple[int, int, int]:
    """(activation bytes per token and layer, batch-independent bytes per layer, trainable parameters) of
    LoRA on `targets`, with the same per-linear terms as advisor/lora_plan.py (dropout: bf16 output + 1-byte
    mask of the input; the rank-r intermediate; DoRA: base and LoRA outputs, and with dropout a second bf16
    copy of the dropped input and the bf16 copy of the base weight peft's recompute makes) and
    advisor/architecture.py (r * (in + out) [+ out])."""
    acts = copies = params = 0
    for name, (i, o) in _linear_shapes(m).items():
        if name in targets:
            acts += (2 * i + i if dropout else 0) + 2 * rank + (2 * 2 * o if dora else 0) + (2 * i if dora and dropout else 0)
            copies += 2 * i * o if dora and dropout else 0
            params += rank * (i + o) + (o if dora else 0)
    return acts, copies, params * m.num_layers


def lora_target_correction_bytes(m: ModelSpec, cfg: TrainConfig, row: dict) -> int:
    """The estimator models the executor's LoRA (DoRA on every linear, dropout on); a row that states other
    targets is charged its own: this is what to subtract (activations only without checkpointing, where
    activation_bytes counts them; adapter states at 4 + 12 bytes per trainable parameter, as model_state_bytes)."""
    if cfg.trainable != "lora" or "lora_targets" not in row:
        return 0
    execu_acts, execu_copies, execu_params = _adapter_bytes(m, cfg.lora_rank, _LINEARS, True, True)
    row_acts, row_copies, row_params = _adapter_bytes(m, cfg.lora_rank, set(row["lora_targets"]),
                                                      bool(row.get("dora", False)), float(row.get("lora_dropout", 0.05)) > 0)
    tokens = cfg.micro_batch_size * cfg.seq_len
    per_layer = (execu_acts - row_acts) * tokens + execu_copies - row_copies
    acts = 0 if cfg.activation_checkpointing else per_layer * m.num_layers
    return int(acts + (execu_params - row_params) * 16)


def measured_gib(row: dict, source: dict) -> float:
    unit = source.get("unit", "GiB")
    return float(row["peak"]) * (1e9 / GIB if unit == "GB" else 1.0)


def compare(row: dict, data: dict) -> dict:
    source = data["sources"][row["source"]]
    kind = row.get("measured_kind", source["measured_kind"])
    model = row_model(row, data.get("models") or {})
    cfg, assumed = row_config(row)
    est = estimate(model, load_catalog().gpu(row["gpu"]), cfg)
    mem = est.memory.to_dict()
    outside = sum(mem[k] for k in LEVELS[kind])
    correction = lora_target_correction_bytes(model, cfg, row)
    est_gib = (est.memory_per_gpu_bytes - outside - correction) / GIB
    meas = measured_gib(row, source)
    return {"id": row["id"], "source": row["source"], "kind": kind, "est_gib": round(est_gib, 2),
            "measured_gib": round(meas, 2), "error": est_gib / meas - 1, "modelled": row.get("modelled", True),
            "why": row.get("why", ""), "assumed": assumed,
            "breakdown_gib": {k: round(v / GIB, 2) for k, v in mem.items() if v},
            "notes": ([f"LoRA r{cfg.lora_rank} on {', '.join(row['lora_targets'])}"
                       f"{' + DoRA' if row.get('dora') else ''} (the row's; -{correction / GIB:.2f} GiB against "
                       f"the executor's DoRA on every linear)"] if correction else [])
            + [row[k] for k in ("setting_note", "strategy_note") if k in row]
            + (["torch.compile (not modelled: eager assumed)"] if row.get("compile") and row.get("modelled", True) else [])}


def summary(results: list[dict]) -> dict:
    def stats(rs):
        errs = [abs(r["error"]) for r in rs]
        worst = max(rs, key=lambda r: abs(r["error"])) if rs else None
        return {"rows": len(rs), "median_abs_error": statistics.median(errs) if errs else None,
                "worst": (worst["id"], worst["error"]) if worst else None}

    modelled = [r for r in results if r["modelled"]]
    out = {"all": stats(modelled), "sources": {}}
    for src in sorted({r["source"] for r in modelled}):
        out["sources"][src] = stats([r for r in modelled if r["source"] == src])
    for label, pick in (("full", lambda r: "lora" not in r["id"]), ("lora", lambda r: "lora" in r["id"])):
        out[label] = stats([r for r in modelled if pick(r)])
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=Path, default=ROWS)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    data = load(args.rows)
    results = [compare(row, data) for row in data["rows"]]
    s = summary(results)
    if args.json:
        print(json.dumps({"rows": results, "summary": s}, indent=2, default=str))
        return 0
    for r in results:
        flag = "" if r["modelled"] else "  [not modelled: " + r["why"] + "]"
        print(f"{r['id']:<36} {r['kind']:<9} est {r['est_gib']:6.2f} GiB  published {r['measured_gib']:6.2f} GiB  "
              f"error {r['error']:+6.1%}{flag}")
        extra = r["notes"] + ([f"assumed: {', '.join(r['assumed'])}"] if r["assumed"] else [])
        if extra:
            print(f"{'':<37}{'; '.join(extra)}")
    print()
    for src, st in s["sources"].items():
        print(f"{src:<24} {st['rows']:2d} rows  median |error| {st['median_abs_error']:.1%}  "
              f"worst {st['worst'][0]} {st['worst'][1]:+.1%}")
    for label in ("full", "lora", "all"):
        st = s[label]
        if st["rows"]:
            print(f"{label + ' (modelled)':<24} {st['rows']:2d} rows  median |error| {st['median_abs_error']:.1%}  "
                  f"worst {st['worst'][0]} {st['worst'][1]:+.1%}")
    print(f"{sum(not r['modelled'] for r in results)} rows printed but not modelled; sources: {len(data['sources'])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
