"""`sftplan calibrate RUN_DIR... -o calibration.yaml`: correction factors from finished runs (advisor/calibration.py).

Runs of one class at two or more shapes get the step time's fixed overhead and compute fitted apart
("fixed+rate"); one shape, a factor. A run folder that cannot be read (no report, another plan's report, a run still going or failed) is
skipped with one line naming it; the others still count. Exit 2 when none is usable. -o creates a new file or
replaces a calibration file, nothing else (advisor.cli.calibrate._check_output).
"""

from __future__ import annotations

import argparse
import os
import stat
import sys
from pathlib import Path

from advisor.errors import UserError


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("calibrate", help="fit throughput and memory correction factors from finished runs")
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    p.add_argument("-o", "--output", metavar="YAML", required=True, help="the calibration file to write")
    p.set_defaults(func=cmd_calibrate)


_MAX_CALIBRATION_BYTES = 64 << 20  # a bigger file is no calibration (a data set, a checkpoint): not even parsed


def _check_output(output: str, run_dirs: list[str]) -> None:
    """-o may name a new file, or a calibration file to replace; anything else (a plan, a data set, a model's
    config, a link, a device, a folder), a file in a run folder given or in a model folder, is refused before
    anything is written: the write is a rename, which would replace whatever -o names."""
    from advisor.calibration import SCHEMA

    if not output.strip():
        raise UserError("-o: empty file name; give one such as calibration.yaml")
    path = Path(output)
    out, spelt = path.resolve(), Path(os.path.abspath(path))  # where it lands, and where it is named (a link)
    for run_dir in run_dirs:  # a run folder's report is what the next calibration reads: never written over
        if out.is_relative_to(Path(run_dir).resolve()) or spelt.is_relative_to(os.path.abspath(run_dir)):
            raise UserError(f"-o {output}: is inside the run folder {run_dir}, which calibrate reads; write "
                            "the calibration elsewhere")
    for folder in dict.fromkeys((out.parent, spelt.parent)):
        if (folder / "config.json").is_file():
            raise UserError(f"-o {output}: is inside the model folder {folder} (it holds config.json); write the "
                            "calibration elsewhere")
    ancestor = spelt.parent
    while not os.path.lexists(ancestor) and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise UserError(f"-o {output}: {ancestor} is not a folder; give a file name in a folder")
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return  # a new file
    except OSError as exc:
        raise UserError(f"-o {output}: cannot be written ({exc.strerror or exc.__class__.__name__})") from None
    if stat.S_ISLNK(st.st_mode):
        why = "a symbolic link (writing would replace the link itself with a file)"
    elif stat.S_ISDIR(st.st_mode):
        why = "a folder"
    elif not stat.S_ISREG(st.st_mode):
        why = "not a regular file (a device, a pipe or a socket)"
    elif not _is_calibration_file(path, st.st_size):
        why = f"an existing file that is not a readable calibration (schema {SCHEMA!r})"
    else:
        return  # a calibration: replaced by the new one
    raise UserError(f"-o {output}: is {why}; calibrate only creates a new file or replaces a calibration file: "
                    "give a new file name")


def _is_calibration_file(path: Path, size: int) -> bool:
    """A YAML mapping whose schema is the calibration's (read leniently: a damaged calibration is still one to
    replace); False for anything else or anything that cannot be read."""
    import yaml

    from advisor.calibration import SCHEMA

    if size > _MAX_CALIBRATION_BYTES:
        return False
    try:
        with open(path, "rb") as fh:
            if SCHEMA.encode() not in fh.read(64 << 10):
                return False  # not even its head names the schema: not parsed
            fh.seek(0)
            data = yaml.safe_load(fh.read().decode("utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return False
    return isinstance(data, dict) and data.get("schema") == SCHEMA


def cmd_calibrate(args: argparse.Namespace) -> int:
    from advisor import calibration
    from advisor.yamlio import atomic_write_text

    _check_output(args.output, args.run_dirs)
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
