"""Plan against reality, learnt: correction factors fitted from finished runs' report.json, applied to estimates.

A run folder's ``report.json`` holds, for each figure, what the plan estimated and what the run measured;
``plan.yaml`` holds the configuration. The measured figures are recomputed from the run's ``metrics.jsonl`` by
the function the executor wrote them with (advisor/run_metrics.py); a report that disagrees (edited by hand
after the run), or a run without metrics.jsonl, is skipped. ``fit`` groups runs by configuration class, (tier, strategy,
precision, trainable, model-size band), and per class fits

- throughput. With runs of one shape (micro-batch x accumulation x sequence length): a factor, the median
  of measured / planned tokens/s per GPU (the tier's real efficiency on that class, relative to the
  estimator's). With two or more shapes whose fixed share of the step differs (a step is
  fixed overhead + FLOPs / rate: advisor/step_overhead.py, advisor/throughput.py), the two parts apart:
  least squares on measured step time = a x planned overhead + b x planned rest, relative residuals,
  Huber-reweighted (a run that hit a slow node weighs less), plus the median ratio of real tokens per step
  to planned ones (the chat template's tokens and padding the dataset count leaves out). One factor cannot
  carry across shapes when a fixed cost dominates small steps; the two-part fit can. Each class records
  which kind of fit it got;
- a memory factor: the median of measured / planned peak memory per GPU, kept apart by what was
  measured (accelerator max allocated, or process RSS on a CPU run).

On the cpu tier (a host other jobs share) runs are read at their uncontended speed, the speed the
estimator models (report.json's ``measured_uncontended``: the fastest tenth of its steps, by CPU time on
one thread, else by wall time); elsewhere the median.

The median, not the mean, so one bad run cannot move a factor far; every factor is clamped to
[FACTOR_MIN, FACTOR_MAX] and marked ``weak`` when it rests on one run. ``apply`` corrects an estimate with
the factors of its class, and only its class (no match: the raw estimate, said so). A memory factor
below 1 (the estimate was pessimistic) counts only with MIN_RUNS_TO_SHRINK_MEMORY runs or more: a
calibration never turns a configuration that fails the safety margin into a fit on thin evidence.
``load`` reads a calibration file as strictly as a hand-written request (a key given twice, a key calibrate does
not write, a YAML 1.1 number such as 0x10, a negative spread: refused by file, line and field).
Pure: reads YAML/JSON text given to it, no torch, no printing.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import statistics
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from advisor import run_metrics
from advisor.errors import UserError, did_you_mean
from advisor.yamlio import HandWrittenDumper, field_path, format_error, load_yaml_mapping

SCHEMA = "sftplan-calibration/1"
FACTOR_MIN, FACTOR_MAX = 0.02, 50.0  # robust to a garbage run, wide enough for a CPU host's real misses
MIN_RUNS_TO_SHRINK_MEMORY = 3
SIZE_BANDS = ((1e9, "<1B"), (10e9, "1-10B"), (100e9, "10-100B"), (float("inf"), ">=100B"))
VERSION_PACKAGES = ("torch", "transformers", "deepspeed", "accelerate", "peft")


def size_band(params: int) -> str:
    return next(label for limit, label in SIZE_BANDS if params < limit)


def class_key(gpu: str, strategy: str, precision: str, trainable: str, params: int) -> str:
    """The configuration class a factor belongs to, e.g. 'a100-80gb/fsdp/bf16-mixed/full/1-10B'."""
    return "/".join((gpu, strategy, precision, trainable, size_band(params)))


@dataclass(frozen=True)
class RunSample:
    """What one finished (or stopped) run says of the estimator."""

    run_dir: str
    plan_sha256: str
    key: str
    tokens_ratio: float | None  # measured / planned tokens per second per GPU
    memory_ratio: float | None  # measured / planned peak memory per GPU
    memory_kind: str
    versions: dict[str, str] = field(default_factory=dict)
    shape: str = ""  # 'micro_batch x grad_accum x seq_len' the run trained at
    planned_step_s: float | None = None  # the raw estimator's step time
    planned_overhead_s: float = 0.0  # its fixed part (0: a plan from before the overhead term)
    measured_step_s: float | None = None
    tokens_per_step_ratio: float | None = None  # real tokens per step / planned
    extra_tokens_per_sequence: float | None = None  # real tokens per sequence - the dataset's text tokens (unpacked)


FIT_FACTOR, FIT_FIXED_RATE = "factor", "fixed+rate"
SHARED_HOST_TIERS = ("cpu",)  # tiers whose runs share their cores with other jobs: fitted on uncontended steps
OVERHEAD_FACTOR_MAX = 1000.0  # the GPU tiers' fixed term is ~0.3 ms: a real host's can be 1000x it
MIN_FIXED_SHARE_RATIO = 1.25  # the runs' overhead / rest ratios must differ this much to tell the parts apart


@dataclass(frozen=True)
class Factor:
    value: float  # FIT_FACTOR: measured / planned tokens/s; FIT_FIXED_RATE: the same median, shown only
    runs: int
    spread: float  # (max - min) / median of the runs' ratios; 0 with one run
    weak: bool
    fit: str = FIT_FACTOR
    overhead_factor: float | None = None  # FIT_FIXED_RATE: measured fixed time / planned
    compute_factor: float | None = None  # FIT_FIXED_RATE: measured rest of the step / planned (1 / efficiency)
    tokens_factor: float | None = None  # FIT_FIXED_RATE: real tokens per step / planned
    extra_tokens_per_sequence: float | None = None  # FIT_FIXED_RATE: the template's tokens per sequence (unpacked runs)
    shapes: int = 1
    residual: float = 0.0  # FIT_FIXED_RATE: the fit's rms relative step-time error over its runs


@dataclass(frozen=True)
class ClassFactors:
    key: str
    throughput: Factor | None
    memory: Factor | None
    memory_kind: str
    versions: list[str]
    plan_sha256s: list[str]


@dataclass(frozen=True)
class Calibration:
    sha256: str
    path: str
    classes: dict[str, ClassFactors]

    def match(self, key: str) -> ClassFactors | None:
        return self.classes.get(key)


# --------------------------------------------------------------------------- reading runs


def read_run(run_dir: str | Path) -> RunSample:
    """One run folder's sample; UserError naming the file when it cannot be one."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"{run_dir}: no such folder" if not run_dir.exists() else f"{run_dir}: a file, not a run folder",
                        names_file=True)
    report_path, plan_path = run_dir / "report.json", run_dir / "plan.yaml"
    for p in (report_path, plan_path):
        if not p.is_file():
            raise UserError(f"{p}: missing (not a finished run folder)", names_file=True)
    try:
        plan = yaml.safe_load(plan_path.read_text(encoding="utf-8"))
        rec, model = plan["recommended"], plan["model"]
        key = class_key(str(rec["gpu"]), str(rec["strategy"]), str(rec.get("precision", "bf16-mixed")),
                        "lora" if plan.get("method") == "lora" else "full", int(model["params"]))
    except (OSError, ValueError, KeyError, TypeError, AttributeError, yaml.YAMLError):
        raise UserError(f"{plan_path}: not a plan of an sftplan run (unreadable, or without a recommended "
                        "configuration and model)", names_file=True) from None
    try:
        report = json.loads(report_path.read_text(encoding="utf-8"))
        figures = report["figures"]
        if not isinstance(figures, dict):
            raise TypeError
    except (OSError, ValueError, KeyError, TypeError):
        raise UserError(f"{report_path}: not a report of an sftplan run (unreadable, or without figures)",
                        names_file=True) from None
    if report.get("plan_sha256") != plan.get("plan_sha256"):
        raise UserError(f"{report_path}: written for another plan than {plan_path} (plan_sha256 differs)",
                        names_file=True)
    if report.get("status") not in ("finished", "stopped"):
        raise UserError(f"{report_path}: run status is {report.get('status')!r}, not finished or stopped",
                        names_file=True)
    bad = _corrupt_figure(figures)
    if bad:
        raise UserError(f"{report_path}: {bad}: not a positive finite number (a damaged report is not learned from)",
                        names_file=True)
    run_info = {}
    if (run_dir / "run.json").is_file():
        try:
            run_info = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            run_info = {}
    run_info = run_info if isinstance(run_info, dict) else {}
    measured = _measured_from_metrics(run_dir, run_info)
    bad = _disagreeing_figure(figures, measured)
    if bad:
        raise UserError(f"{report_path}: {bad}: the report disagrees with the run's metrics.jsonl (a report edited "
                        "after the run is not learned from)", names_file=True)
    versions = run_info.get("versions") if isinstance(run_info.get("versions"), dict) else {}
    mem = figures.get("peak_memory_per_gpu_gib")
    est = plan.get("estimate") if isinstance(plan.get("estimate"), dict) else {}
    tokens, step = figures.get("tokens_per_s_per_gpu"), figures.get("step_time_s")
    # the raw estimator's figures (a plan made with a calibration keeps them apart)
    raw_tokens = _positive(est.get("raw_tokens_per_s_per_gpu")) or _positive((tokens or {}).get("planned"))
    raw_step = _positive(est.get("raw_step_time_s")) or _positive((step or {}).get("planned"))
    # what the run measured, recomputed from its logged steps as the executor computes report.json's figures;
    # a shared host (the cpu tier) is measured uncontended, as the estimator models it (advisor/run_metrics.py)
    which = "measured_uncontended" if str(rec["gpu"]) in SHARED_HOST_TIERS else "measured"
    m_tokens, m_step, m_mem = (measured[k] for k in _FIGURES_READ)
    measured_tokens = _positive(m_tokens.get(which)) or _positive(m_tokens.get("measured"))
    measured_step = _positive(m_step.get(which)) or _positive(m_step.get("measured"))
    planned_mem, measured_mem = _positive((mem or {}).get("planned")), _positive(m_mem.get("measured"))
    tokens_ratio = measured_tokens / raw_tokens if measured_tokens and raw_tokens else None
    per_step = (measured_tokens * measured_step / (raw_tokens * raw_step)
                if measured_tokens and measured_step and raw_tokens and raw_step else None)
    shape = "x".join(str(rec.get(k, "?")) for k in ("micro_batch_size", "grad_accum")) + "x" + str(
        (plan.get("request") or {}).get("max_seq_len", "?") if isinstance(plan.get("request"), dict) else "?")
    extra = _extra_tokens_per_sequence(plan, rec, measured_tokens, measured_step)
    return RunSample(run_dir=str(run_dir), plan_sha256=str(report.get("plan_sha256")), key=key,
                     tokens_ratio=tokens_ratio,
                     memory_ratio=measured_mem / planned_mem if planned_mem and measured_mem else None,
                     memory_kind=str(m_mem.get("how") or "unknown"),
                     versions={k: str(v) for k, v in versions.items()}, shape=shape, planned_step_s=raw_step,
                     planned_overhead_s=_positive(est.get("step_overhead_s")) or 0.0, measured_step_s=measured_step,
                     tokens_per_step_ratio=per_step, extra_tokens_per_sequence=extra)


