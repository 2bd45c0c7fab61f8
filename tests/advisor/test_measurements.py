"""Every published measurement: estimate within 30% per row, the measured config fits, medians."""
import importlib.util
import statistics
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MEASUREMENTS = REPO.parent / "shared" / "reference" / "measurements.yaml"
TOLERANCE = 0.30
MEDIAN_TOLERANCE = 0.15

if not MEASUREMENTS.is_file():
    pytest.skip(f"{MEASUREMENTS} absent (shared reference data not checked out)", allow_module_level=True)

_spec = importlib.util.spec_from_file_location("sftplan_accuracy", REPO / "benchmarks" / "accuracy.py")
accuracy = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(accuracy)
ROWS = accuracy.load_rows(MEASUREMENTS)


@pytest.mark.parametrize("row", ROWS, ids=[r["id"] for r in ROWS])
def test_row_within_tolerance_and_fits(row):
    r = accuracy.compare(row)
    assert r["est"].fits, f"{row['id']} ran, so it must fit: {r['est'].memory_per_gpu_bytes} bytes, {r['est'].notes}"
    checked = [k for k in ("memory", "throughput", "mfu") if k in r]
    assert checked, f"{row['id']}: nothing measured to compare"
    for key in checked:
        est, measured, err = r[key]
        assert abs(err) <= TOLERANCE, f"{row['id']} {key}: est {est:.3g} vs measured {measured:.3g} ({err:+.1%})"


def test_median_throughput_error():
    errs = [abs(accuracy.compare(row)["throughput"][2]) for row in ROWS if "tokens_per_s_per_gpu" in row.get("measured", {})]
    assert errs
    assert statistics.median(errs) <= MEDIAN_TOLERANCE, errs
