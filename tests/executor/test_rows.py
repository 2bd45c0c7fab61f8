"""rows.read_rows: every format normalised to messages; every bad row listed as file:line: reason."""

import json
import subprocess
import sys

import pytest

from advisor.errors import UserError
from executor.rows import normalize_row, read_rows


def write(tmp_path, lines):
    path = tmp_path / "train.jsonl"
    path.write_text("".join((l if isinstance(l, str) else json.dumps(l)) + "\n" for l in lines))
    return path


def test_all_formats_normalised(tmp_path):
    path = write(tmp_path, [
        {"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"},
                      {"role": "assistant", "content": "hello"}], "id": 7},
        {"prompt": "2+2?", "response": "4"},
        "",
        {"prompt": "3+3?", "completion": "6", "system": "math"},
        {"instruction": "add", "input": "1 1", "output": "2"},
        {"instruction": "say hi", "output": "hi"},
    ])
    rows = read_rows(path)
    assert rows == [
        [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"},
         {"role": "assistant", "content": "hello"}],
        [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}],
        [{"role": "system", "content": "math"}, {"role": "user", "content": "3+3?"},
         {"role": "assistant", "content": "6"}],
        [{"role": "user", "content": "add\n\n1 1"}, {"role": "assistant", "content": "2"}],
        [{"role": "user", "content": "say hi"}, {"role": "assistant", "content": "hi"}],
    ]


@pytest.mark.parametrize("row, reason", [
    ({"prompt": "no answer"}, "exactly one of 'response' or 'completion'"),
    ({"prompt": "x", "response": "a", "completion": "b"}, "both"),
    ({"prompt": "", "response": "a"}, "'prompt' is empty"),
    ({"prompt": 3, "response": "a"}, "'prompt' must be a string"),
    ({"messages": "not a list"}, "non-empty list"),
    ({"messages": [{"role": "user", "content": "hi"}]}, "last message must be from the assistant"),
    ({"messages": [{"role": "assistant", "content": "hi"}]}, "no user message"),
    ({"messages": [{"role": "bot", "content": "hi"}]}, "role must be one of"),
    ({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": " "}]}, "empty content"),
    ({"instruction": "x"}, "'output' must be a string"),
    ({"instruction": "x", "input": 5, "output": "y"}, "'input' must be a string"),
    ({"prompt": "x", "response": "y", "messages": []}, "ambiguous"),
    ({"text": "raw"}, "unknown format"),
    ([1, 2], "expected a JSON object"),
])
def test_reasons(row, reason):
    got = normalize_row(row)
    assert isinstance(got, str) and reason in got


def test_every_bad_row_listed_one_per_line(tmp_path):
    path = write(tmp_path, [{"prompt": "a", "response": "b"}, {"prompt": "no answer"}, "{not json",
                            {"prompt": "c", "response": "d"}, {"messages": "x"}])
    with pytest.raises(UserError) as exc:
        read_rows(path)
    lines = str(exc.value).splitlines()
    assert lines[0] == f"3 bad training rows in {path}:"
    assert [l.split(": ")[0] for l in lines[1:]] == [f"{path}:2", f"{path}:3", f"{path}:5"]
    assert "not valid JSON" in lines[2]


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        read_rows(tmp_path / "nope.jsonl")
    with pytest.raises(UserError, match="no training rows"):
        read_rows(write(tmp_path, ["", "  "]))
    bad = tmp_path / "bin.jsonl"
    bad.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(UserError, match="not UTF-8"):
        read_rows(bad)


def test_pure_no_torch():
    code = ("import sys; import executor.rows; bad = [m for m in ('torch', 'transformers') if m in sys.modules]; "
            "sys.exit(1 if bad else 0)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