def _extra_tokens_per_sequence(plan: dict, rec: dict, measured_tokens: float | None,
                               measured_step: float | None) -> float | None:
    """Tokens a sequence really trains on beyond the dataset's text tokens (the chat template's: the request's
    avg_tokens counts message text only): measured tokens per step / sequences per step - avg_tokens. None
    for a packed run (its sequences are full whatever the template) or when a figure is missing."""
    req = plan.get("request") if isinstance(plan.get("request"), dict) else {}
    avg = _positive((req.get("dataset") or {}).get("avg_tokens")) if isinstance(req.get("dataset"), dict) else None
    mb, ga = _positive(rec.get("micro_batch_size")), _positive(rec.get("grad_accum"))
    if req.get("packing") or not (avg and mb and ga and measured_tokens and measured_step):
        return None
    return measured_tokens * measured_step / (mb * ga) - avg


def _positive(v: object) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 and math.isfinite(v) else None


_FIGURES_READ = ("tokens_per_s_per_gpu", "step_time_s", "peak_memory_per_gpu_gib")  # what a sample is made of
_FIGURE_VALUES = ("planned", "measured", "measured_uncontended")


def _corrupt_figure(figures: dict) -> str | None:
    """'figures.NAME.KEY is VALUE' for the first value of a figure calibrate reads that a run cannot have written
    (infinite, NaN, zero, negative, text): a report that holds one is damaged, so it is refused rather than read
    around. null (not measured) is fine; cost and hours, which calibrate does not read, may be 0 (owned hardware)."""
    for name in _FIGURES_READ:
        fig = figures.get(name)
        if not isinstance(fig, dict):
            continue
        for key in _FIGURE_VALUES:
            if key in fig and fig[key] is not None and _positive(fig[key]) is None:
                return f"figures.{name}.{key} is {fig[key]!r}"
    return None


