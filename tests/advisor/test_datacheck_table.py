"""`sftplan table` (advisor/scale_table.py): the by-scale table is the planner's answers, cell by cell."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from advisor.catalog import load_catalog
from advisor.models import PlanRequest
from advisor.planner import plan
from advisor.scale_table import DEFAULT_MODELS, ROWS, build, to_markdown, to_text

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def table():
    return build(load_catalog())


def test_shape_and_assumptions(table):
    assert [label for label, _ in table.rows] == ["< 1k", "1k-10k", "10k-100k", "100k-1M", "> 1M"]
    assert table.models == list(DEFAULT_MODELS) and all(len(r) == 4 for r in table.cells)
    assert table.assumptions["tokens_per_example"] == 512
    assert "chosen by the rules" in table.assumptions["epochs"]
    md = to_markdown(table)
    assert "| examples |" in md and "tokens per example: 512" in md and md.count("\n| ") == 6
    assert "epochs:" in to_text(table)
    assert table.warnings == [] and "warning" not in md  # the defaults warn of nothing the table could act on


def test_an_input_every_cell_warns_of_is_printed_above_the_table():
    t = build(load_catalog(), models=["1B"], avg_tokens=9000, max_seq_len=4096)
    want = "dataset.avg_tokens 9000 is above max_seq_len 4096"
    assert len(t.warnings) == 1 and want in t.warnings[0]
    assert f"warning (every cell): {want}" in to_markdown(t) and want in to_text(t)


@pytest.mark.parametrize("row, col", [(0, 0), (2, 1), (4, 3)])
def test_cell_is_the_planners_answer(table, row, col):
    n, model = ROWS[row][1], DEFAULT_MODELS[col]
    p = plan(PlanRequest(model=model, dataset={"examples": n, "avg_tokens": 512}), load_catalog())
    c = table.cells[row][col]
    assert (c.method, c.gpu, c.num_gpus, c.hours, c.cost_usd, c.epochs) == (
        p.method, p.recommended.gpu, p.recommended.num_gpus, p.estimate.hours, p.estimate.cost_usd,
        p.hyperparameters.epochs)


def test_goal_changes_the_method():
    t = build(load_catalog(), models=["8B"], goals=["deep-retask"], epochs=1)
    assert t.assumptions["epochs"] == 1 and t.assumptions["goals"] == ["deep-retask"]
    assert {c.epochs for row in t.cells for c in row} == {1}
    big = t.cells[-1][0]
    p = plan(PlanRequest(model="8B", dataset={"examples": ROWS[-1][1], "avg_tokens": 512}, epochs=1,
                         goals=["deep-retask"]), load_catalog())
    assert big.method == p.method


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "advisor", "table", *args], cwd=REPO, capture_output=True, text=True, timeout=120)


def test_cli_json_and_models():
    out = _cli("--models", "1B,8B", "--format", "json", "--avg-tokens", "1024")
    assert out.returncode == 0, out.stderr
    d = json.loads(out.stdout)
    assert d["models"] == ["1B", "8B"] and len(d["rows"]) == 5 and len(d["rows"][0]["cells"]) == 2
    assert d["assumptions"]["tokens_per_example"] == 1024


def test_cli_bad_model_one_line():
    out = _cli("--models", "no-such-model-zz")
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "Traceback" not in out.stderr, out.stderr


def test_parse_models_names_the_bad_entry():
    from advisor.errors import UserError
    from advisor.scale_table import parse_models

    assert parse_models(" 1b, llama-3.1-8b ,70B") == ["1b", "llama-3.1-8b", "70B"]
    for text, wanted in (("1b,llama-3.1-8", "entry 2 'llama-3.1-8': unknown model (did you mean 'llama-3.1-8b'?)"),
                         ("1b,,8b", "entry 2 is empty"), ("", "no model given"), ("0b", "entry 1 '0b': ")):
        with pytest.raises(UserError) as err:
            parse_models(text)
        assert err.value.field == "models" and err.value.message.startswith(wanted), err.value.message
        assert "\n" not in str(err.value) and len(str(err.value)) < 120  # one short line, not the preset list


def test_cli_bad_entry_names_flag_and_entry():
    out = _cli("--models", "1b,,8b")
    assert out.returncode == 2 and out.stderr == "sftplan: --models '1b,,8b': entry 2 is empty (a comma too many?)\n"
