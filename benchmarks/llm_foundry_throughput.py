"""Estimator throughput against llm-foundry's published MPT benchmark table (beyond measurements.yaml).

    .venv/bin/python benchmarks/llm_foundry_throughput.py [rows.yaml]

The rows (benchmarks/data/llm_foundry_rows.yaml) span 125M to 70B, sequence 1k to 64k, 8 to 128 GPUs,
with and without activation checkpointing, on A100 40/80GB and H100. Each is estimated with the
catalog's tier (the network set to the cluster's where the table states it) and printed beside the
measured tokens/s per GPU; then the median and worst absolute error per tier and overall.
"""

from __future__ import annotations

import dataclasses
import statistics
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from advisor.catalog import load_catalog  # noqa: E402
from advisor.estimate import estimate  # noqa: E402
from advisor.specs import ModelSpec, TrainConfig  # noqa: E402

ROWS = REPO / "benchmarks" / "data" / "llm_foundry_rows.yaml"


def mpt(name: str, arch: dict) -> ModelSpec:
    h = arch["hidden_size"]
    return ModelSpec(name=name, family="mpt", source="config.json", hidden_size=h, num_layers=arch["num_layers"],
                     num_heads=arch["num_heads"], num_kv_heads=arch["num_heads"], ffn_size=4 * h, ffn_kind="mlp",
                     vocab_size=50368, tied_embeddings=True, max_context=65536)


def compare(path: Path = ROWS) -> list[tuple[dict, object, float]]:
    """(row, estimate, relative error of tokens/s per GPU) for every row of the file."""
    data = yaml.safe_load(Path(path).read_text())
    catalog = load_catalog()
    out = []
    for row in data["rows"]:
        gpu = catalog.gpu(row["gpu"])
        network = data.get("network_gbit_per_s", {}).get(gpu.id)
        if network:
            gpu = dataclasses.replace(gpu, inter_node_bandwidth_gbit_per_s=float(network))
        cfg = TrainConfig(num_gpus=row["num_gpus"], strategy="fsdp", seq_len=row["seq_len"],
                          micro_batch_size=row["micro_batch_size"], grad_accum=row["grad_accum"],
                          activation_checkpointing=row["activation_checkpointing"])
        est = estimate(mpt(row["model"], data["architectures"][row["model"]]), gpu, cfg)
        out.append((row, est, est.tokens_per_s_per_gpu / row["tokens_per_s_per_gpu"] - 1))
    return out


def main(argv: list[str]) -> int:
    errors: dict[str, list[float]] = {}
    for row, est, err in compare(Path(argv[1]) if len(argv) > 1 else ROWS):
        cfg = est.config
        errors.setdefault(row["gpu"], []).append(err)
        print(f"{row['model']:>9} {row['gpu']:>9} x{cfg.num_gpus:<3} seq {cfg.seq_len:>5} mb {cfg.micro_batch_size:>2} "
              f"AC {'on ' if cfg.activation_checkpointing else 'off'}  est {est.tokens_per_s_per_gpu:>8,.0f}  "
              f"measured {row['tokens_per_s_per_gpu']:>8,.0f}  error {err:+6.1%}  ({est.bottleneck})")
    every = [abs(e) for errs in errors.values() for e in errs]
    for tier, errs in errors.items():
        print(f"{tier}: median |error| {statistics.median(abs(e) for e in errs):.1%}, "
              f"mean {statistics.mean(errs):+.1%}, worst {max(abs(e) for e in errs):.1%} over {len(errs)} rows")
    print(f"all: median |error| {statistics.median(every):.1%}, worst {max(every):.1%} over {len(every)} rows; "
          f"{sum(e <= 0.10 for e in every)}/{len(every)} within 10%")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