def _measured_from_metrics(run_dir: Path, run_info: dict) -> dict[str, dict]:
    """The run's measured figures recomputed from its metrics.jsonl by the function the executor writes report.json
    with (run_metrics.measured_figures); UserError naming the file when there is none to recompute them from."""
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        raise UserError(f"{path}: missing (the report's measured figures cannot be checked against the logged steps)",
                        names_file=True)
    try:
        rows = run_metrics.read_metrics(path)
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: unreadable ({exc.__class__.__name__})", names_file=True) from None
    return run_metrics.measured_figures(rows, run_info)


_CHECKED_VALUES = ("measured", "measured_uncontended", "how")  # what a sample is made of, as the report holds it
_REL_TOL = 1e-9  # float rounding: report.json holds the very floats the executor computed


def _disagreeing_figure(figures: dict, measured: dict[str, dict]) -> str | None:
    """'figures.NAME.KEY is X, metrics.jsonl gives Y' for the first measured value calibrate reads whose report
    figure differs from the one recomputed from the logged steps; a value the report does not hold (a report of an
    executor before it) is not compared, the recomputed one is used."""
    for name, got in measured.items():
        fig = figures.get(name)
        if not isinstance(fig, dict):
            continue
        for key in _CHECKED_VALUES:
            if key not in fig or (key == "how" and key not in got):  # tokens' and step time's how: words on the median
                continue
            said, want = fig[key], got.get(key)
            if isinstance(said, str) or isinstance(want, str):
                same = said == want
            elif said is None or want is None:
                same = said is want
            else:
                same = math.isclose(float(said), float(want), rel_tol=_REL_TOL)
            if not same:
                return f"figures.{name}.{key} is {said!r}, metrics.jsonl gives {want!r}"
    return None


