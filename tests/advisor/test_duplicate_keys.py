"""A key given twice is bad input, never a silent last-one-wins: in a training row (which answer trains would
depend on key order) and in a request YAML (a request naming `model:` twice planned the second)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from advisor.errors import UserError
from advisor.rows import read_rows
from advisor.yamlio import load_yaml_mapping

REPO = Path(__file__).resolve().parents[2]


def test_a_row_with_a_key_twice_is_a_bad_row_by_line(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text(json.dumps({"prompt": "a", "response": "b"}) + "\n"
                    + '{"messages": [{"role": "user", "content": "x", "content": "y"}]}\n')
    with pytest.raises(UserError, match=r"train.jsonl:2: key 'content' is given twice"):
        read_rows(path)


def test_a_yaml_key_twice_names_both_lines(tmp_path):
    path = tmp_path / "req.yaml"
    path.write_text("model: llama-3.1-8b\ndataset:\n  examples: 1000\n  examples: 2000\n")
    with pytest.raises(UserError, match=r"req.yaml:4: 'examples' is given twice \(first on line 3\)"):
        load_yaml_mapping(path)
    path.write_text("model: llama-3.1-8b\nhave:\n  - {gpu: a100-80gb, count: 2}\n  - {gpu: h100-sxm, count: 1}\n")
    assert load_yaml_mapping(path)[0]["have"][1]["gpu"] == "h100-sxm"  # the same key in sibling mappings is fine


def test_plan_refuses_a_request_naming_the_model_twice(tmp_path):
    req = tmp_path / "r.yaml"
    req.write_text("model: llama-3.1-8b\ndataset: {examples: 1000, avg_tokens: 500}\nmodel: llama-3.1-70b\n")
    out = subprocess.run([sys.executable, "-m", "advisor", "plan", "--request", str(req), "-o", str(tmp_path / "p.yaml")],
                         cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 2 and f"{req}:3: 'model' is given twice" in out.stderr, out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and not (tmp_path / "p.yaml").exists()
