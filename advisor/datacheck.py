"""Data checks before approval: exact and near duplicates, PII, golden/train leakage, length, empty answers.

Pure core: ``check(path, ...)`` streams a training JSONL file through the same row formats as ``plan``
and ``run`` (advisor/rows.py, the one row reader) and returns a ``CheckResult``; it prints nothing.

- Exact duplicates: the whole conversation (role + content of every message) lower-cased with runs of
  whitespace collapsed, hashed (BLAKE2b-128); groups of line numbers, the first line first.
- Near duplicates (advisor/neardup.py): MinHash over word shingles of that normalised text, LSH
  candidates, each pair confirmed by its estimated Jaccard similarity against the threshold.
- PII (advisor/pii.py): Microsoft Presidio's predefined pattern recognizers (no NLP model, so no spaCy
  model load), each run only where it can match (an email needs an '@', a phone number 7 digits...).
  Names and locations need a spaCy NER model: used only when the caller names one.
- Leakage: golden rows whose prompt, or prompt + answer, is an exact or near duplicate of a training row's.
- Length: tokens per row (the model's tokenizer.json when given, else ``CHARS_PER_TOKEN`` from
  advisor/request.py) against ``max_seq_len``; the executor truncates longer rows (executor/data.py).
- Empty answers: rows whose final answer is empty or whitespace only. The row reader rejects them, so
  ``plan``/``run`` would stop on them: here they are findings with their line numbers, not bad input.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from advisor.errors import UserError
from advisor.neardup import MINHASH_SEED, MinHasher, NearGroup, lsh_bands, near_groups, shingles  # noqa: F401 (re-exported)
from advisor.pii import NLP_ENTITIES, PII_MIN_SCORE, PII_RECOGNIZERS, pii_scanner  # noqa: F401 (re-exported)
from advisor.rows import BadRows, iter_jsonl, normalize_golden_row, normalize_row

DEFAULT_NEAR_THRESHOLD = 0.8
DEFAULT_SHINGLE_WORDS = 3
DEFAULT_NUM_PERM = 128
FIRST_LINES = 5  # how many line numbers of each kind a summary keeps


# --------------------------------------------------------------------------- results
@dataclass(frozen=True)
class PiiHit:
    line: int
    kind: str  # Presidio entity type, e.g. EMAIL_ADDRESS
    field: str  # the row's field, e.g. "response" or "messages[2].content"
    score: float


@dataclass(frozen=True)
class Leak:
    golden_line: int
    train_line: int
    kind: str  # "exact prompt+answer" | "exact prompt" | "near prompt+answer" | "near prompt"
    similarity: float


@dataclass
class TooLong:
    max_seq_len: int
    count: int = 0
    lines: list[int] = field(default_factory=list)
    max_tokens: int = 0
    tokens_over_total: int = 0  # tokens past max_seq_len, summed over rows: what truncation drops
    prompt_too_long_lines: list[int] = field(default_factory=list)  # no answer token left: the run stops


@dataclass
class CheckResult:
    path: str
    rows: int
    exact_duplicates: list[list[int]]
    near_duplicates: list[NearGroup]
    pii: list[PiiHit]
    leakage: list[Leak]
    too_long: TooLong
    empty_answers: list[int]
    settings: dict[str, Any]
    notes: list[str]
    golden: str | None = None
    golden_rows: int = 0
    tokens_total: int = 0

    @property
    def duplicate_rows(self) -> int:
        """Rows a dedup would remove (every row of a group but its first), exact then near."""
        return sum(len(g) - 1 for g in self.exact_duplicates) + sum(len(g.lines) - 1 for g in self.near_duplicates)

    @property
    def found(self) -> bool:
        return bool(self.exact_duplicates or self.near_duplicates or self.pii or self.leakage
                    or self.too_long.count or self.empty_answers)

    def to_dict(self) -> dict[str, Any]:
        """The `--json` object: rows, exact_duplicates, near_duplicates [{lines, similarity}], pii
        [{line, kind, field}], leakage [{golden_line, train_line, kind}], too_long {count, lines},
        empty_answers, settings."""
        return {
            "file": self.path, "rows": self.rows, "golden": self.golden, "golden_rows": self.golden_rows,
            "exact_duplicates": self.exact_duplicates,
            "near_duplicates": [asdict(g) for g in self.near_duplicates],
            "pii": [asdict(h) for h in self.pii],
            "leakage": [asdict(x) for x in self.leakage],
            "too_long": asdict(self.too_long),
            "empty_answers": self.empty_answers,
            "tokens_total": self.tokens_total,
            "settings": self.settings,
            "notes": self.notes,
        }


# --------------------------------------------------------------------------- rows
def _answer_key(row: dict) -> str | None:
    """The key of the row's final answer when it is a string that is empty or whitespace only."""
    if "messages" in row:
        msgs = row["messages"]
        if isinstance(msgs, list) and msgs and isinstance(msgs[-1], dict) and msgs[-1].get("role") == "assistant":
            c = msgs[-1].get("content")
            return f"messages[{len(msgs) - 1}].content" if isinstance(c, str) and not c.strip() else None
        return None
    for key in ("response", "completion", "output"):
        if isinstance(row.get(key), str) and not row[key].strip():
            return key
    return None


