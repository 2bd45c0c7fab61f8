"""Plan against reality, learnt: correction factors fitted from finished runs' report.json, applied to estimates.

A run folder's ``report.json`` holds, for each figure, what the plan estimated and what the run measured;
``plan.yaml`` holds the configuration. ``fit`` groups runs by configuration class, (tier, strategy,
precision, trainable, model-size band), and per class fits

- a throughput factor: the median of measured / planned tokens/s per GPU (the tier's real efficiency on
  that class, relative to the estimator's);
- a memory factor: the median of measured / planned peak memory per GPU, kept apart by what was
  measured (accelerator max allocated, or process RSS on a CPU run).

The median, not the mean, so one bad run cannot move a factor far; every factor is clamped to
[FACTOR_MIN, FACTOR_MAX] and marked ``weak`` when it rests on one run. ``apply`` corrects an estimate with
the factors of its class, and only its class (no match: the raw estimate, said so). A memory factor
below 1 (the estimate was pessimistic) counts only with MIN_RUNS_TO_SHRINK_MEMORY runs or more: a
calibration never turns a configuration that fails the safety margin into a fit on thin evidence.
Pure: reads YAML/JSON text given to it, no torch, no printing.
"""

from __future__ import annotations

import hashlib
import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from advisor.errors import UserError

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


@dataclass(frozen=True)
class Factor:
    value: float
    runs: int
    spread: float  # (max - min) / median of the runs' ratios; 0 with one run
    weak: bool


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


def _ratio(fig: object) -> float | None:
    if not isinstance(fig, dict):
        return None
    planned, measured = fig.get("planned"), fig.get("measured")
    ok = all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in (planned, measured))
    return float(measured) / float(planned) if ok else None


def read_run(run_dir: str | Path) -> RunSample:
    """One run folder's sample; UserError naming the file when it cannot be one."""
    run_dir = Path(run_dir)
    report_path, plan_path = run_dir / "report.json", run_dir / "plan.yaml"
    for p in (report_path, plan_path):
        if not p.is_file():
            raise UserError(f"{p}: missing (not a finished run folder)", names_file=True)
    try:
        report = json.loads(report_path.read_text(encoding="utf-8"))
        plan = yaml.safe_load(plan_path.read_text(encoding="utf-8"))
        rec, model = plan["recommended"], plan["model"]
        key = class_key(str(rec["gpu"]), str(rec["strategy"]), str(rec.get("precision", "bf16-mixed")),
                        "lora" if plan.get("method") == "lora" else "full", int(model["params"]))
        figures = report["figures"]
    except (OSError, ValueError, KeyError, TypeError, yaml.YAMLError):
        raise UserError(f"{report_path}: not a report of an sftplan run (unreadable, or without figures)",
                        names_file=True) from None
    if report.get("plan_sha256") != plan.get("plan_sha256"):
        raise UserError(f"{report_path}: written for another plan than {plan_path} (plan_sha256 differs)",
                        names_file=True)
    if report.get("status") not in ("finished", "stopped"):
        raise UserError(f"{report_path}: run status is {report.get('status')!r}, not finished or stopped",
                        names_file=True)
    run_info = {}
    if (run_dir / "run.json").is_file():
        try:
            run_info = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            run_info = {}
    versions = run_info.get("versions") if isinstance(run_info.get("versions"), dict) else {}
    mem = figures.get("peak_memory_per_gpu_gib")
    return RunSample(run_dir=str(run_dir), plan_sha256=str(report.get("plan_sha256")), key=key,
                     tokens_ratio=_ratio(figures.get("tokens_per_s_per_gpu")), memory_ratio=_ratio(mem),
                     memory_kind=str((mem or {}).get("how") or report.get("peak_memory_kind") or "unknown"),
                     versions={k: str(v) for k, v in versions.items()})


# --------------------------------------------------------------------------- fitting


def _factor(ratios: list[float]) -> Factor | None:
    if not ratios:
        return None
    med = statistics.median(ratios)
    spread = (max(ratios) - min(ratios)) / med if len(ratios) > 1 and med > 0 else 0.0
    return Factor(value=round(min(FACTOR_MAX, max(FACTOR_MIN, med)), 4), runs=len(ratios), spread=round(spread, 4),
                  weak=len(ratios) < 2)


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
            throughput=_factor([s.tokens_ratio for s in mine if s.tokens_ratio is not None]),
            memory=_factor([s.memory_ratio for s in mine if s.memory_ratio is not None and s.memory_kind == kind]),
            memory_kind=kind, versions=sorted({_version_label(s.versions) for s in mine}),
            plan_sha256s=sorted({s.plan_sha256 for s in mine}))
    return classes


