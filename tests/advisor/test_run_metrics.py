"""advisor/run_metrics.py: what a run measured, read once for the report and for calibrate."""

import json

from advisor.run_metrics import measured_figures, read_metrics


def test_steps_a_resume_trained_again_count_once_as_the_later_attempt_logged_them(tmp_path):
    """An attempt killed at step 5 past its checkpoint at step 3: the resume logs steps 4 and 5 again. The report
    counts the run's 5 steps, and its medians use the kept attempt's rows, not the discarded ones."""
    path = tmp_path / "metrics.jsonl"
    first = [{"step": s, "tokens_per_s_per_gpu": 100.0, "step_time_s": 1.0} for s in range(1, 6)]
    again = [{"step": s, "tokens_per_s_per_gpu": 400.0, "step_time_s": 0.25} for s in (4, 5)]
    path.write_text("".join(json.dumps(r) + "\n" for r in first + again) + '{"step": 6, "tok')  # a cut last line
    rows = read_metrics(path)
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5]
    assert [r["tokens_per_s_per_gpu"] for r in rows] == [100.0, 100.0, 100.0, 400.0, 400.0]
    figures = measured_figures(rows, {})
    assert figures["tokens_per_s_per_gpu"]["measured"] == 250.0  # the median of steps 2-5 (warm-up left out)