def _with_answer(row: dict, key: str) -> dict:
    """The row with a placeholder answer in place of its empty one (to validate the rest of it)."""
    row = dict(row)
    if key.startswith("messages["):
        msgs = list(row["messages"])
        msgs[-1] = {**msgs[-1], "content": "-"}
        row["messages"] = msgs
    else:
        row[key] = "-"
    return row


def trained_fields(row: dict) -> list[tuple[str, str]]:
    """(field name as in the file, text) of every string the model is trained on."""
    if "messages" in row:
        return [(f"messages[{i}].content", m["content"]) for i, m in enumerate(row["messages"])]
    keys = ("system", "prompt", "response", "completion") if "prompt" in row else ("system", "instruction", "input", "output")
    return [(k, row[k]) for k in keys if isinstance(row.get(k), str) and row[k]]


@dataclass
class Row:
    line: int
    raw: dict
    messages: list[dict[str, str]]
    empty_answer: bool


def _training_row(obj: Any) -> Row | str:
    got = normalize_row(obj)
    if not isinstance(got, str):
        return Row(0, obj, got, False)
    if isinstance(obj, dict) and (key := _answer_key(obj)):
        retry = normalize_row(_with_answer(obj, key))
        if not isinstance(retry, str):
            return Row(0, obj, retry, True)
    return got


def iter_rows(path: str | Path, bad: BadRows, progress: Callable[[int, int], None] | None = None) -> Iterator[Row]:
    """Stream the file's rows through the one row reader (advisor/rows.py: the formats ``plan`` and
    ``run`` accept). Bad rows are added to ``bad`` (the caller raises once at the end: nothing is dropped
    silently); a row whose only fault is an empty answer is yielded with
    ``empty_answer`` set. ``progress(bytes_read, total_bytes)`` is called every 1,000 lines."""
    path = Path(path)
    try:
        total = path.stat().st_size
    except OSError:
        total = 0
    done = 0

    def count(chunk: bytes) -> None:
        nonlocal done
        done += len(chunk)

    for n, (lineno, got) in enumerate(iter_jsonl(path, _training_row, what="training data",
                                                 on_bytes=count if progress else None), 1):
        if progress and n % 1000 == 0:
            progress(done, total)
        if isinstance(got, str):
            bad.add(lineno, got)
            continue
        got.line = lineno
        yield got
    if progress:
        progress(total, total)


def normalized_text(messages: list[dict[str, str]]) -> str:
    """Role and content of every message, lower-cased, runs of whitespace collapsed to one space."""
    return " ".join(" ".join(f"{m['role']}: {m['content']}" for m in messages).lower().split())


def _digest(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).digest()


# --------------------------------------------------------------------------- golden set
@dataclass
class _Golden:
    line: int
    prompt: str  # normalised conversation before the answer
    full: str  # prompt + answer


def _read_golden(path: str | Path) -> list[_Golden]:
    """The golden set through the gate's own row rules (advisor/rows.py), so the same rows count."""
    path = Path(path)  # named as iter_rows and rows.read_jsonl name theirs
    out, bad = [], BadRows(path, "golden")
    for line, got in iter_jsonl(path, normalize_golden_row, what="golden set"):
        if isinstance(got, str):
            bad.add(line, got)
            continue
        msgs, expected = got
        out.append(_Golden(line, normalized_text(msgs), normalized_text(msgs + [{"role": "assistant", "content": expected}])))
    bad.raise_if_any()
    if not out:
        raise UserError(f"{path}: no golden rows")
    return out


