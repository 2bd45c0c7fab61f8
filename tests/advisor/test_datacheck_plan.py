"""`sftplan plan --dataset` runs the data check: its summary is in the hashed plan; PII blocks approval until
--pii redact (a redacted copy is planned on) or --pii accept; leakage and duplicates are warnings."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from advisor.planfile import read_plan, verify

REPO = Path(__file__).resolve().parents[2]


def _sftplan(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "advisor", *args], cwd=REPO, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    rng = random.Random(5)
    words = [f"t{i}" for i in range(3000)]
    text = lambda n: " ".join(rng.choice(words) for _ in range(n))  # noqa: E731
    rows = [{"prompt": text(30), "response": text(40)} for _ in range(20)]
    rows.append(dict(rows[3]))  # 21: duplicate of 4
    rows.append({"prompt": "reach me at sam.doe@example.net " + text(5), "response": text(10)})  # 22: PII
    d = tmp_path_factory.mktemp("plan")
    train = d / "train.jsonl"
    train.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    golden = d / "golden.jsonl"
    golden.write_text(json.dumps({"prompt": rows[7]["prompt"], "expected": rows[7]["response"]}) + "\n", encoding="utf-8")
    return d, train, golden


def test_pii_blocks_approval_and_summary_is_hashed(data):
    d, train, golden = data
    out = _sftplan("plan", "--model", "1B", "--dataset", str(train), "--golden", str(golden), "-o", str(d / "p.yaml"))
    assert out.returncode == 0, out.stderr
    p = read_plan(d / "p.yaml")
    dc = p.request.data_check
    assert dc is not None and not dc.skipped and dc.rows == 22
    assert dc.exact_duplicate_rows == 1 and dc.duplicate_first == [f"{train}:21"]
    assert dc.pii_hits == 1 and dc.pii_kinds == ["EMAIL_ADDRESS"] and dc.pii_first[0].startswith(f"{train}:22 ")
    assert dc.leakage == 1 and dc.leakage_first[0].startswith(f"{golden}:1 = {train}:8")
    verdicts = {f.rule_id: f.verdict for f in p.findings}
    assert verdicts["data.pii"] == "blocks approval"
    assert verdicts["data.golden-leakage"] == "warning" and verdicts["data.duplicates"] == "warning"
    assert any("inflated" in w for w in p.warnings) and any("would save" in w for w in p.warnings)
    ap = _sftplan("approve", str(d / "p.yaml"), "--by", "alice")
    assert ap.returncode == 2 and ap.stderr.count("\n") == 1 and "not approvable" in ap.stderr and "--pii" in ap.stderr
    # the summary is covered by the hash: editing it breaks the plan's own hash
    y = (d / "p.yaml").read_text(encoding="utf-8").replace("pii_hits: 1", "pii_hits: 0")
    (d / "edited.yaml").write_text(y, encoding="utf-8")
    assert "edited" in _sftplan("approve", str(d / "edited.yaml"), "--by", "alice").stderr


def test_pii_accept_is_recorded_and_approvable(data):
    d, train, _ = data
    assert _sftplan("plan", "--model", "1B", "--dataset", str(train), "--pii", "accept", "-o", str(d / "a.yaml")).returncode == 0
    p = read_plan(d / "a.yaml")
    assert p.request.data_check.pii_decision == "accept"
    assert {f.rule_id: f.verdict for f in p.findings}["data.pii"] == "accepted"
    assert _sftplan("approve", str(d / "a.yaml"), "--by", "alice").returncode == 0
    assert verify(read_plan(d / "a.yaml")) == ""


def test_pii_redact_plans_on_a_redacted_copy(data):
    d, train, _ = data
    copy = d / "red.jsonl"
    out = _sftplan("plan", "--model", "1B", "--dataset", str(train), "--pii", "redact", "--pii-out", str(copy),
                   "-o", str(d / "r.yaml"))
    assert out.returncode == 0, out.stderr
    p = read_plan(d / "r.yaml")
    assert p.request.dataset.file.path == str(copy)
    dc = p.request.data_check
    assert dc.pii_decision == "redact" and dc.pii_hits == 0 and dc.redacted_from.path == str(train)
    red = copy.read_text(encoding="utf-8").splitlines()
    assert "<EMAIL_ADDRESS>" in red[21] and "sam.doe" not in copy.read_text(encoding="utf-8")
    assert red[:21] == train.read_text(encoding="utf-8").splitlines()[:21]  # rows without PII copied as they were
    assert _sftplan("approve", str(d / "r.yaml"), "--by", "alice").returncode == 0


def test_no_data_check_is_recorded(data):
    d, train, _ = data
    assert _sftplan("plan", "--model", "1B", "--dataset", str(train), "--no-data-check", "-o", str(d / "s.yaml")).returncode == 0
    p = read_plan(d / "s.yaml")
    assert p.request.data_check.skipped and p.request.data_check.pii_hits == 0
    assert any("skipped" in w for w in p.warnings)
    assert _sftplan("approve", str(d / "s.yaml"), "--by", "alice").returncode == 0


def test_plan_without_dataset_has_no_data_check():
    out = _sftplan("plan", "--model", "1B", "--examples", "1000", "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["request"]["data_check"] is None
