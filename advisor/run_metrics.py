"""What a run measured, from its metrics.jsonl: the one computation behind report.json's measured figures.

executor/report.py writes report.json with ``measured_figures``; advisor/calibration.py recomputes them with the
same function from the run folder's metrics.jsonl before learning from a report, so a report edited by hand after
the run is not learned from. Pure: no torch, no printing.

- tokens/s per GPU and step time: medians over the logged steps, the first one left out (warm-up) when more
  than three were logged; on a shared host also the uncontended figures (``uncontended``);
- peak memory per GPU: the largest ``peak_memory_bytes`` logged, in GiB; what it measures from a row's
  ``peak_memory_kind``, else run.json's, else run.json's ``device`` (``memory_kind``).
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from advisor.units import GIB

FASTEST_FRACTION = 0.10  # without CPU times: the fastest tenth of the logged steps (at least 3)


def read_metrics(path: str | Path) -> list[dict]:
    """The rows of a metrics.jsonl ([] when there is none); a line cut by a kill mid-write is left out. A step
    logged twice (an attempt stopped past its last checkpoint, whose resume trained those steps again) counts
    once, as the later attempt logged it: the steps a run kept, in step order."""
    path = Path(path)
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut by a kill mid-write; the rest still counts
        if isinstance(row, dict):
            rows.append(row)
    by_step = {r["step"]: r for r in rows if type(r.get("step")) is int}  # the later row of a step wins
    return [by_step[k] for k in sorted(by_step)] + [r for r in rows if type(r.get("step")) is not int]


def median_of(rows: list[dict], key: str) -> float | None:
    vals = [float(r[key]) for r in rows if isinstance(r.get(key), (int, float)) and r[key] > 0]
    if len(vals) > 3:
        vals = vals[1:]
    return statistics.median(vals) if vals else None


def uncontended(rows: list[dict]) -> tuple[float | None, float | None, str]:
    """(tokens/s, step time, how) of the run as if nothing else competed for its cores (the first step left
    out as warm-up). On a shared host (the cpu tier: other jobs on the same cores) the median step is as
    slow as the neighbours make it; the estimator models the host uncontended. A single-threaded process's
    CPU time per step (``cpu_time_s``, ``torch_threads`` 1) leaves out the time others held the core, but
    not the cold caches they leave behind (up to +50% at load 5 here); with more threads CPU time counts the
    threads' spinning, so wall time stands in. The rate is the median tokens per second of the fastest
    tenth of the steps by that clock (by rate, not by time: the shortest steps are also the ones with the
    fewest tokens); the step time is the median step's tokens at that rate."""
    timed = [r for r in rows if all(isinstance(r.get(k), (int, float)) and r[k] > 0
                                    for k in ("step_time_s", "tokens_per_s_per_gpu"))]
    if len(timed) > 3:
        timed = timed[1:]
    if len(timed) < 3:
        return None, None, ""
    by_cpu = all(r.get("torch_threads") == 1 and isinstance(r.get("cpu_time_s"), (int, float)) and r["cpu_time_s"] > 0
                 for r in timed)
    tokens = [float(r["tokens_per_s_per_gpu"]) * float(r["step_time_s"]) for r in timed]
    clock = [float(r["cpu_time_s"] if by_cpu else r["step_time_s"]) for r in timed]
    rates = sorted((n / t for n, t in zip(tokens, clock)), reverse=True)
    rate = statistics.median(rates[:max(3, round(len(rates) * FASTEST_FRACTION))])
    how = (f"the fastest {FASTEST_FRACTION:.0%} of logged steps by "
           + ("process CPU time (one thread: the step without the neighbours' load)" if by_cpu else "wall time")
           + ": their median tokens/s; step time = the median step's tokens at it")
    return rate, statistics.median(tokens) / rate, how


def memory_kind(run: dict, rows: list[dict]) -> str:
    """What the peak memory measured: the last row's ``peak_memory_kind``, else run.json's, else by its device."""
    for source in [*reversed(rows), run]:
        kind = source.get("peak_memory_kind")
        if isinstance(kind, str) and kind:
            return kind
    device = str(run.get("device", "")).lower()
    if device.startswith("cuda") or device.startswith("gpu"):
        return "accelerator max allocated"
    if device == "cpu":
        return "process RSS"
    return "unknown (accelerator max allocated or process RSS)"


def measured_figures(rows: list[dict], run: dict) -> dict[str, dict]:
    """The measured part of report.json's figures from metrics.jsonl's ``rows`` and run.json's ``run``:
    {'tokens_per_s_per_gpu': {'measured', ['measured_uncontended', 'how_uncontended']}, 'step_time_s': (the same),
    'peak_memory_per_gpu_gib': {'measured', 'how'}}; the uncontended keys only when there are enough timed steps."""
    peaks = [int(r["peak_memory_bytes"]) for r in rows if isinstance(r.get("peak_memory_bytes"), (int, float))]
    out = {"tokens_per_s_per_gpu": {"measured": median_of(rows, "tokens_per_s_per_gpu")},
           "step_time_s": {"measured": median_of(rows, "step_time_s")},
           "peak_memory_per_gpu_gib": {"measured": max(peaks) / GIB if peaks else None, "how": memory_kind(run, rows)}}
    best_tokens, best_step, how = uncontended(rows)
    if best_step is not None:
        out["tokens_per_s_per_gpu"].update(measured_uncontended=best_tokens, how_uncontended=how)
        out["step_time_s"].update(measured_uncontended=best_step, how_uncontended=how)
    return out