def to_yaml(classes: dict[str, ClassFactors], samples: list[RunSample]) -> str:
    def factor(f: Factor | None):
        return None if f is None else {"factor": f.value, "runs": f.runs, "spread": f.spread, "weak": f.weak}

    data = {
        "schema": SCHEMA,
        "classes": {k: {"throughput": factor(c.throughput), "memory": factor(c.memory), "memory_kind": c.memory_kind,
                        "versions": c.versions, "plan_sha256s": c.plan_sha256s} for k, c in classes.items()},
        "runs": [{"run_dir": s.run_dir, "plan_sha256": s.plan_sha256, "class": s.key, "tokens_ratio": s.tokens_ratio,
                  "memory_ratio": s.memory_ratio, "memory_kind": s.memory_kind, "versions": s.versions}
                 for s in samples],
    }
    return yaml.safe_dump(data, sort_keys=False, width=120)


def load(path: str | Path) -> Calibration:
    """A calibration file written by `sftplan calibrate`; UserError naming the file and the field otherwise."""
    path = Path(path)
    try:
        raw = path.read_bytes()
        data = yaml.safe_load(raw.decode("utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path}: no such file (calibration)", names_file=True) from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise UserError(f"{path}: unreadable calibration ({exc.__class__.__name__})", names_file=True) from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA or not isinstance(data.get("classes"), dict):
        raise UserError(f"{path}: not a calibration file (schema {SCHEMA!r} expected)", names_file=True)

    def factor(name: str, d: object) -> Factor | None:
        if d is None:
            return None
        try:
            value, runs = float(d["factor"]), int(d["runs"])
            if not FACTOR_MIN <= value <= FACTOR_MAX or runs < 1:
                raise ValueError
            return Factor(value=value, runs=runs, spread=float(d.get("spread", 0.0)), weak=bool(d.get("weak", runs < 2)))
        except (TypeError, KeyError, ValueError):
            raise UserError(f"{path}: classes.{name}: factor must be within [{FACTOR_MIN}, {FACTOR_MAX}] with runs >= 1",
                            names_file=True) from None

    classes = {}
    for key, c in data["classes"].items():
        if not isinstance(c, dict):
            raise UserError(f"{path}: classes.{key}: expected a mapping", names_file=True)
        classes[str(key)] = ClassFactors(key=str(key), throughput=factor(f"{key}.throughput", c.get("throughput")),
                                         memory=factor(f"{key}.memory", c.get("memory")),
                                         memory_kind=str(c.get("memory_kind", "unknown")),
                                         versions=[str(v) for v in c.get("versions") or []],
                                         plan_sha256s=[str(v) for v in c.get("plan_sha256s") or []])
    return Calibration(sha256=hashlib.sha256(raw).hexdigest(), path=str(path), classes=classes)


# --------------------------------------------------------------------------- applying


@dataclass(frozen=True)
class Applied:
    """What applying a class's factors changed (for the plan and the estimate's output)."""

    key: str
    throughput_factor: float | None
    memory_factor: float | None
    note: str


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
    if c.throughput:
        parts.append(f"tokens/s x{tf:g} ({c.throughput.runs} run{'s' if c.throughput.runs > 1 else ''}"
                     f"{', weak' if c.throughput.weak else ''})")
    if c.memory:
        if mf is None:
            parts.append(f"memory factor {c.memory.value:g} not applied (below 1 on {c.memory.runs} run(s); "
                         f"needs {MIN_RUNS_TO_SHRINK_MEMORY})")
        else:
            parts.append(f"memory x{mf:g} ({c.memory.runs} run{'s' if c.memory.runs > 1 else ''}, {c.memory_kind}"
                         f"{', weak' if c.memory.weak else ''})")
    return Applied(key=key, throughput_factor=tf, memory_factor=mf, note=f"calibrated ({key}): " + "; ".join(parts))


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
