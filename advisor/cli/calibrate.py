"""`sftplan calibrate RUN_DIR... -o calibration.yaml`: correction factors from finished runs (advisor/calibration.py).

Runs of one class at two or more shapes get the step time's fixed overhead and compute fitted apart
("fixed+rate"); one shape, a factor. A run folder that cannot be read (no report, another plan's report, a run still going or failed) is
skipped with one line naming it; the others still count. Exit 2 when none is usable.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from advisor.errors import UserError


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("calibrate", help="fit throughput and memory correction factors from finished runs")
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    p.add_argument("-o", "--output", metavar="YAML", required=True, help="the calibration file to write")
    p.set_defaults(func=cmd_calibrate)


def cmd_calibrate(args: argparse.Namespace) -> int:
    from advisor import calibration
    from advisor.yamlio import atomic_write_text

    out = Path(args.output).resolve()
    for run_dir in args.run_dirs:  # a run folder's report is what the next calibration reads: never written over
        if out.is_relative_to(Path(run_dir).resolve()):
            raise UserError(f"-o {args.output}: is inside the run folder {run_dir}, which calibrate reads; write "
                            "the calibration elsewhere")
    samples, skipped, seen = [], [], {}
    for run_dir in args.run_dirs:
        same = seen.setdefault(Path(run_dir).resolve(), run_dir)  # one run folder counts once, however it is named
        if same is not run_dir:
            twice = "given more than once" if run_dir == same else f"the same run folder as {same}"
            sys.stderr.write(f"sftplan: {run_dir}: {twice}, counted once\n")
            continue
        try:
            samples.append(calibration.read_run(run_dir))
        except UserError as exc:
            skipped.append(f"{run_dir}: {exc}" if not str(exc).startswith(str(run_dir)) else str(exc))
    if not samples:  # one line: why each folder given is not a usable run
        raise UserError("no usable run folder: " + "; ".join(skipped))
    for why in skipped:
        sys.stderr.write(f"sftplan: skipped {why}\n")
    classes = calibration.fit(samples)
    atomic_write_text(args.output, calibration.to_yaml(classes, samples))
    for key, c in classes.items():
        parts = []
        for label, f in (("tokens/s", c.throughput), ("memory", c.memory)):
            if f is not None and f.fit == calibration.FIT_FIXED_RATE:
                tokens = (f"+{f.extra_tokens_per_sequence:.3g} template tokens per sequence"
                          if f.extra_tokens_per_sequence is not None else f"tokens per step x{f.tokens_factor:g}")
                parts.append(f"step time = fixed overhead x{f.overhead_factor:g} + compute x{f.compute_factor:g}, "
                             f"{tokens} (fixed+rate fit, {f.runs} runs of {f.shapes} shapes, residual {f.residual:.0%})")
            elif f is not None:
                parts.append(f"{label} x{f.value:g} ({f.runs} run{'s' if f.runs > 1 else ''}, spread {f.spread:.0%}"
                             f"{', weak' if f.weak else ''})")
        print(f"{key}: {'; '.join(parts) or 'no figures'}")
    print(f"wrote {args.output} ({len(samples)} run(s), {len(classes)} class(es))")
    return 0
