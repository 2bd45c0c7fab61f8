"""issue 11.4: the plan counts the rows over max_seq_len, names the first few by file:line and states the rule."""

import json
import subprocess
import sys
from pathlib import Path

import yaml

from advisor.request import measure_dataset

ROOT = Path(__file__).resolve().parents[2]


def _data(tmp_path):
    path = tmp_path / "train.jsonl"
    rows = [{"prompt": "p" * 40, "response": "r" * 40} for _ in range(6)]
    rows[2] = {"prompt": "p" * 40, "response": "r" * 8000}        # ~2010 tokens: truncated at 512
    rows[4] = {"prompt": "q" * 4000, "response": "r"}             # prompt ~1000 tokens: refused at 512
    path.write_text("\n".join(json.dumps(r) for r in rows[:3]) + "\n\n" + "\n".join(json.dumps(r) for r in rows[3:]) + "\n")
    return path


def test_measure_counts_rows_over_max_seq_len(tmp_path):
    path = _data(tmp_path)
    lr = measure_dataset(str(path), "8B", 512).long_rows
    assert (lr.max_seq_len, lr.truncated, lr.refused) == (512, 1, 1)
    assert lr.first == [f"{path}:3", f"{path}:6"]  # line 4 is blank: file lines, not row indexes
    assert "characters per token" in lr.counted_by
    refuse = measure_dataset(str(path), "8B", 512, "refuse").long_rows
    assert (refuse.truncated, refuse.refused) == (0, 2)
    assert measure_dataset(str(path), "8B").long_rows is None
    assert measure_dataset(str(path), "8B", 4096).long_rows.first == []


def test_plan_states_the_count_and_the_rule(tmp_path):
    path = _data(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "advisor", "plan", "--model", "8B", "--dataset", str(path),
                           "--max-seq-len", "512", "-o", str(tmp_path / "plan.yaml")], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    plan = yaml.safe_load((tmp_path / "plan.yaml").read_text())
    ds = plan["request"]["dataset"]
    assert ds["over_max_seq_len"] == "truncate-response"
    assert ds["long_rows"]["truncated"] == 1 and ds["long_rows"]["refused"] == 1
    md = (tmp_path / "plan.md").read_text()
    line = next(l for l in md.splitlines() if "over max_seq_len" in l)
    assert "2 of 6 rows are over max_seq_len 512 (1 to be truncated, 1 refused" in line
    assert f"{path}:3, {path}:6" in line and "is refused (the run does not start" in line
