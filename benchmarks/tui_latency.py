"""TUI plan-update latency: an edit in the inputs -> the new plan painted (planner in a thread worker).

    .venv/bin/python benchmarks/tui_latency.py [N]

Drives the app headless (Textual's run_test) and prints the median and max over N edits per model.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "tui"))

from test_latency import measure_latencies  # noqa: E402


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    for model in ("llama-3.2-1b", "llama-3.1-8b", "llama-3.1-70b", "llama-3.1-405b"):
        lat = asyncio.run(measure_latencies(n, model))
        print(f"{model:>16}: median {statistics.median(lat):5.0f} ms  max {max(lat):5.0f} ms  over {n} edits")


if __name__ == "__main__":
    main()
