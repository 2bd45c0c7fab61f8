"""Read a run folder (docs/CONTRACTS.md "Run folder") for the run view: pure file reads, no textual.

``RunTail`` keeps its offset into metrics.jsonl so each poll reads only the lines appended since the
last one (a half-written last line is left for the next poll). run.json and gate.json are small and
are re-read whole; a file caught mid-write reads as "not yet".
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path


def is_run_dir(path: str | Path) -> bool:
    p = Path(path)
    return p.is_dir() and ((p / "run.json").is_file() or (p / "metrics.jsonl").is_file())


def _read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


@dataclass
class RunState:
    """What the run view shows, rebuilt from the folder on every poll."""

    run_dir: Path
    status: str = "unknown"
    run: dict = field(default_factory=dict)
    metrics: list[dict] = field(default_factory=list)
    gate: dict = field(default_factory=dict)
    stop_requested: bool = False

    @property
    def last(self) -> dict:
        return self.metrics[-1] if self.metrics else {}

    @property
    def losses(self) -> list[float]:
        return [float(m["loss"]) for m in self.metrics if isinstance(m.get("loss"), (int, float))]

    @property
    def gate_epochs(self) -> list[dict]:
        epochs = self.gate.get("epochs") if isinstance(self.gate, dict) else None
        return [e for e in epochs or [] if isinstance(e, dict)]

    @property
    def finished(self) -> bool:
        return self.status in ("finished", "failed", "stopped")


class RunTail:
    """Incremental reader of one run folder."""

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        self._offset = 0
        self._metrics: list[dict] = []

    def _read_new_metrics(self) -> None:
        path = self.run_dir / "metrics.jsonl"
        try:
            with open(path, "rb") as fh:
                fh.seek(self._offset)
                chunk = fh.read()
        except OSError:
            return
        end = chunk.rfind(b"\n")
        if end < 0:
            return
        for line in chunk[: end + 1].splitlines():
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if isinstance(row, dict):
                self._metrics.append(row)
        self._offset += end + 1

    def poll(self) -> RunState:
        self._read_new_metrics()
        run = _read_json(self.run_dir / "run.json") or {}
        gate = _read_json(self.run_dir / "gate.json") or {}
        return RunState(run_dir=self.run_dir, status=str(run.get("status", "starting")), run=run,
                        metrics=list(self._metrics), gate=gate, stop_requested=(self.run_dir / "STOP").exists())


def request_stop(run_dir: str | Path) -> Path:
    """Create RUN_DIR/STOP: the executor stops cleanly at the next epoch boundary."""
    path = Path(run_dir) / "STOP"
    path.write_text("stop requested from sftplan tui\n", encoding="utf-8")
    return path
