"""A corpus of plans (8 presets x 8 requests) and of request errors, written to a folder and compared.

A refactor that should not change what the planner says is checked against a baseline generated
before it:

    python benchmarks/plan_corpus.py --write /tmp/corpus-before     # on the old code
    python benchmarks/plan_corpus.py --check /tmp/corpus-before     # on the new code

Each plan is written as <name>/plan.yaml and <name>/plan.md (what `sftplan plan -o` writes);
errors.txt holds the one-line message of each bad request. `--check` regenerates everything in a
temporary folder and compares byte for byte: it prints the files that differ with a unified diff
of their first lines, and exits 1 when anything differs (0 when identical).
"""

from __future__ import annotations

import argparse
import difflib
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

PRESETS = ("llama-3.1-8b", "llama-3.1-70b", "llama-3.1-405b", "mixtral-8x7b", "qwen2.5-7b", "gemma-2-9b",
           "phi-3-mini", "mpt-7b")

GOLDEN = {"path": "golden.jsonl", "sha256": "0" * 64, "rows": 200}

# name -> request fields besides the model
REQUESTS: dict[str, dict] = {
    "basic": dict(dataset=dict(examples=50_000, avg_tokens=1024)),
    "retask-budget": dict(dataset=dict(examples=120_000, avg_tokens=800), goals=["deep-retask"], budget_usd=500),
    "reasoning-deadline": dict(dataset=dict(examples=80_000, avg_tokens=1500), goals=["hard-reasoning"],
                               deadline_hours=2),
    "have-h100": dict(dataset=dict(examples=60_000, avg_tokens=900), goals=["new-tokenizer"],
                      have=[dict(gpu="h100-sxm", count=8)]),
    "pinned-a100": dict(dataset=dict(examples=40_000, avg_tokens=1024), goals=["lora-below-bar"],
                        gpu="a100-80gb", num_gpus=8, strategy="fsdp"),
    "nvidia-packing-instruct": dict(dataset=dict(examples=200_000, avg_tokens=2048), goals=["deep-retask"],
                                    nvidia_stack=True, packing=True, base="instruct", max_seq_len=4096),
    "forced-full-small": dict(dataset=dict(examples=5_000, avg_tokens=600), method="full-sft", learning_rate=1e-5,
                              epochs=2, golden=GOLDEN, have=[dict(gpu="a100-80gb", count=4)]),
    "forced-lora-tight": dict(dataset=dict(examples=30_000, avg_tokens=700), method="lora", budget_usd=50,
                              deadline_hours=1, max_gpus=16, precision="bf16-pure", gate_tolerance=0.05,
                              min_golden_score=0.5, goals=["fast-iteration"]),
}

# name -> bad request (each must be refused with one line)
BAD_REQUESTS: dict[str, dict] = {
    "unknown-owned-gpu": dict(model="llama-3.1-8b", dataset=dict(examples=50_000, avg_tokens=1000),
                              have=[dict(gpu="h10-sxm", count=8)]),
    "unknown-pinned-gpu": dict(model="llama-3.1-8b", dataset=dict(examples=50_000, avg_tokens=1000), gpu="h10"),
    "unknown-model": dict(model="llama-9", dataset=dict(examples=50_000, avg_tokens=1000)),
    "seq-len-over-context": dict(model="phi-3-mini", dataset=dict(examples=50_000, avg_tokens=1000), max_seq_len=8192),
    "max-gpus-allows-none": dict(model="llama-3.1-8b", dataset=dict(examples=50_000, avg_tokens=1000), gpu="h100-sxm",
                                 max_gpus=1, strategy="fsdp"),
    "tiny-generic": dict(model="0.0001B", dataset=dict(examples=50_000, avg_tokens=1000)),
    "zero-examples": dict(model="llama-3.1-8b", dataset=dict(examples=0, avg_tokens=1000)),
    "negative-budget": dict(model="llama-3.1-8b", dataset=dict(examples=50_000, avg_tokens=1000), budget_usd=-5),
}


def _plan_of(data: dict):
    from advisor.catalog import load_catalog
    from advisor.models import PlanRequest
    from advisor.planner import plan

    return plan(PlanRequest.from_dict(data), load_catalog())


def write_corpus(out: Path) -> int:
    """Write every plan and errors.txt under ``out``; returns the number of plans."""
    from advisor.errors import UserError
    from advisor.planfile import to_yaml
    from advisor.render import to_markdown

    out.mkdir(parents=True, exist_ok=True)
    n = 0
    for preset in PRESETS:
        for name, fields in REQUESTS.items():
            p = _plan_of({"model": preset, **fields})
            folder = out / f"{preset}--{name}"
            folder.mkdir(exist_ok=True)
            (folder / "plan.yaml").write_text(to_yaml(p), encoding="utf-8")
            (folder / "plan.md").write_text(to_markdown(p), encoding="utf-8")
            n += 1
    lines = []
    for name, data in BAD_REQUESTS.items():
        try:
            _plan_of(data)
            message = "(accepted)"
        except UserError as exc:
            field = getattr(exc, "field", None)
            message = f"[{field}] {exc}" if field else str(exc)
        except ValueError as exc:  # a schema error before the planner runs
            message = "schema: " + str(exc).splitlines()[0]
        lines.append(f"{name}: {message}")
    (out / "errors.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return n


def compare(expected: Path, actual: Path) -> list[str]:
    """Human-readable differences between two corpus folders (empty when byte-identical)."""
    diffs = []
    a = {p.relative_to(expected) for p in expected.rglob("*") if p.is_file()}
    b = {p.relative_to(actual) for p in actual.rglob("*") if p.is_file()}
    for rel in sorted(a - b):
        diffs.append(f"missing now: {rel}")
    for rel in sorted(b - a):
        diffs.append(f"new now: {rel}")
    for rel in sorted(a & b):
        old, new = (expected / rel).read_bytes(), (actual / rel).read_bytes()
        if old != new:
            udiff = difflib.unified_diff(old.decode().splitlines(), new.decode().splitlines(),
                                         f"baseline/{rel}", f"now/{rel}", lineterm="", n=0)
            body = [ln for ln in udiff][:40]
            diffs.append(f"differs: {rel}\n" + "\n".join("    " + ln for ln in body))
    return diffs


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = ap.add_mutually_exclusive_group(required=True)
    group.add_argument("--write", metavar="DIR", help="write the corpus into DIR")
    group.add_argument("--check", metavar="DIR", help="regenerate and compare with the corpus in DIR")
    args = ap.parse_args(argv)
    if args.write:
        n = write_corpus(Path(args.write))
        print(f"wrote {n} plans and {len(BAD_REQUESTS)} error messages to {args.write}")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        n = write_corpus(Path(tmp))
        diffs = compare(Path(args.check), Path(tmp))
    if not diffs:
        print(f"identical: {n} plans (plan.yaml + plan.md) and {len(BAD_REQUESTS)} error messages")
        return 0
    print("\n".join(diffs))
    print(f"{len(diffs)} file(s) differ out of {2 * n + 1}")
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
