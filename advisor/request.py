"""Request files and data files: load a request YAML (the PlanRequest schema), and measure data files.

The flags of `sftplan plan` are turned into the same PlanRequest by advisor/cli/request.py.

`--dataset file.jsonl` is counted and measured: rows, sha256, token-length percentiles. Tokens come
from the model's own tokenizer when the model is a local directory holding tokenizer.json (the light
`tokenizers` library, imported lazily); otherwise from a stated characters-per-token approximation.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from advisor.errors import UserError
from advisor.models import DataFile, DatasetSpec, PlanRequest
from advisor.yamlio import load_model_yaml

CHARS_PER_TOKEN = 4.0  # rule of thumb for English text with Llama/GPT-style BPE vocabularies
_MAX_TOKENIZED_ROWS = 20_000  # percentiles from a prefix sample; rows are still all counted


def load_request_yaml(path: str | Path) -> PlanRequest:
    return load_model_yaml(path, PlanRequest)


# --------------------------------------------------------------------------- data files
def _sha256_and_lines(path: Path) -> tuple[str, list[bytes]]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a directory, expected a .jsonl file") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.__class__.__name__})") from None
    return hashlib.sha256(raw).hexdigest(), [ln for ln in raw.splitlines() if ln.strip()]


def _row_text(row: Any) -> str:
    """Every string in the row (prompt/response, messages[].content, text...), joined."""
    if isinstance(row, str):
        return row
    if isinstance(row, dict):
        return "\n".join(_row_text(v) for v in row.values())
    if isinstance(row, list):
        return "\n".join(_row_text(v) for v in row)
    return ""


def _parse_rows(path: Path, lines: list[bytes]) -> list[str]:
    texts = []
    for i, line in enumerate(lines, 1):
        try:
            row = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise UserError(f"{path}:{i}: not a JSON object (expected JSON Lines)") from None
        if not isinstance(row, dict):
            raise UserError(f"{path}:{i}: expected a JSON object per line")
        texts.append(_row_text(row))
    return texts


def data_file(path: str) -> DataFile:
    p = Path(path)
    sha, lines = _sha256_and_lines(p)
    _parse_rows(p, lines)
    if not lines:
        raise UserError(f"{p}: empty file")
    return DataFile(path=str(p), sha256=sha, rows=len(lines))


def _tokenizer_counter(model: str):
    """A token counter from the model directory's tokenizer.json, or None."""
    tok_path = Path(model) / "tokenizer.json"
    if not tok_path.is_file():
        return None
    try:
        from tokenizers import Tokenizer  # lazy: light, but only needed here
    except ImportError:
        return None
    try:
        tok = Tokenizer.from_file(str(tok_path))
    except Exception:  # noqa: BLE001 - a broken tokenizer.json falls back to the approximation
        return None
    return lambda texts: [len(e.ids) for e in tok.encode_batch(texts)]


def _percentile(sorted_vals: list[int], q: float) -> int:
    idx = min(len(sorted_vals) - 1, max(0, int(round(q * (len(sorted_vals) - 1)))))
    return sorted_vals[idx]


def measure_dataset(path: str, model: str) -> DatasetSpec:
    p = Path(path)
    sha, lines = _sha256_and_lines(p)
    texts = _parse_rows(p, lines)
    if not texts:
        raise UserError(f"{p}: no rows")
    sample = texts[:_MAX_TOKENIZED_ROWS]
    counter = _tokenizer_counter(model)
    if counter is not None:
        counts = counter(sample)
        method = f"tokenizer.json of {model}"
    else:
        counts = [max(1, round(len(t) / CHARS_PER_TOKEN)) for t in sample]
        method = f"approximation: {CHARS_PER_TOKEN:g} characters per token"
    if len(sample) < len(texts):
        method += f" (first {len(sample):,} rows)"
    counts = sorted(max(1, c) for c in counts)
    return DatasetSpec(
        examples=len(texts),
        avg_tokens=max(1, round(sum(counts) / len(counts))),
        file=DataFile(path=str(p), sha256=sha, rows=len(texts)),
        token_p50=_percentile(counts, 0.50),
        token_p95=_percentile(counts, 0.95),
        token_max=counts[-1],
        token_count_method=method,
    )
