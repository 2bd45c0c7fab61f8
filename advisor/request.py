"""Request files and data files: load a request YAML (the PlanRequest schema), and measure data files.

The flags of `sftplan plan` are turned into the same PlanRequest by advisor/cli/request.py.

`--dataset file.jsonl` is counted and measured: rows, sha256, token-length percentiles. Tokens come
from the model's own tokenizer when the model is a local directory holding tokenizer.json (the light
`tokenizers` library, imported lazily); otherwise from a stated characters-per-token approximation.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from advisor.errors import UserError
from advisor.models import DataFile, DatasetSpec, LongRows, PlanRequest
from advisor.rows import normalize_golden_row, normalize_row, read_jsonl
from advisor.yamlio import load_model_yaml

CHARS_PER_TOKEN = 4.0  # rule of thumb for English text with Llama/GPT-style BPE vocabularies
_MAX_TOKENIZED_ROWS = 20_000  # percentiles from a prefix sample; rows are still all counted


def load_request_yaml(path: str | Path) -> PlanRequest:
    return load_model_yaml(path, PlanRequest, hand_written=True)


def validate_request(data: dict[str, Any]) -> PlanRequest:
    """A PlanRequest from a mapping (CLI flags, the TUI's inputs); the first problem is a SpecError (a
    UserError) on its field path (``have[0].count``)."""
    return PlanRequest.from_dict(data)


def _on_field(field: str, read, *args, **kwargs):
    """``read(*args)``; a UserError it raises without a field (file:line problems) is put on ``field``."""
    try:
        return read(*args, **kwargs)
    except UserError as exc:
        if exc.field is not None:
            raise
        raise UserError(exc.message, field=field, names_file=True) from None


# --------------------------------------------------------------------------- data files
def _read(path: Path, convert, noun: str, what: str) -> tuple[str, list]:
    """(sha256 of the file's bytes, its rows) through advisor.rows, the reader `sftplan run` uses, in one
    streamed pass: the plan accepts and refuses exactly the rows the run does, by the same file:line."""
    h = hashlib.sha256()
    rows = read_jsonl(path, convert, noun, what, on_bytes=h.update)
    return h.hexdigest(), rows


def _text(messages: list[dict[str, str]]) -> str:
    return "\n".join(m["content"] for m in messages)


def data_file(path: str, *, golden: bool = True) -> DataFile:
    """A data file's path, sha256 and row count; every row checked (golden rows by default)."""
    p = Path(path)
    sha, rows = (_on_field("golden", _read, p, normalize_golden_row, "golden", "golden set") if golden
                 else _on_field("dataset.file", _read, p, normalize_row, "training", "training data"))
    return DataFile(path=str(p), sha256=sha, rows=len(rows))


def _tokenizer_counter(model: str):
    """A token counter from the model directory's tokenizer.json, or None."""
    tok_path = Path(model) / "tokenizer.json"
    if not tok_path.is_file():
        return None
    try:
        from tokenizers import Tokenizer  # here: the train extra's; without it, the approximation
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


_LONG_ROWS_SHOWN = 5  # file:lines of over-long rows named in the plan
_COUNT_BATCH = 2_000


def _prompt(messages: list[dict[str, str]]) -> str:
    """The text before the first answer: what must fit for at least one answer token to remain."""
    first = next(i for i, m in enumerate(messages) if m["role"] == "assistant")
    return _text(messages[:first])


def long_rows(path: Path, rows: list, count, max_seq_len: int, rule: str, method: str) -> LongRows:
    """Rows over ``max_seq_len`` under the rule (DatasetSpec.over_max_seq_len), counted on every row."""
    truncated = refused = 0
    first: list[str] = []
    for start in range(0, len(rows), _COUNT_BATCH):
        batch = rows[start:start + _COUNT_BATCH]
        totals = count([_text(m) for _, m in batch])
        over = [(line, m) for (line, m), n in zip(batch, totals) if n > max_seq_len]
        if not over:
            continue
        prompts = count([_prompt(m) for _, m in over]) if rule == "truncate-response" else [max_seq_len] * len(over)
        for (line, _), n in zip(over, prompts):
            if n >= max_seq_len:
                refused += 1
            else:
                truncated += 1
            if len(first) < _LONG_ROWS_SHOWN:
                first.append(f"{path}:{line}")
    return LongRows(max_seq_len=max_seq_len, truncated=truncated, refused=refused, first=first,
                    counted_by=method + "; message text only, the chat template's own tokens not counted")


def measure_dataset(path: str, model: str, max_seq_len: int | None = None,
                    over_max_seq_len: str = "truncate-response") -> DatasetSpec:
    """Rows, sha256, token percentiles; with ``max_seq_len``, also how many rows are over it (``long_rows``)."""
    p = Path(path)
    sha, rows = _on_field("dataset.file", _read, p, normalize_row, "training", "training data")
    texts = [_text(messages) for _, messages in rows]
    sample = texts[:_MAX_TOKENIZED_ROWS]
    counter = _tokenizer_counter(model)
    if counter is not None:
        method = f"tokenizer.json of {model}"
    else:
        counter = lambda batch: [max(1, round(len(t) / CHARS_PER_TOKEN)) for t in batch]  # noqa: E731
        method = f"approximation: {CHARS_PER_TOKEN:g} characters per token"
    counts = counter(sample)
    whole_method = method
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
        over_max_seq_len=over_max_seq_len,
        long_rows=None if max_seq_len is None else long_rows(p, rows, counter, max_seq_len, over_max_seq_len,
                                                            whole_method),
    )