# --------------------------------------------------------------------------- fitting


def _factor(ratios: list[float]) -> Factor | None:
    if not ratios:
        return None
    med = statistics.median(ratios)
    spread = (max(ratios) - min(ratios)) / med if len(ratios) > 1 and med > 0 else 0.0
    return Factor(value=round(min(FACTOR_MAX, max(FACTOR_MIN, med)), 4), runs=len(ratios), spread=round(spread, 4),
                  weak=len(ratios) < 2)


def _solve_2x2(rows: list[tuple[float, float, float]], w: list[float]) -> tuple[float, float] | None:
    """Weighted least squares of y = a x1 + b x2 (rows of (x1, x2, y)); None when singular."""
    s11 = sum(wi * x1 * x1 for wi, (x1, _, _) in zip(w, rows))
    s12 = sum(wi * x1 * x2 for wi, (x1, x2, _) in zip(w, rows))
    s22 = sum(wi * x2 * x2 for wi, (_, x2, _) in zip(w, rows))
    s1y = sum(wi * x1 * y for wi, (x1, _, y) in zip(w, rows))
    s2y = sum(wi * x2 * y for wi, (_, x2, y) in zip(w, rows))
    det = s11 * s22 - s12 * s12
    if det <= 1e-12 * max(s11 * s22, 1e-300):
        return None
    return (s1y * s22 - s2y * s12) / det, (s2y * s11 - s1y * s12) / det


def fit_fixed_rate(runs: list[tuple[float, float, float]]) -> tuple[float, float, float] | None:
    """(overhead factor a, compute factor b, rms relative residual) of measured = a x overhead + b x rest
    over runs of (planned overhead s, planned rest s, measured step s); None when the runs cannot tell the
    two apart (one shape, or the same overhead share in all). Relative residuals (each equation divided by
    its measurement), then Huber reweighting (k = 1.345 robust scales, scale = 1.4826 MAD, at least 2%)."""
    ok = [(o, c, m) for o, c, m in runs if o > 0 and c > 0 and m > 0]
    shares = [o / c for o, c, _ in ok]
    if len(ok) < 2 or max(shares) < MIN_FIXED_SHARE_RATIO * min(shares):
        return None
    rows = [(o / m, c / m, 1.0) for o, c, m in ok]
    w = [1.0] * len(rows)
    ab = None
    for _ in range(10):
        ab = _solve_2x2(rows, w)
        if ab is None:
            return None
        res = [ab[0] * x1 + ab[1] * x2 - 1.0 for x1, x2, _ in rows]
        scale = max(0.02, 1.4826 * statistics.median(abs(r) for r in res))
        w = [1.0 if abs(r) <= 1.345 * scale else 1.345 * scale / abs(r) for r in res]
    a, b = ab
    if b <= 0:
        return None
    if a < 0:  # no fixed time at all: the rest carries the step
        a, b = 0.0, sum(c * m for o, c, m in ok) / sum(c * c for o, c, m in ok)
    res = [(a * o + b * c - m) / m for o, c, m in ok]
    return a, b, (sum(r * r for r in res) / len(res)) ** 0.5