# --------------------------------------------------------------------------- the check
def token_counter(model: str | None) -> tuple[Callable[[list[str]], list[int]], str]:
    """(texts -> token counts, how they are counted): the model directory's tokenizer.json, else the
    characters-per-token approximation of advisor/request.py. A model that is neither a path that exists
    nor a preset or a size ('8B') is refused on ``model``: a mistyped directory must not count by the
    approximation unseen."""
    from advisor.request import CHARS_PER_TOKEN, _tokenizer_counter

    if model:
        if not Path(model).exists():
            from advisor.architecture import resolve_model

            resolve_model(model)  # a preset or a size: the approximation below; else UserError on 'model'
        counter = _tokenizer_counter(model)
        if counter is not None:
            return counter, f"tokenizer.json of {model} (message text, chat template not counted)"
    return (lambda texts: [max(1, round(len(t) / CHARS_PER_TOKEN)) for t in texts],
            f"approximation: {CHARS_PER_TOKEN:g} characters per token" + (f" (no tokenizer.json in {model})" if model else ""))


def check(path: str | Path, *, golden: str | Path | None = None, max_seq_len: int = 2048,
          near_threshold: float = DEFAULT_NEAR_THRESHOLD, shingle_words: int = DEFAULT_SHINGLE_WORDS,
          num_perm: int = DEFAULT_NUM_PERM, pii: bool = True, spacy_model: str | None = None,
          model: str | None = None, progress: Callable[[int, int], None] | None = None) -> CheckResult:
    """Every check over one streamed pass of the training file (and the golden set, read first)."""
    if not 0 < near_threshold <= 1:
        raise UserError(f"must be in (0, 1], got {near_threshold}", field="near_threshold")
    if shingle_words < 1:
        raise UserError(f"must be >= 1, got {shingle_words}", field="shingle_words")
    if max_seq_len < 1:
        raise UserError(f"must be > 0, got {max_seq_len}", field="max_seq_len")
    count_tokens, token_method = token_counter(model)
    notes: list[str] = []
    scan = pii_scanner(spacy_model) if pii else None
    if not pii:
        notes.append("PII not checked (pii off)")
    elif not spacy_model:
        notes.append("names and locations (PERSON, LOCATION) not checked: they need a spaCy NER model, none "
                     "named; install one (e.g. en_core_web_lg) and name it (`sftplan data check --spacy-model en_core_web_lg`)")

    golden_rows: list[_Golden] = []
    g_prompt: dict[bytes, list[int]] = {}
    g_full: dict[bytes, list[int]] = {}
    g_prompt_mh = g_full_mh = None
    if golden:
        golden_rows = _read_golden(golden)
        g_prompt_mh = MinHasher(near_threshold, shingle_words, num_perm)
        g_full_mh = MinHasher(near_threshold, shingle_words, num_perm)
        for g in golden_rows:
            g_prompt.setdefault(_digest(g.prompt), []).append(g.line)
            g_full.setdefault(_digest(g.full), []).append(g.line)
            g_prompt_mh.add(g.line, g_prompt_mh.signature(g.prompt))
            g_full_mh.add(g.line, g_full_mh.signature(g.full))

    near = MinHasher(near_threshold, shingle_words, num_perm)
    exact: dict[bytes, list[int]] = {}
    edges: dict[int, list[tuple[int, float]]] = {}
    hits: list[PiiHit] = []
    leaks: dict[tuple[int, int], Leak] = {}
    too_long = TooLong(max_seq_len=max_seq_len)
    empty: list[int] = []
    bad = BadRows(path, "training")
    rows = tokens_total = 0
    batch: list[tuple[int, str, str]] = []

    def flush() -> None:
        nonlocal tokens_total
        counts = count_tokens([t for _, t, _ in batch])
        prompt_counts = count_tokens([p for _, _, p in batch])
        for (line, _, _), n, p in zip(batch, counts, prompt_counts):
            tokens_total += n
            if n > max_seq_len:
                too_long.count += 1
                too_long.lines.append(line)
                too_long.max_tokens = max(too_long.max_tokens, n)
                too_long.tokens_over_total += n - max_seq_len
                if p >= max_seq_len:
                    too_long.prompt_too_long_lines.append(line)
        batch.clear()

    for row in iter_rows(path, bad, progress):
        rows += 1
        line, msgs = row.line, row.messages
        if row.empty_answer:
            empty.append(line)
        text = normalized_text(msgs)
        prompt_msgs = msgs[:-1]
        batch.append((line, "\n".join(m["content"] for m in msgs), "\n".join(m["content"] for m in prompt_msgs)))
        if len(batch) >= 1000:
            flush()
        key = _digest(text)
        group = exact.setdefault(key, [])
        group.append(line)
        if len(group) == 1:  # an exact duplicate is reported with its group, not again as near
            sig = near.signature(text)
            if pairs := near.matches(sig):
                edges[line] = pairs
            near.add(line, sig)
        if scan is not None:
            for fname, ftext in trained_fields(row.raw):
                for kind, score, _, _ in scan(ftext):
                    hits.append(PiiHit(line, kind, fname, round(score, 2)))
        if golden_rows:
            prompt = normalized_text(prompt_msgs)
            for gl in g_full.get(key, ()):
                leaks[(gl, line)] = Leak(gl, line, "exact prompt+answer", 1.0)
            for gl in g_prompt.get(_digest(prompt), ()):
                leaks.setdefault((gl, line), Leak(gl, line, "exact prompt", 1.0))
            for gl, sim in g_full_mh.matches(g_full_mh.signature(text)):
                leaks.setdefault((gl, line), Leak(gl, line, "near prompt+answer", round(sim, 3)))
            for gl, sim in g_prompt_mh.matches(g_prompt_mh.signature(prompt)):
                leaks.setdefault((gl, line), Leak(gl, line, "near prompt", round(sim, 3)))
    if batch:
        flush()
    bad.raise_if_any()
    if not rows:
        raise UserError(f"{path}: no training rows")
    settings = {
        "near_threshold": near_threshold, "shingle_words": shingle_words, "num_perm": num_perm,
        "lsh_bands": lsh_bands(near_threshold, num_perm), "minhash": "rensa RMinHash",
        "normalisation": "role + content of every message, lower-cased, whitespace collapsed",
        "max_seq_len": max_seq_len, "token_count_method": token_method,
        "pii": ([e for _, e, _, _ in PII_RECOGNIZERS] + (list(NLP_ENTITIES) if spacy_model else [])) if pii else [],
        "pii_min_score": PII_MIN_SCORE, "spacy_model": spacy_model,
    }
    return CheckResult(
        path=str(path), rows=rows,
        exact_duplicates=[g for g in exact.values() if len(g) > 1],
        near_duplicates=near_groups(edges), pii=hits,
        leakage=sorted(leaks.values(), key=lambda x: (x.golden_line, x.train_line)),
        too_long=too_long, empty_answers=empty, settings=settings, notes=notes,
        golden=str(golden) if golden else None, golden_rows=len(golden_rows), tokens_total=tokens_total)


