"""The data check of the session's data file (advisor/datacheck.py, `sftplan data check`) in a panel.

The check streams the whole file and, for PII, loads Presidio (seconds: it pulls spaCy and torch), so it
runs in a thread worker; the panel shows a progress line meanwhile and then the summary: each kind's
count and its first file:line references (the CLI's `sftplan data check` lists them all).
"""

from __future__ import annotations

import time
from pathlib import Path

from rich.text import Text
from textual import getters, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Label, Static

from advisor.errors import UserError

FIRST = 5  # references shown for each kind (the plan's summary keeps as many: advisor.datacheck.FIRST_LINES)
PROGRESS_EVERY_S = 0.25  # the worker reports at most this often (a message per 1,000 rows would flood the UI)


class CheckProgress(Message):
    def __init__(self, done_bytes: int, total_bytes: int) -> None:
        super().__init__()
        self.done_bytes, self.total_bytes = done_bytes, total_bytes


class CheckDone(Message):
    def __init__(self, result, elapsed_s: float) -> None:
        super().__init__()
        self.result, self.elapsed_s = result, elapsed_s


class CheckFailed(Message):
    def __init__(self, error: str) -> None:
        super().__init__()
        self.error = error


def _refs(path: str, lines: list[int], total: int | None = None) -> str:
    total = len(lines) if total is None else total
    more = f", ... ({total} in all)" if total > FIRST else ""
    return ", ".join(f"{path}:{n}" for n in lines[:FIRST]) + more


def summary_text(r, elapsed_s: float | None = None) -> Text:
    """Counts and the first references of each kind, from a ``datacheck.CheckResult``."""
    f, s = r.path, r.settings
    t = Text()
    took = f" in {elapsed_s:.1f} s" if elapsed_s is not None else ""
    t.append(f"{f}: {r.rows:,} rows, {r.tokens_total:,} tokens{took}\n", style="bold")

    def kind(title: str, count: int, unit: str = "row(s)") -> None:
        t.append(f"\n{title}: ", style="bold")
        t.append(f"{count} {unit}\n", style="bold red" if count else "green")

    ex = r.exact_duplicates
    kind("exact duplicates", sum(len(g) - 1 for g in ex), "row(s) beyond the first of each group")
    for g in ex[:FIRST]:
        t.append(f"  {f}:{g[0]} repeated at {_refs(f, g[1:])}\n")
    if len(ex) > FIRST:
        t.append(f"  ... {len(ex) - FIRST} more group(s)\n", style="dim")
    nd = r.near_duplicates
    kind(f"near duplicates (Jaccard >= {s['near_threshold']:g})", sum(len(g.lines) - 1 for g in nd),
         "row(s) beyond the first of each group")
    for g in nd[:FIRST]:
        t.append(f"  {f}:{g.lines[0]} ~ {_refs(f, g.lines[1:])} (similarity >= {g.similarity:.2f})\n")
    if len(nd) > FIRST:
        t.append(f"  ... {len(nd) - FIRST} more group(s)\n", style="dim")
    if s["pii"]:
        kinds = sorted({h.kind for h in r.pii})
        kind("PII", len(r.pii), "hit(s)" + (f" ({', '.join(kinds)})" if kinds else ""))
        for h in r.pii[:FIRST]:
            t.append(f"  {f}:{h.line}: {h.kind} in {h.field}\n")
        if len(r.pii) > FIRST:
            t.append(f"  ... {len(r.pii) - FIRST} more\n", style="dim")
    if r.golden:
        kind(f"golden leakage ({r.golden}, {r.golden_rows} rows)", len({x.golden_line for x in r.leakage}),
             "golden row(s) also in training")
        for x in r.leakage[:FIRST]:
            t.append(f"  {r.golden}:{x.golden_line} = {f}:{x.train_line} ({x.kind})\n")
        if r.leakage:
            t.append("  the eval gate scores answers the model trained on: its verdicts are inflated\n", style="yellow")
    tl = r.too_long
    kind(f"longer than max_seq_len {tl.max_seq_len}", tl.count)
    if tl.count:
        t.append(f"  {_refs(f, tl.lines, tl.count)}; longest {tl.max_tokens:,} tokens "
                 f"(+{tl.max_tokens - tl.max_seq_len:,}); the executor truncates them\n")
    kind("empty or whitespace-only answers", len(r.empty_answers))
    if r.empty_answers:
        t.append(f"  {_refs(f, r.empty_answers)}\n")
    t.append(f"\nnear duplicates: {s['shingle_words']}-word shingles, MinHash {s['num_perm']} permutations; "
             f"tokens: {s['token_count_method']}; PII: {', '.join(s['pii']) or 'not checked'}\n", style="dim")
    for note in r.notes:
        t.append(f"note: {note}\n", style="dim")
    t.append("\n" + ("findings above: `sftplan plan --dataset` records them in the plan; "
                     "`sftplan data dedup` writes a deduplicated copy" if r.found else "nothing found"),
             style="yellow" if r.found else "green")
    return t


class DataCheckScreen(ModalScreen[None]):
    """The data check of one file, run when the panel opens; Escape or q closes it (a check still running
    finishes in its thread and is dropped)."""

    BINDINGS = [Binding("escape,q", "close", "close")]

    body = getters.query_one("#check-body", Static)

    def __init__(self, path: str | Path, *, golden: str | None = None, max_seq_len: int = 2048,
                 model: str | None = None) -> None:
        super().__init__()
        self.path, self.golden, self.max_seq_len, self.model = str(path), golden, max_seq_len, model
        self.result = None  # the CheckResult once done
        self.error = ""  # the one-line error when the check refused the file
        self.started = time.perf_counter()

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide"):
            yield Label(f"data check: {self.path}", classes="section", id="check-title")
            with VerticalScroll():
                yield Static(f"checking {self.path} (PII: Presidio loads first, seconds)...", id="check-body")
            yield Static("Escape: close", classes="dim")

    def on_mount(self) -> None:
        self._check()

    @work(thread=True, exclusive=True, group="datacheck")
    def _check(self) -> None:
        last = [0.0]

        def progress(done: int, total: int) -> None:
            now = time.perf_counter()
            if now - last[0] >= PROGRESS_EVERY_S:
                last[0] = now
                self.post_message(CheckProgress(done, total))

        try:
            from advisor.datacheck import check

            result = check(self.path, golden=self.golden, max_seq_len=self.max_seq_len, model=self.model,
                           progress=progress)
        except UserError as exc:
            self.post_message(CheckFailed(str(exc)))
            return
        except Exception as exc:  # noqa: BLE001 - shown in the panel; the session keeps going
            self.post_message(CheckFailed(f"{type(exc).__name__}: {exc}"))
            return
        self.post_message(CheckDone(result, time.perf_counter() - self.started))

    def on_check_progress(self, message: CheckProgress) -> None:
        if self.result is None and not self.error and message.total_bytes:
            pct = 100 * message.done_bytes / message.total_bytes
            self.body.update(f"checking {self.path}: {pct:.0f}% of {message.total_bytes / 2**20:,.1f} MiB read")

    def on_check_done(self, message: CheckDone) -> None:
        self.result = message.result
        self.body.update(summary_text(message.result, message.elapsed_s))

    def on_check_failed(self, message: CheckFailed) -> None:
        self.error = message.error.splitlines()[0]
        self.body.update(Text(f"not checked: {self.error}", style="bold red"))

    def action_close(self) -> None:
        self.dismiss(None)