def _throughput(mine: list[RunSample]) -> Factor | None:
    """The class's throughput correction: the two-part fit when its runs allow one, else the factor."""
    base = _factor([s.tokens_ratio for s in mine if s.tokens_ratio is not None])
    timed = [s for s in mine if s.planned_step_s and s.measured_step_s and s.tokens_per_step_ratio]
    if base is None or len({s.shape for s in timed}) < 2:
        return base
    got = fit_fixed_rate([(s.planned_overhead_s, s.planned_step_s - s.planned_overhead_s, s.measured_step_s)
                          for s in timed if s.planned_step_s > s.planned_overhead_s])
    if got is None:
        return base
    a, b, residual = got
    tokens = statistics.median(s.tokens_per_step_ratio for s in timed)
    extras = [s.extra_tokens_per_sequence for s in timed if s.extra_tokens_per_sequence is not None]
    return Factor(value=base.value, runs=len(timed), spread=base.spread, weak=False, fit=FIT_FIXED_RATE,
                  extra_tokens_per_sequence=round(statistics.median(extras), 3) if extras else None,
                  overhead_factor=round(min(OVERHEAD_FACTOR_MAX, a), 4),
                  compute_factor=round(min(FACTOR_MAX, max(FACTOR_MIN, b)), 4),
                  tokens_factor=round(min(FACTOR_MAX, max(FACTOR_MIN, tokens)), 4),
                  shapes=len({s.shape for s in timed}), residual=round(residual, 4))


def _version_label(v: dict[str, str]) -> str:
    return ", ".join(f"{k} {v[k]}" for k in VERSION_PACKAGES if k in v) or "unknown"


def fit(samples: list[RunSample]) -> dict[str, ClassFactors]:
    classes: dict[str, ClassFactors] = {}
    for key in sorted({s.key for s in samples}):
        mine = [s for s in samples if s.key == key]
        kinds = sorted({s.memory_kind for s in mine if s.memory_ratio is not None})
        kind = kinds[0] if kinds else "unknown"
        classes[key] = ClassFactors(
            key=key,
            throughput=_throughput(mine),
            memory=_factor([s.memory_ratio for s in mine if s.memory_ratio is not None and s.memory_kind == kind]),
            memory_kind=kind, versions=sorted({_version_label(s.versions) for s in mine}),
            plan_sha256s=sorted({s.plan_sha256 for s in mine}))
    return classes


def to_yaml(classes: dict[str, ClassFactors], samples: list[RunSample]) -> str:
    def factor(f: Factor | None):
        if f is None:
            return None
        out = {"factor": f.value, "runs": f.runs, "spread": f.spread, "weak": f.weak, "fit": f.fit}
        if f.fit == FIT_FIXED_RATE:
            out.update(overhead_factor=f.overhead_factor, compute_factor=f.compute_factor,
                       tokens_factor=f.tokens_factor, extra_tokens_per_sequence=f.extra_tokens_per_sequence,
                       shapes=f.shapes, residual=f.residual)
        return out

    data = {
        "schema": SCHEMA,
        "classes": {k: {"throughput": factor(c.throughput), "memory": factor(c.memory), "memory_kind": c.memory_kind,
                        "versions": c.versions, "plan_sha256s": c.plan_sha256s} for k, c in classes.items()},
        "runs": [{"run_dir": s.run_dir, "plan_sha256": s.plan_sha256, "class": s.key, "shape": s.shape,
                  "tokens_ratio": s.tokens_ratio, "memory_ratio": s.memory_ratio, "memory_kind": s.memory_kind,
                  "planned_step_s": s.planned_step_s, "planned_overhead_s": s.planned_overhead_s,
                  "measured_step_s": s.measured_step_s, "tokens_per_step_ratio": s.tokens_per_step_ratio,
                  "extra_tokens_per_sequence": s.extra_tokens_per_sequence,
                  "versions": s.versions}
                 for s in samples],
    }
    return yaml.dump(data, Dumper=HandWrittenDumper, sort_keys=False, width=120)  # read back as load reads it


# what load accepts: the keys to_yaml writes, at each level (anything else is a typo whose factor would be dropped)
_TOP_KEYS = ("schema", "classes", "runs")
_CLASS_KEYS = ("throughput", "memory", "memory_kind", "versions", "plan_sha256s")
_FACTOR_KEYS = ("factor", "runs", "spread", "weak", "fit")
_FIXED_RATE_KEYS = ("overhead_factor", "compute_factor", "tokens_factor", "extra_tokens_per_sequence", "shapes",
                    "residual")
_RUN_KEYS = ("run_dir", "plan_sha256", "class", "shape", "tokens_ratio", "memory_ratio", "memory_kind",
             "planned_step_s", "planned_overhead_s", "measured_step_s", "tokens_per_step_ratio",
             "extra_tokens_per_sequence", "versions")
# a plain scalar read as a number or a boolean must be written as YAML 1.2 writes one: decimal, true / false
_DECIMAL_INT = re.compile(r"[-+]?(0|[1-9][0-9]*)")
_DECIMAL_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?|[-+]?\.(inf|Inf|INF)|\.(nan|NaN|NAN)")
_BOOLEANS = ("true", "True", "TRUE", "false", "False", "FALSE")
_TAG = "tag:yaml.org,2002:"