# --------------------------------------------------------------------------- copies: dedup, redact
def write_lines_atomic(path: str | Path, lines: Iterator[bytes]) -> None:
    """The copy streamed whole or not at all (advisor.yamlio.atomic_write_lines)."""
    from advisor.yamlio import atomic_write_lines

    atomic_write_lines(path, lines)


def _same_file(a: str | Path, b: str | Path) -> bool:
    try:
        return Path(a).resolve() == Path(b).resolve()
    except OSError:
        return False


def duplicate_lines(result: CheckResult) -> set[int]:
    """Lines a dedup drops: every row of an exact or near group except its first."""
    drop = {line for g in result.exact_duplicates for line in g[1:]}
    drop |= {line for g in result.near_duplicates for line in g.lines[1:]}
    return drop


def dedup(src: str | Path, dst: str | Path, *, near_threshold: float | None = DEFAULT_NEAR_THRESHOLD,
          shingle_words: int = DEFAULT_SHINGLE_WORDS) -> tuple[int, int]:
    """Copy ``src`` to ``dst`` without duplicates (exact ones, and near ones unless ``near_threshold`` is
    None), keeping the first row of each group byte for byte. Returns (rows kept, rows removed)."""
    if _same_file(src, dst):
        raise UserError(f"{dst}: is the input file; write the copy elsewhere")
    r = check(src, near_threshold=DEFAULT_NEAR_THRESHOLD if near_threshold is None else near_threshold,
              shingle_words=shingle_words, pii=False)
    drop = duplicate_lines(r) if near_threshold is not None else {line for g in r.exact_duplicates for line in g[1:]}

    def kept() -> Iterator[bytes]:
        with Path(src).open("rb") as fh:
            for lineno, line in enumerate(fh, 1):
                if line.strip() and lineno not in drop:
                    yield line if line.endswith(b"\n") else line + b"\n"

    write_lines_atomic(dst, kept())
    return r.rows - len(drop), len(drop)


