"""rows.read_rows: every format normalised to messages; every bad row listed as file:line: reason."""

import json
import subprocess
import sys

import pytest

from advisor.errors import UserError
from advisor.rows import BOM, normalize_golden_row, normalize_row, read_rows


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


def test_every_bad_row_is_named_in_one_line(tmp_path):
    path = write(tmp_path, [{"prompt": "a", "response": "b"}, {"prompt": "no answer"}, "{not json",
                            {"prompt": "c", "response": "d"}, {"messages": "x"}])
    with pytest.raises(UserError) as exc:
        read_rows(path)
    msg = str(exc.value)
    assert "\n" not in msg and msg.startswith(f"{path}:2: 'prompt' needs exactly one of")
    assert msg.endswith("(and 2 more bad training rows: lines 3, 5)")


def test_many_bad_rows_name_the_first_lines_and_count_the_rest(tmp_path):
    path = write(tmp_path, [{"prompt": "a", "response": "b"}] + ["{not json"] * 30)
    with pytest.raises(UserError) as exc:
        read_rows(path)
    msg = str(exc.value)
    assert "\n" not in msg and msg.startswith(f"{path}:2: not valid JSON")
    assert msg.endswith("(and 29 more bad training rows: lines 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, ...)")


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
    code = ("import sys; import advisor.rows; bad = [m for m in ('torch', 'transformers') if m in sys.modules]; "
            "sys.exit(1 if bad else 0)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


# --------------------------------------------------------------------------- streaming edge cases (issue 11.4)


def test_line_separators_inside_strings_do_not_split_rows(tmp_path):
    """U+2028, U+2029, U+0085 and a form feed are valid inside JSON strings; only b'\\n' ends a row."""
    path = tmp_path / "train.jsonl"
    odd = "a\u2028b\u2029c\u0085d\x0ce\x1cf"
    rows = [{"prompt": odd, "response": "ok"}, {"prompt": "x", "response": odd}]
    path.write_bytes(b"".join(json.dumps(r, ensure_ascii=False).encode() + b"\n" for r in rows))
    got = read_rows(path)
    assert [r[0]["content"] for r in got] == [odd, "x"] and got[1][1]["content"] == odd


def test_line_numbers_count_blank_lines_and_crlf(tmp_path):
    path = tmp_path / "train.jsonl"
    good = json.dumps({"prompt": "p", "response": "r"}).encode()
    path.write_bytes(good + b"\r\n\r\n   \n" + good + b"\n\n{bad\n" + b'{"prompt": "p"}\r\n')
    with pytest.raises(UserError) as exc:
        read_rows(path)
    msg = str(exc.value)
    assert msg.startswith(f"{path}:6: ") and msg.endswith("(and 1 more bad training row: lines 7)")


def test_oversized_row_is_refused_by_line_without_reading_it_whole(tmp_path):
    import tracemalloc

    path = tmp_path / "train.jsonl"
    good = json.dumps({"prompt": "p", "response": "r"})
    with path.open("w") as fh:
        fh.write(good + "\n")
        fh.write(json.dumps({"prompt": "p", "response": "x" * (20 << 20)}) + "\n")  # a 20 MiB row
        fh.write(good + "\n")
    tracemalloc.start()
    try:
        with pytest.raises(UserError) as exc:
            read_rows(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert str(exc.value).startswith(f"{path}:2: row of 20,971,") and "1,048,576-byte limit" in str(exc.value)
    assert peak < 8 << 20, f"peak {peak} bytes: the long row was held in memory"
    assert len(read_rows(path, max_row_bytes=32 << 20)) == 3  # the limit is stated and can be raised


def test_bom_skipped_at_start_refused_elsewhere(tmp_path):
    path = tmp_path / "train.jsonl"
    good = json.dumps({"prompt": "p", "response": "r"}).encode()
    path.write_bytes(BOM + good + b"\n" + good + b"\n")
    assert len(read_rows(path)) == 2
    path.write_bytes(BOM + good + b"\n" + BOM + good + b"\n")
    with pytest.raises(UserError, match=r":2: a UTF-8 byte-order mark inside the file"):
        read_rows(path)


def test_not_utf8_line_is_named(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_bytes(json.dumps({"prompt": "p", "response": "r"}).encode() + b"\n" + b'{"prompt": "\xff"}\n')
    with pytest.raises(UserError, match=r":2: not UTF-8 text"):
        read_rows(path)


@pytest.mark.parametrize("row, reason", [
    ({"instruction": "x", "inptu": "y", "output": "z"}, "unknown key 'inptu' (did you mean 'input'?)"),
    ({"prompt": "x", "respons": "y", "response": "z"}, "unknown key 'respons'"),
    ({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a", "weight": 0}]},
     "messages[1] has unknown key(s) 'weight'"),
])
def test_unknown_keys_are_errors(row, reason):
    got = normalize_row(row)
    assert isinstance(got, str) and reason in got


def test_id_and_metadata_keys_are_allowed():
    assert not isinstance(normalize_row({"id": 1, "metadata": {"src": "x"}, "prompt": "p", "response": "r"}), str)


def test_golden_rows_share_the_reader():
    assert normalize_golden_row({"prompt": "2+2?", "expected": "4"}) == ([{"role": "user", "content": "2+2?"}], "4")
    assert "unknown key 'expeted'" in normalize_golden_row({"prompt": "2+2?", "expeted": "4", "expected": "4"})


def test_plan_and_run_refuse_the_same_rows_by_the_same_lines(tmp_path):
    """`sftplan plan --dataset` and the run's preflight read through the same reader: same lines, same reasons."""
    path = tmp_path / "train.jsonl"
    good = json.dumps({"prompt": "p\u2028q", "response": "r"}, ensure_ascii=False)
    path.write_text("\n".join([good, "", json.dumps({"instruction": "i", "inptu": "x", "output": "o"}), good,
                               "[1]", "", good]) + "\n", encoding="utf-8")
    with pytest.raises(UserError) as exc:
        read_rows(path)
    run_msg = str(exc.value)
    cli = subprocess.run([sys.executable, "-m", "advisor", "plan", "--model", "8B", "--dataset", str(path),
                          "--out", str(tmp_path / "plan")], capture_output=True, text=True)
    assert cli.returncode == 2 and "Traceback" not in cli.stderr
    assert cli.stderr.splitlines() == ["sftplan: " + run_msg]
    assert run_msg.startswith(f"{path}:3: ") and run_msg.endswith("(and 1 more bad training row: lines 5)")