def _node_at(root: yaml.Node | None, loc: tuple) -> tuple[yaml.Node | None, yaml.Node | None]:
    """(the key node, the value node) at ``loc`` in a composed tree; (None, None) where it is not there."""
    key, node = None, root
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            key, node = next(((k, v) for k, v in node.value if getattr(k, "value", None) == str(part)), (None, None))
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            key, node = None, node.value[part]
        else:
            return None, None
    return key, node


class _Problems:
    """The one way load words a bad calibration: '<file>:<line>: <field path>: <message>', the line of the key
    itself for a key that should not be there, of the value otherwise (yamlio.format_error)."""

    def __init__(self, path: Path, root: yaml.Node | None) -> None:
        self.source, self.root = str(path), root

    def value(self, loc: tuple, message: str) -> UserError:
        return UserError(format_error(self.source, self.root, loc, message), names_file=True)

    def key(self, loc: tuple, message: str) -> UserError:
        key, _ = _node_at(self.root, loc)
        if key is None:
            return self.value(loc, message)
        return UserError(f"{self.source}:{key.start_mark.line + 1}: {field_path(loc)}: {message}", names_file=True)

    def unknown_keys(self, d: dict, loc: tuple, allowed: tuple[str, ...], elsewhere: tuple[str, ...] = (),
                     why_elsewhere: str = "") -> None:
        for k in d:
            if k in allowed:
                continue
            if k in elsewhere:
                raise self.key((*loc, str(k)), why_elsewhere)
            raise self.key((*loc, str(k)), f"unknown key{did_you_mean(str(k), list(allowed))} (a calibration holds "
                                           f"{', '.join(allowed)} here)")

    def yaml11_scalars(self) -> None:
        """Refuse a plain scalar YAML 1.1 reads as a number or a boolean where YAML 1.2 (and a person) would not:
        0x10 (16), 010 (8), 1_0 (10), 1:30 (90), yes / on (true)."""
        stack = [(self.root, ())] if self.root is not None else []
        while stack:
            node, loc = stack.pop()
            if isinstance(node, yaml.MappingNode):
                for k, v in node.value:
                    here = (*loc, str(getattr(k, "value", "?")))
                    stack += [(k, here), (v, here)]
            elif isinstance(node, yaml.SequenceNode):
                stack += [(v, (*loc, i)) for i, v in enumerate(node.value)]
            elif isinstance(node, yaml.ScalarNode) and node.style is None:
                text, tag = node.value, node.tag
                if tag == _TAG + "int":
                    ok = _DECIMAL_INT.fullmatch(text) is not None
                elif tag == _TAG + "float":
                    ok = _DECIMAL_FLOAT.fullmatch(text) is not None
                else:
                    ok = tag != _TAG + "bool" or text in _BOOLEANS
                if not ok:
                    read = yaml.safe_load(text)
                    raise self.value(loc, f"{text!r} is read by YAML 1.1 as {read!r}: write plain decimal numbers "
                                          "and true / false (quote it if it is text)")

    def number(self, d: dict, loc: tuple, key: str, *, integer: bool = False, default: float | None = None) -> float:
        """d[key] as a finite number as the calibration file must hold it (a YAML number: not a quoted string, not
        a boolean; a whole number where integer); default where the key is absent and one is given."""
        if key not in d and default is not None:
            return default
        v = d.get(key)
        kind = "a whole number" if integer else "a number"
        ok = isinstance(v, int) if integer else isinstance(v, (int, float))
        if isinstance(v, bool) or not ok or not math.isfinite(v):
            got = "missing" if key not in d else f"got {v!r}"
            raise self.value((*loc, key), f"must be {kind} ({got})")
        return float(v)

    def texts(self, d: dict, loc: tuple, key: str) -> list[str]:
        v = d.get(key)
        if v is None:
            return []
        if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
            raise self.value((*loc, key), f"must be a list of text, got {v!r}")
        return list(v)


