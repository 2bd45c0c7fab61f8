"""The analytic memory estimate (advisor/memory.py) against traced steps of the real models (executor/memtrace.py).

A grid over every preset family (llama, mistral, mixtral, qwen2, gemma, gemma2, phi3, gpt_neox, mpt) x
(sequence, micro-batch) in {(1024, 8), (4096, 2), (8192, 1), (1024, 2)} x checkpointing on/off x both precisions x
single / fsdp at 8 ranks. Per component group it prints analytic vs traced and the median and worst
relative error: model states (weights + grads + optimizer), transient (activations + logits + loss
buffers + temporaries), gathered layer (FSDP), and the peak (one moment).

    python benchmarks/memory_trace.py                      # trace the grid (minutes), write the cache, print
    python benchmarks/memory_trace.py --from-cache          # re-score the cached traces (instant: formula work)
    python benchmarks/memory_trace.py --families llama,mpt --quick
    python benchmarks/memory_trace.py --families mixtral --strategies fsdp --retrace   # trace these again

Traces are cached in benchmarks/data/memory_trace_cache.json keyed by configuration; `--retrace` ignores it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from advisor.architecture import resolve_model  # noqa: E402
from advisor.catalog import load_catalog  # noqa: E402
from advisor.memory import gathered_bytes, memory_breakdown, model_state_bytes, transient_bytes  # noqa: E402
from advisor.specs import ModelSpec, TrainConfig  # noqa: E402

CACHE = REPO / "benchmarks" / "data" / "memory_trace_cache.json"
GIB = 2**30
# One real-size model per family (gpt_neox has no preset: Pythia-6.9B's published config).
FAMILIES = {
    "llama": "llama-3.1-8b", "mistral": "mistral-7b", "mixtral": "mixtral-8x7b", "qwen2": "qwen2.5-7b",
    "gemma": "gemma-2b", "gemma2": "gemma-2-9b", "phi3": "phi-3-mini", "mpt": "mpt-7b",
    "gpt_neox": dict(name="pythia-6.9b", family="gpt_neox", source="preset", hidden_size=4096, num_layers=32,
                     num_heads=32, num_kv_heads=32, ffn_size=16384, ffn_kind="mlp", vocab_size=50432,
                     tied_embeddings=False, max_context=2048),
}
SHAPES = ((1024, 8), (4096, 2), (8192, 1), (1024, 2))  # 8192 tokens per micro-batch three ways, and 2048
GROUPS = ("model_states", "transient", "gathered", "peak")
TARGET = {"median": 0.05, "worst": 0.10}


def spec_of(family: str) -> ModelSpec:
    ref = FAMILIES[family]
    return ModelSpec(**ref) if isinstance(ref, dict) else resolve_model(ref)


def grid(families: list[str], quick: bool) -> list[dict]:
    rows = []
    for fam in families:
        spec = spec_of(fam)
        for seq, mb in (SHAPES[:1] if quick else SHAPES):
            seq = min(seq, spec.max_context)
            for ac in (True, False):
                for precision in ("bf16-mixed", "bf16-pure"):
                    for strategy, world in (("single", 1), ("fsdp", 8)):
                        rows.append(dict(family=fam, model=spec.name, seq_len=seq, micro_batch_size=mb,
                                         activation_checkpointing=ac, precision=precision, strategy=strategy,
                                         world_size=world))
    return rows


def key_of(row: dict) -> str:
    return "|".join(str(row[k]) for k in ("model", "seq_len", "micro_batch_size", "activation_checkpointing",
                                          "precision", "strategy", "world_size"))


def analytic(row: dict, spec: ModelSpec, gpu) -> dict[str, int]:
    cfg = TrainConfig(num_gpus=row["world_size"], strategy=row["strategy"], precision=row["precision"],
                      seq_len=row["seq_len"], micro_batch_size=row["micro_batch_size"],
                      activation_checkpointing=row["activation_checkpointing"])
    m = memory_breakdown(spec, gpu, cfg)
    return {"model_states": sum(model_state_bytes(spec, cfg)), "transient": transient_bytes(spec, cfg),
            "gathered": gathered_bytes(spec, cfg), "peak": m.total - m.overhead}


def traced(row: dict, spec: ModelSpec) -> dict[str, int]:
    from executor.memtrace import trace

    r = trace(spec, precision=row["precision"], strategy=row["strategy"], world_size=row["world_size"],
              seq_len=row["seq_len"], micro_batch_size=row["micro_batch_size"],
              activation_checkpointing=row["activation_checkpointing"])
    return {"model_states": r.model_states_max, "transient": r.transient_max, "gathered": r.gathered_max,
            "peak": r.peak, "peak_phase": r.peak_phase, "traced_layers": list(r.traced_layers)}


def score(rows: list[dict], cache: dict) -> dict[str, list[float]]:
    gpu = load_catalog().gpu("h100-sxm")
    errs: dict[str, list[float]] = {g: [] for g in GROUPS}
    worst: dict[str, tuple[float, str]] = {}
    for row in rows:
        t = cache.get(key_of(row))
        if t is None or "error" in t:
            continue
        a = analytic(row, spec_of(row["family"]), gpu)
        for g in GROUPS:
            if t[g] <= 0:
                continue
            e = (a[g] - t[g]) / t[g]
            errs[g].append(e)
            if g not in worst or abs(e) > abs(worst[g][0]):
                worst[g] = (e, key_of(row))
        row["analytic"], row["traced"] = a, t
    return errs, worst


def report(rows: list[dict], errs, worst, verbose: bool, cache_errors: dict) -> bool:
    if verbose:
        print(f"{'configuration':70s} " + " ".join(f"{g[:12]:>22s}" for g in GROUPS))
        for row in rows:
            if "traced" not in row:
                continue
            cells = []
            for g in GROUPS:
                a, t = row["analytic"][g] / GIB, row["traced"][g] / GIB
                cells.append(f"{a:7.2f}/{t:7.2f} {((a - t) / t if t else 0):+5.0%}" if t else f"{'-':>22s}")
            print(f"{key_of(row):70s} " + " ".join(f"{c:>22s}" for c in cells))
        print()
    ok = True
    print(f"{'group':14s} {'n':>4s} {'median |err|':>13s} {'worst err':>10s}  worst configuration")
    for g in GROUPS:
        if not errs[g]:
            continue
        med = statistics.median(abs(e) for e in errs[g])
        w, where = worst[g]
        flag = "" if med <= TARGET["median"] and abs(w) <= TARGET["worst"] else "  (over target)"
        ok = ok and not flag
        print(f"{g:14s} {len(errs[g]):4d} {med:13.1%} {w:+10.1%}  {where}{flag}")
    failed = sorted({f"{r['model']} {r['precision']} {r['strategy']}: {cache_errors[key_of(r)]}" for r in rows
                     if key_of(r) in cache_errors})
    for line in failed:
        print(f"not traced: {line}")
    print(f"targets: median <= {TARGET['median']:.0%}, worst <= {TARGET['worst']:.0%} per group")
    return ok


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--families", default=",".join(FAMILIES), help="comma-separated families")
    p.add_argument("--quick", action="store_true", help="only the (1024, 8) shape")
    p.add_argument("--from-cache", action="store_true", help="do not trace: score the cached traces only")
    p.add_argument("--retrace", action="store_true", help="trace the selected configurations again (others stay cached)")
    p.add_argument("--strategies", default="single,fsdp", help="comma-separated: single, fsdp")
    p.add_argument("--cache", default=str(CACHE))
    p.add_argument("-v", "--verbose", action="store_true", help="one line per configuration")
    args = p.parse_args(argv)
    families = [f.strip() for f in args.families.split(",") if f.strip()]
    strategies = {s.strip() for s in args.strategies.split(",") if s.strip()}
    rows = [r for r in grid(families, args.quick) if r["strategy"] in strategies]
    cache_path = Path(args.cache)
    cache = json.loads(cache_path.read_text()) if cache_path.is_file() else {}
    if args.retrace:
        for row in rows:
            cache.pop(key_of(row), None)
    if not args.from_cache:
        started = time.time()
        for i, row in enumerate(rows):
            k = key_of(row)
            if k in cache:
                continue
            t0 = time.time()
            try:
                cache[k] = traced(row, spec_of(row["family"]))
            except Exception as exc:  # noqa: BLE001 - a configuration the tracer cannot run is reported, not fatal
                cache[k] = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"}
            print(f"[{i + 1}/{len(rows)}] {k}: {time.time() - t0:.1f} s", file=sys.stderr, flush=True)
            cache_path.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache_path.with_suffix(".tmp")
            tmp.write_text(json.dumps(cache, indent=1, sort_keys=True))
            tmp.replace(cache_path)
        print(f"traced in {time.time() - started:.0f} s", file=sys.stderr)
    errs, worst = score(rows, cache)
    cache_errors = {k: v["error"] for k, v in cache.items() if "error" in v}
    return 0 if report(rows, errs, worst, args.verbose, cache_errors) else 1


if __name__ == "__main__":
    sys.exit(main())
