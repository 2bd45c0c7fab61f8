"""`sftplan data check | dedup`: the data checks of advisor/datacheck.py, with a progress bar.

Exit codes of `data check`: 0 nothing found, 1 something found, 2 bad input (one line on stderr).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from advisor.errors import UserError

PROGRESS_MIN_BYTES = 8 * 2**20  # files smaller than this finish before a bar is worth drawing


def _add_check_arguments(p: argparse.ArgumentParser) -> None:
    from advisor.datacheck import DEFAULT_NEAR_THRESHOLD, DEFAULT_SHINGLE_WORDS

    p.add_argument("--golden", metavar="JSONL", help="golden eval set: report its rows that leak from training")
    p.add_argument("--near-threshold", type=float, default=DEFAULT_NEAR_THRESHOLD, metavar="J",
                   help=f"Jaccard similarity at or above which two rows are near duplicates (default {DEFAULT_NEAR_THRESHOLD})")
    p.add_argument("--shingle-words", type=int, default=DEFAULT_SHINGLE_WORDS, metavar="K",
                   help=f"words per shingle for MinHash (default {DEFAULT_SHINGLE_WORDS})")
    p.add_argument("--max-seq-len", type=int, default=2048, help="sequence length the run trains at (default 2048)")
    p.add_argument("--model", metavar="DIR", help="model directory: count tokens with its tokenizer.json")
    p.add_argument("--spacy-model", metavar="NAME", help="an installed spaCy model (e.g. en_core_web_lg): also find names and locations")
    p.add_argument("--no-pii", action="store_true", help="skip the PII scan")


def register(subparsers: argparse._SubParsersAction) -> None:
    data = subparsers.add_parser("data", help="check training data before approval: duplicates, PII, leakage, length")
    sub = data.add_subparsers(dest="data_command", metavar="SUBCOMMAND", parser_class=type(data))
    p = sub.add_parser("check", help="report duplicates, near duplicates, PII, golden leakage, long rows, empty answers")
    p.add_argument("train", metavar="TRAIN_JSONL")
    _add_check_arguments(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("dedup", help="write a copy without exact (and near) duplicates, keeping the first of each group")
    p.add_argument("input", metavar="IN_JSONL")
    p.add_argument("-o", "--output", required=True, metavar="OUT_JSONL")
    p.add_argument("--exact-only", action="store_true", help="remove exact duplicates only")
    p.add_argument("--near-threshold", type=float, default=None, metavar="J")
    p.set_defaults(func=cmd_dedup)
    data.set_defaults(func=lambda args: (data.print_help(), 2)[1])

    from advisor.models import GOALS

    p = subparsers.add_parser("table", help="the guide's by-scale table from the planner: method, tier, hours, cost")
    p.add_argument("--models", metavar="A,B,...", help="columns: preset ids or sizes (default 1B, 8B, 70B, 405B Llama)")
    p.add_argument("--avg-tokens", type=int, default=512, metavar="T", help="tokens per example (default 512)")
    p.add_argument("--epochs", type=int, help="fix the epochs (default: the rules choose)")
    p.add_argument("--goal", action="append", choices=list(GOALS), dest="goals")
    p.add_argument("--max-seq-len", type=int, default=2048)
    p.add_argument("--budget-usd", type=float)
    p.add_argument("--deadline-hours", type=float)
    p.add_argument("--format", choices=["md", "text", "json"], default="text")
    p.set_defaults(func=cmd_table)


def run_check(args: argparse.Namespace, train: str, *, quiet: bool = False):
    """The check with a progress bar on stderr for long files (shared with `plan --dataset`)."""
    from advisor.datacheck import DEFAULT_NEAR_THRESHOLD, DEFAULT_SHINGLE_WORDS, check

    def given(name: str, default):  # a 0 is the user's value, checked by check(); only an absent one defaults
        value = getattr(args, name, None)
        return default if value is None else value

    kwargs = dict(golden=getattr(args, "golden", None), max_seq_len=given("max_seq_len", 2048),
                  near_threshold=given("near_threshold", DEFAULT_NEAR_THRESHOLD),
                  shingle_words=given("shingle_words", DEFAULT_SHINGLE_WORDS),
                  pii=not getattr(args, "no_pii", False), spacy_model=getattr(args, "spacy_model", None),
                  model=getattr(args, "model", None))
    try:
        size = Path(train).stat().st_size
    except OSError:
        size = 0
    if quiet or size < PROGRESS_MIN_BYTES or not sys.stderr.isatty():
        return check(train, **kwargs)
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn("checking {task.description}"), BarColumn(), DownloadColumn(), TimeRemainingColumn(),
                  console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(Path(train).name, total=size)
        return check(train, progress=lambda done, total: bar.update(task, completed=done), **kwargs)


def _lines(nums: list[int], limit: int = 12) -> str:
    s = ", ".join(str(n) for n in nums[:limit])
    return s + (f", ... ({len(nums)} in all)" if len(nums) > limit else "")


def to_text(r) -> str:
    """The report a person reads: every finding with file:line."""
    f = r.path
    s = r.settings
    out = [f"{f}: {r.rows:,} rows, {r.tokens_total:,} tokens ({s['token_count_method']})"]
    out.append(f"settings: near-duplicate Jaccard threshold {s['near_threshold']:g}, {s['shingle_words']}-word shingles, "
               f"MinHash {s['num_perm']} permutations in {s['lsh_bands']} LSH bands; text normalised: {s['normalisation']}")
    ex = r.exact_duplicates
    out.append(f"\nexact duplicates: {len(ex)} group(s), {sum(len(g) - 1 for g in ex)} row(s) beyond the first of each")
    for g in ex[:20]:
        out.append(f"  {f}:{g[0]} repeated at lines {_lines(g[1:])}")
    if len(ex) > 20:
        out.append(f"  ... {len(ex) - 20} more groups (--json lists all)")
    nd = r.near_duplicates
    out.append(f"\nnear duplicates (estimated Jaccard >= {s['near_threshold']:g}): {len(nd)} group(s), "
               f"{sum(len(g.lines) - 1 for g in nd)} row(s) beyond the first of each")
    for g in nd[:20]:
        out.append(f"  {f}:{g.lines[0]} ~ lines {_lines(g.lines[1:])} (similarity >= {g.similarity:.2f})")
    if len(nd) > 20:
        out.append(f"  ... {len(nd) - 20} more groups (--json lists all)")
    if s["pii"]:
        kinds: dict[str, int] = {}
        for h in r.pii:
            kinds[h.kind] = kinds.get(h.kind, 0) + 1
        out.append(f"\nPII (Presidio pattern recognizers, score >= {s['pii_min_score']:g}): {len(r.pii)} hit(s)"
                   + (f" in {len({h.line for h in r.pii})} row(s): " + ", ".join(f"{k} {n}" for k, n in sorted(kinds.items()))
                      if r.pii else ""))
        for h in r.pii[:30]:
            out.append(f"  {f}:{h.line}: {h.kind} in {h.field}")
        if len(r.pii) > 30:
            out.append(f"  ... {len(r.pii) - 30} more (--json lists all)")
    if r.golden:
        out.append(f"\ngolden leakage ({r.golden}, {r.golden_rows} rows): {len(r.leakage)} pair(s)")
        for x in r.leakage[:30]:
            sim = "" if x.kind.startswith("exact") else f", similarity {x.similarity:.2f}"
            out.append(f"  {r.golden}:{x.golden_line} = {f}:{x.train_line} ({x.kind}{sim})")
        if r.leakage:
            out.append("  the gate scores the model on answers it trained on: its verdicts are inflated")
    t = r.too_long
    out.append(f"\nlonger than max_seq_len {t.max_seq_len}: {t.count} row(s)")
    if t.count:
        out.append(f"  lines {_lines(t.lines)}; longest {t.max_tokens:,} tokens (+{t.max_tokens - t.max_seq_len:,}), "
                   f"{t.tokens_over_total:,} tokens past the limit in all")
        out.append("  the executor truncates each to max_seq_len (executor/data.py): tokens past it are not trained on")
        if t.prompt_too_long_lines:
            out.append(f"  prompt alone fills max_seq_len at lines {_lines(t.prompt_too_long_lines)}: "
                       "no answer token is left and the run stops on them")
    out.append(f"\nempty or whitespace-only answers: {len(r.empty_answers)}")
    if r.empty_answers:
        out.append(f"  {f}: lines {_lines(r.empty_answers)} (plan and run reject these rows: fix or remove them)")
    for n in r.notes:
        out.append(f"\nnote: {n}")
    out.append("\n" + ("findings above: exit 1" if r.found else "nothing found"))
    return "\n".join(out)


def cmd_check(args: argparse.Namespace) -> int:
    if args.model is not None and Path(args.model).is_file():  # e.g. its config.json: would fall back to 4 chars/token
        raise UserError(f"{args.model}: a file: --model takes the model directory whose tokenizer.json counts the "
                        "tokens", field="model")
    r = run_check(args, args.train)
    text = json.dumps(r.to_dict(), indent=2) if args.json else to_text(r)
    sys.stdout.write(text + "\n")
    return 1 if r.found else 0


def cmd_table(args: argparse.Namespace) -> int:
    from advisor.catalog import load_catalog
    from advisor.errors import UserError
    from advisor.scale_table import DEFAULT_MODELS, build, parse_models, to_markdown, to_text

    models = list(DEFAULT_MODELS)
    if args.models is not None:
        try:
            models = parse_models(args.models)
        except UserError as exc:
            raise UserError(f"--models {args.models!r}: {exc.message}") from None
    t = build(load_catalog(), models=models, avg_tokens=args.avg_tokens, epochs=args.epochs, goals=args.goals,
              max_seq_len=args.max_seq_len, budget_usd=args.budget_usd, deadline_hours=args.deadline_hours)
    if args.format == "json":
        text = json.dumps(t.to_dict(), indent=2)
    else:
        text = to_markdown(t) if args.format == "md" else to_text(t)
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    return 0


def cmd_dedup(args: argparse.Namespace) -> int:
    from advisor.datacheck import DEFAULT_NEAR_THRESHOLD, dedup

    if args.exact_only and args.near_threshold is not None:
        raise UserError("sets the near-duplicate cut, which --exact-only turns off: give one or the other",
                        field="near_threshold")
    near = None if args.exact_only else (DEFAULT_NEAR_THRESHOLD if args.near_threshold is None else args.near_threshold)
    kept, removed = dedup(args.input, args.output, near_threshold=near)
    sys.stdout.write(f"wrote {args.output}: kept {kept:,} rows, removed {removed:,} "
                     f"({'exact' if near is None else f'exact and near (Jaccard >= {near:g})'} duplicates, first of each group kept)\n")
    return 0


# --------------------------------------------------------------------------- `sftplan plan --dataset`
def add_plan_arguments(p: argparse.ArgumentParser) -> None:
    """The data-check flags of `sftplan plan` (the check runs whenever --dataset is given)."""
    p.add_argument("--no-data-check", action="store_true", default=None,
                   help="skip the data check of --dataset (the plan records that it was skipped)")
    p.add_argument("--pii", choices=["redact", "accept"],
                   help="PII found: redact (write a redacted copy with presidio-anonymizer and plan on it) or accept it")
    p.add_argument("--pii-out", metavar="JSONL", help="where --pii redact writes the copy (default: DATASET.redacted.jsonl beside it)")
    p.add_argument("--spacy-model", metavar="NAME", help="an installed spaCy model: the data check also finds names and locations")


def check_data_check_flags(args: argparse.Namespace, data_file: str | None) -> None:
    """The data-check flags of `sftplan plan` that could not act, refused before anything is read or written:
    any of them without a data file, --pii / --pii-out beside --no-data-check, --pii-out without --pii redact."""
    for flag in ("pii", "pii_out", "no_data_check", "spacy_model"):
        if getattr(args, flag, None) and not data_file:
            raise UserError(f"--{flag.replace('_', '-')} acts on the data check of a data file, and none is given "
                            "(--dataset, or dataset.file.path in --request)")
    pii, pii_out = getattr(args, "pii", None), getattr(args, "pii_out", None)
    if getattr(args, "no_data_check", None) and (pii or pii_out):
        raise UserError(f"{'--pii' if pii else '--pii-out'} acts on the data check's PII findings, which "
                        "--no-data-check skips: give one or the other")
    if pii_out and pii != "redact":
        raise UserError("--pii-out names where --pii redact writes its copy: give --pii redact with it")


def plan_data_check(args: argparse.Namespace, dataset: str, max_seq_len: int, golden: str | None,
                    original: dict) -> tuple[str, dict]:
    """Run the check on --dataset for `sftplan plan`: (the file to plan on, the plan's DataCheck fields).
    ``original`` is the measured file's DataFile (path, sha256, rows), recorded when a redacted copy is planned on."""
    from advisor.datacheck import redact, summary
    from advisor.models import DataCheck

    if getattr(args, "no_data_check", None):
        return dataset, DataCheck(skipped=True).to_dict()
    decision = getattr(args, "pii", None)
    ns = argparse.Namespace(golden=golden, max_seq_len=max_seq_len, model=str(getattr(args, "model", "") or ""),
                            spacy_model=getattr(args, "spacy_model", None))
    result = run_check(ns, dataset)
    if not (result.pii and decision == "redact"):
        return dataset, DataCheck(**summary(result, decision=decision if result.pii else None)).to_dict()
    src = Path(dataset)
    out = Path(getattr(args, "pii_out", None) or src.with_name(src.stem + ".redacted.jsonl"))
    redact(src, out, spacy_model=ns.spacy_model)
    again = run_check(ns, str(out))
    return str(out), DataCheck(**summary(again, decision="redact", redacted_from=original)).to_dict()