def load(path: str | Path) -> Calibration:
    """A calibration file written by `sftplan calibrate` (perhaps edited by hand); UserError naming the file, the
    line and the field otherwise. Read as a hand-written YAML file is (yamlio.load_yaml_mapping: a key given twice
    is refused by line, 1e-5 is a number); a key calibrate does not write, a YAML 1.1 number (0x10, 1_0) or
    boolean (yes), and a negative spread or residual are refused too."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{path}: no such file (calibration)", names_file=True) from None
    except OSError as exc:
        raise UserError(f"{path}: unreadable calibration ({exc.__class__.__name__})", names_file=True) from None
    data, root = load_yaml_mapping(path, hand_written=True)
    if data.get("schema") != SCHEMA or not isinstance(data.get("classes"), dict):
        raise UserError(f"{path}: not a calibration file (schema {SCHEMA!r} expected)", names_file=True)
    p = _Problems(path, root)
    p.yaml11_scalars()
    p.unknown_keys(data, (), _TOP_KEYS)
    runs = data.get("runs")
    if runs is not None and not isinstance(runs, list):
        raise p.value(("runs",), "must be a list of the runs fitted")
    for i, run in enumerate(runs or []):
        if not isinstance(run, dict):
            raise p.value(("runs", i), "expected a mapping")
        p.unknown_keys(run, ("runs", i), _RUN_KEYS)

    def factor(loc: tuple, d: object) -> Factor | None:
        if d is None:
            return None
        if not isinstance(d, dict):
            raise p.value(loc, "expected a mapping")
        fit_kind = d.get("fit", FIT_FACTOR)
        if fit_kind not in (FIT_FACTOR, FIT_FIXED_RATE):
            raise p.value((*loc, "fit"), f"must be '{FIT_FACTOR}' or '{FIT_FIXED_RATE}', got {fit_kind!r}")
        if fit_kind == FIT_FIXED_RATE:
            p.unknown_keys(d, loc, _FACTOR_KEYS + _FIXED_RATE_KEYS)
        else:
            p.unknown_keys(d, loc, _FACTOR_KEYS, _FIXED_RATE_KEYS, f"only with fit '{FIT_FIXED_RATE}' (this one is "
                                                                   f"fit '{FIT_FACTOR}', which does not use it)")
        value, runs = p.number(d, loc, "factor"), p.number(d, loc, "runs", integer=True)
        if not FACTOR_MIN <= value <= FACTOR_MAX or runs < 1:
            raise p.value(loc, f"factor must be within [{FACTOR_MIN}, {FACTOR_MAX}] with runs >= 1")
        weak = d.get("weak", runs < 2)
        if not isinstance(weak, bool):
            raise p.value((*loc, "weak"), f"must be true or false, got {weak!r}")
        spread = p.number(d, loc, "spread", default=0.0)
        if spread < 0:
            raise p.value((*loc, "spread"), f"must be 0 or more (a spread of ratios), got {spread:g}")
        f = Factor(value=value, runs=int(runs), spread=spread, weak=weak, fit=fit_kind)
        if f.fit == FIT_FACTOR:
            return f
        a, b, t = (p.number(d, loc, k) for k in ("overhead_factor", "compute_factor", "tokens_factor"))
        if not (0 <= a <= OVERHEAD_FACTOR_MAX and FACTOR_MIN <= b <= FACTOR_MAX and FACTOR_MIN <= t <= FACTOR_MAX):
            raise p.value(loc, f"fit '{FIT_FIXED_RATE}' needs overhead_factor in [0, {OVERHEAD_FACTOR_MAX:g}], "
                               f"compute_factor and tokens_factor in [{FACTOR_MIN}, {FACTOR_MAX}]")
        residual = p.number(d, loc, "residual", default=0.0)
        if residual < 0:
            raise p.value((*loc, "residual"), f"must be 0 or more (an rms error), got {residual:g}")
        shapes = p.number(d, loc, "shapes", integer=True, default=2)
        if shapes < 1:
            raise p.value((*loc, "shapes"), f"must be 1 or more, got {shapes:g}")
        extra = d.get("extra_tokens_per_sequence")
        return Factor(value=f.value, runs=f.runs, spread=f.spread, weak=f.weak, fit=FIT_FIXED_RATE, overhead_factor=a,
                      compute_factor=b, tokens_factor=t, shapes=int(shapes), residual=residual,
                      extra_tokens_per_sequence=None if extra is None else p.number(d, loc, "extra_tokens_per_sequence"))

    classes = {}
    for key, c in data["classes"].items():
        loc = ("classes", str(key))
        if not isinstance(c, dict):
            raise p.value(loc, "expected a mapping")
        p.unknown_keys(c, loc, _CLASS_KEYS)
        kind = c.get("memory_kind", "unknown")
        if not isinstance(kind, str):
            raise p.value((*loc, "memory_kind"), f"must be text, got {kind!r}")
        classes[str(key)] = ClassFactors(key=str(key), throughput=factor((*loc, "throughput"), c.get("throughput")),
                                         memory=factor((*loc, "memory"), c.get("memory")), memory_kind=kind,
                                         versions=p.texts(c, loc, "versions"),
                                         plan_sha256s=p.texts(c, loc, "plan_sha256s"))
    return Calibration(sha256=hashlib.sha256(raw).hexdigest(), path=str(path), classes=classes)


# --------------------------------------------------------------------------- applying


@dataclass(frozen=True)
class Applied:
    """What applying a class's factors changed (for the plan and the estimate's output)."""

    key: str
    throughput_factor: float | None
    memory_factor: float | None
    note: str
    throughput: Factor | None = None  # the fit behind throughput_factor (its kind and parts)
    # the plan's dataset (set by the planner): text tokens per sequence, and whether sequences are packed
    text_tokens_per_sequence: float | None = None
    packed: bool = False

    def tokens_factor(self, seq_len: int) -> float:
        """Real tokens per step / the estimate's (micro-batch x seq_len x accumulation): packed sequences are
        full; unpacked ones hold the dataset's text tokens plus the template's the runs showed (at most
        seq_len); without the plan's dataset, the runs' median ratio."""
        f = self.throughput
        if self.packed:
            return 1.0
        if f.extra_tokens_per_sequence is not None and self.text_tokens_per_sequence and seq_len > 0:
            return max(FACTOR_MIN, min(1.0, (self.text_tokens_per_sequence + f.extra_tokens_per_sequence) / seq_len))
        return f.tokens_factor

    def correct_throughput(self, raw_step_s: float, raw_fixed_s: float, raw_tokens_per_s: float,
                           seq_len: int = 0) -> tuple[float, float]:
        """(step time s, tokens/s per GPU) after this class's throughput fit (unchanged without one)."""
        f = self.throughput
        if f is not None and f.fit == FIT_FIXED_RATE:
            step = f.overhead_factor * raw_fixed_s + f.compute_factor * max(0.0, raw_step_s - raw_fixed_s)
            if step > 0:
                return step, raw_tokens_per_s * raw_step_s / step * self.tokens_factor(seq_len)
        if self.throughput_factor is None:
            return raw_step_s, raw_tokens_per_s
        return raw_step_s / self.throughput_factor, raw_tokens_per_s * self.throughput_factor


