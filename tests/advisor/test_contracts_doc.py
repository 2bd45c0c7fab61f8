"""Every field of the request and plan models has a one-line description, and docs/CONTRACTS.md's plan-file
reference is what benchmarks/gen_contracts.py generates from them (a stale copy fails here)."""

import subprocess
import sys
from pathlib import Path

from advisor.schema_doc import BEGIN, END, plan_reference, undocumented_fields

REPO = Path(__file__).resolve().parents[2]


def test_every_plan_and_request_field_has_a_description():
    assert undocumented_fields() == []


def test_contracts_reference_is_generated_and_current():
    text = (REPO / "docs" / "CONTRACTS.md").read_text()
    assert BEGIN in text and END in text, "run python benchmarks/gen_contracts.py"
    block = BEGIN + text.split(BEGIN, 1)[1].split(END, 1)[0] + END + "\n"
    assert block == plan_reference(), "docs/CONTRACTS.md is stale: run python benchmarks/gen_contracts.py"
    out = subprocess.run([sys.executable, "benchmarks/gen_contracts.py", "--check"], cwd=REPO, capture_output=True,
                         text=True)
    assert out.returncode == 0, out.stdout


def test_the_reference_names_the_fields_the_faces_rely_on():
    ref = plan_reference()
    for field in ("binding_constraint", "memory_breakdown_gib", "stamp_sha256", "micro_batch_size", "examples"):
        assert f"| `{field}` |" in ref