def redact(src: str | Path, dst: str | Path, *, spacy_model: str | None = None) -> int:
    """Copy ``src`` to ``dst`` with every PII entity the check finds replaced by ``<KIND>`` (presidio-anonymizer's
    default replace operator), field by field; other rows are copied byte for byte. Returns the entities replaced."""
    if _same_file(src, dst):
        raise UserError(f"{dst}: is the input file; write the redacted copy elsewhere")
    try:
        from presidio_anonymizer import AnonymizerEngine
        from presidio_anonymizer.entities import RecognizerResult
    except ImportError:
        raise UserError("redact needs presidio-anonymizer: pip install 'sftplan[data]'",
                        field="data_check.pii_decision") from None
    engine = AnonymizerEngine()
    scan = pii_scanner(spacy_model)
    bad = BadRows(src, "training")
    replaced = 0

    def rows() -> Iterator[bytes]:
        nonlocal replaced
        with Path(src).open("rb") as fh:
            raw_lines = iter(fh)
            line_no = 0
            for row in iter_rows(src, bad):
                while line_no < row.line:  # the raw line of this row (blank lines were skipped by the reader)
                    raw, line_no = next(raw_lines), line_no + 1
                changed = False
                for fname, text in trained_fields(row.raw):
                    hits = scan(text)
                    if not hits:
                        continue
                    results = [RecognizerResult(entity_type=k, start=a, end=b, score=sc) for k, sc, a, b in hits]
                    _set_field(row.raw, fname, engine.anonymize(text=text, analyzer_results=results).text)
                    replaced += len(hits)
                    changed = True
                if changed:
                    yield (json.dumps(row.raw, ensure_ascii=False) + "\n").encode("utf-8")
                else:
                    yield raw if raw.endswith(b"\n") else raw + b"\n"
        bad.raise_if_any()  # inside the write: a file with bad rows leaves no copy behind

    write_lines_atomic(dst, rows())
    return replaced


def _set_field(row: dict, fname: str, value: str) -> None:
    if fname.startswith("messages["):
        row["messages"][int(fname[9:fname.index("]")])]["content"] = value
    else:
        row[fname] = value


def summary(result: CheckResult, *, decision: str | None = None, redacted_from: dict | None = None) -> dict[str, Any]:
    """The plan's DataCheck fields (advisor/models.py): counts and the first file:line of each kind."""
    f = result.path
    dups = sorted(duplicate_lines(result))
    pii_first, seen = [], set()
    for h in result.pii:
        if h.line not in seen and len(pii_first) < FIRST_LINES:
            seen.add(h.line)
            pii_first.append(f"{f}:{h.line} ({h.kind} in {h.field})")
    s = result.settings
    return {
        "rows": result.rows,
        "exact_duplicate_rows": sum(len(g) - 1 for g in result.exact_duplicates),
        "near_duplicate_rows": sum(len(g.lines) - 1 for g in result.near_duplicates),
        "duplicate_first": [f"{f}:{n}" for n in dups[:FIRST_LINES]],
        "pii_hits": len(result.pii), "pii_kinds": sorted({h.kind for h in result.pii}), "pii_first": pii_first,
        "pii_decision": decision, "redacted_from": redacted_from,
        "leakage": len({x.golden_line for x in result.leakage}),
        "leakage_first": [f"{result.golden}:{x.golden_line} = {f}:{x.train_line} ({x.kind})" for x in result.leakage[:FIRST_LINES]],
        "too_long": result.too_long.count, "empty_answers": len(result.empty_answers),
        "settings": (f"near duplicates: estimated Jaccard >= {s['near_threshold']:g} over {s['shingle_words']}-word "
                     f"shingles; tokens: {s['token_count_method']}; PII: {', '.join(s['pii']) or 'not checked'}"),
        "notes": list(result.notes),
    }