def memory_factor_used(c: ClassFactors) -> float | None:
    """The memory factor that may be applied: one below 1 only on MIN_RUNS_TO_SHRINK_MEMORY runs or more."""
    if c.memory is None:
        return None
    if c.memory.value < 1.0 and c.memory.runs < MIN_RUNS_TO_SHRINK_MEMORY:
        return None
    return c.memory.value


def applied(cal: Calibration | None, key: str) -> Applied | None:
    """The factors for ``key`` (None: no calibration given, or no factor for this class)."""
    if cal is None:
        return None
    c = cal.match(key)
    if c is None:
        return Applied(key=key, throughput_factor=None, memory_factor=None,
                       note=f"no calibrated runs of class {key}: raw estimate")
    tf = c.throughput.value if c.throughput else None
    mf = memory_factor_used(c)
    parts = []
    t = c.throughput
    if t and t.fit == FIT_FIXED_RATE:
        tokens = (f"+{t.extra_tokens_per_sequence:.3g} template tokens per sequence"
                  if t.extra_tokens_per_sequence is not None else f"tokens per step x{t.tokens_factor:g}")
        parts.append(f"step = fixed overhead x{t.overhead_factor:g} + compute x{t.compute_factor:g}, {tokens} "
                     f"(fixed+rate fit over {t.runs} runs of {t.shapes} shapes, residual {t.residual:.0%})")
    elif t:
        parts.append(f"tokens/s x{tf:g} (factor, {t.runs} run{'s' if t.runs > 1 else ''}{', weak' if t.weak else ''})")
    if c.memory:
        if mf is None:
            parts.append(f"memory factor {c.memory.value:g} not applied (below 1 on {c.memory.runs} run(s); "
                         f"needs {MIN_RUNS_TO_SHRINK_MEMORY})")
        else:
            parts.append(f"memory x{mf:g} ({c.memory.runs} run{'s' if c.memory.runs > 1 else ''}, {c.memory_kind}"
                         f"{', weak' if c.memory.weak else ''})")
    return Applied(key=key, throughput_factor=tf, memory_factor=mf, note=f"calibrated ({key}): " + "; ".join(parts),
                   throughput=c.throughput)


def installed_versions() -> dict[str, str]:
    """Versions of the training packages installed here (importlib.metadata: nothing is imported)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in VERSION_PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            continue
    return out


def foreign_versions(c: ClassFactors, here: dict[str, str]) -> list[str]:
    """The version labels of a class's runs whose torch/transformers/deepspeed major.minor differ from here."""
    def mm(v: str) -> str:
        return ".".join(v.split("+")[0].split(".")[:2])

    out = []
    for label in c.versions:
        pairs = dict(p.split(" ", 1) for p in label.split(", ") if " " in p)
        if any(k in here and k in pairs and mm(pairs[k]) != mm(here[k]) for k in ("torch", "transformers", "deepspeed")):
            out.append(label)
    return out
