"""Bad input to the data readers and `sftplan data`: one line naming the file:line or the field, exit 2,
never a traceback, never a silent default."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from advisor.datacheck import check, dedup
from advisor.errors import UserError
from advisor.rows import read_jsonl, normalize_golden_row, read_rows

REPO = Path(__file__).resolve().parents[2]
GOOD = [{"prompt": "a b c d", "response": "x"}, {"prompt": "e f g h", "response": "y"}]


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "advisor", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=300)


def _write(path: Path, lines: list) -> Path:
    path.write_text("".join((l if isinstance(l, str) else json.dumps(l)) + "\n" for l in lines), encoding="utf-8")
    return path


def _one_line_exit_2(out: subprocess.CompletedProcess, needle: str) -> None:
    assert out.returncode == 2, (out.stdout, out.stderr)
    assert "Traceback" not in out.stderr and out.stderr.count("\n") == 1 and needle in out.stderr, out.stderr


# --------------------------------------------------------------------------- lone surrogates
@pytest.mark.parametrize("line, where", [
    ('{"prompt": "\\ud800", "response": "b"}', "'prompt' holds a lone surrogate \\ud800"),
    ('{"messages": [{"role": "user", "content": "x\\uDFFF"}, {"role": "assistant", "content": "y"}]}',
     "'messages[0].content' holds a lone surrogate \\udfff"),
    ('{"prompt": "a", "response": "b", "metadata": {"k\\ud800": 1}}', "key 'metadata.k\\ud800' holds"),
])
def test_lone_surrogate_is_a_bad_row_by_line(tmp_path, line, where):
    path = _write(tmp_path / "t.jsonl", [*GOOD, "", line])
    with pytest.raises(UserError, match=r"t\.jsonl:4: ") as exc:
        read_rows(path)
    assert where in str(exc.value)
    golden = _write(tmp_path / "g.jsonl", [line.replace('"response"', '"expected"')])
    with pytest.raises(UserError, match=r"g\.jsonl:1: .*lone surrogate"):
        read_jsonl(golden, normalize_golden_row, "golden", "golden set")


def test_valid_surrogate_pair_and_escaped_backslash_are_fine(tmp_path):
    path = _write(tmp_path / "t.jsonl", ['{"prompt": "\\ud83d\\ude00", "response": "\\\\ud800 is text"}'])
    assert read_rows(path)[0][0]["content"] == "\U0001F600"


@pytest.mark.parametrize("command", ["check", "dedup", "plan", "golden"])
def test_lone_surrogate_cli_exit_2_one_line(tmp_path, command):
    bad = _write(tmp_path / "bad.jsonl", [*GOOD, '{"prompt": "\\ud800", "response": "b"}'])
    good = _write(tmp_path / "good.jsonl", GOOD)
    if command == "golden":
        bad = _write(tmp_path / "bad.jsonl",
                     [{"prompt": "p", "expected": "e"}] * 2 + ['{"prompt": "\\ud800", "expected": "b"}'])
    args = {"check": ["data", "check", str(bad), "--no-pii"],
            "dedup": ["data", "dedup", str(bad), "-o", str(tmp_path / "out.jsonl")],
            "plan": ["plan", "--model", "8B", "--dataset", str(bad), "--out", str(tmp_path / "plan")],
            "golden": ["data", "check", str(good), "--no-pii", "--golden", str(bad)]}[command]
    _one_line_exit_2(_cli(*args), f"{bad}:3: 'prompt' holds a lone surrogate")
    assert not (tmp_path / "out.jsonl").exists()


# --------------------------------------------------------------------------- 0 is a value, not "unset"
@pytest.mark.parametrize("args, needle", [
    (["check", "--near-threshold", "0"], "--near-threshold: must be in (0, 1], got 0"),
    (["check", "--shingle-words", "0"], "--shingle-words: must be >= 1, got 0"),
    (["check", "--max-seq-len", "0"], "--max-seq-len: must be > 0, got 0"),
    (["dedup", "--near-threshold", "0"], "--near-threshold: must be in (0, 1], got 0"),
])
def test_zero_settings_are_refused_not_defaulted(tmp_path, args, needle):
    good = _write(tmp_path / "good.jsonl", GOOD)
    cmd = ["data", args[0], str(good)] + (["--no-pii"] if args[0] == "check" else ["-o", str(tmp_path / "o.jsonl")])
    _one_line_exit_2(_cli(*cmd, *args[1:]), needle)


def test_dedup_core_refuses_zero_threshold(tmp_path):
    good = _write(tmp_path / "good.jsonl", GOOD)
    with pytest.raises(UserError) as exc:
        dedup(good, tmp_path / "o.jsonl", near_threshold=0)
    assert exc.value.field == "near_threshold"


# --------------------------------------------------------------------------- several bad golden rows
def test_bad_golden_rows_listed_by_line_number(tmp_path):
    good = _write(tmp_path / "good.jsonl", GOOD)
    golden = _write(tmp_path / "badmid.jsonl", [{"prompt": "a", "expected": "x"}, "bad", {"prompt": ""}, {"foo": 1},
                                                {"prompt": "k", "expected": "y"}, "[1]", "nope"])
    with pytest.raises(UserError) as exc:
        check(good, golden=golden, pii=False)
    assert str(exc.value).startswith(f"{golden}:2: not valid JSON")
    assert str(exc.value).endswith("(and 4 more bad golden rows: lines 3, 4, 6, 7)")
    _one_line_exit_2(_cli("data", "check", str(good), "--no-pii", "--golden", str(golden)), "lines 3, 4, 6, 7)")


# --------------------------------------------------------------------------- --model
def test_model_path_that_does_not_exist_is_refused(tmp_path):
    good = _write(tmp_path / "good.jsonl", GOOD)
    missing = str(tmp_path / "no_such_model")
    with pytest.raises(UserError) as exc:
        check(good, pii=False, model=missing)
    assert exc.value.field == "model" and missing in str(exc.value)
    _one_line_exit_2(_cli("data", "check", str(good), "--no-pii", "--model", missing), f"unknown model '{missing}'")


@pytest.mark.parametrize("model", ["llama-3.1-8b", "8B", "DIR"])
def test_preset_size_or_directory_without_tokenizer_keeps_the_stated_approximation(tmp_path, model):
    good = _write(tmp_path / "good.jsonl", GOOD)
    model = str(tmp_path) if model == "DIR" else model
    r = check(good, pii=False, model=model)
    assert r.settings["token_count_method"].startswith("approximation: 4 characters per token")
    assert f"no tokenizer.json in {model}" in r.settings["token_count_method"]


def test_redact_of_a_file_with_a_bad_row_writes_no_copy(tmp_path):
    pytest.importorskip("presidio_anonymizer")
    from advisor.datacheck import redact

    src = tmp_path / "train.jsonl"
    src.write_text('{"prompt": "mail me at a@example.com", "response": "ok"}\n{"prompt": 5}\n')
    dst = tmp_path / "redacted.jsonl"
    with pytest.raises(UserError, match=r"train.jsonl:2"):
        redact(src, dst)
    assert not dst.exists() and [p.name for p in tmp_path.iterdir()] == ["train.jsonl"]
