"""advisor/datacheck.py and `sftplan data check | dedup`: every kind of finding planted in a small
generated file and found at its line; exit codes 0/1/2; one-line errors for bad input."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from advisor.datacheck import check, dedup, lsh_bands, normalized_text
from advisor.errors import UserError

REPO = Path(__file__).resolve().parents[2]
VOCAB = [f"w{i}" for i in range(4000)]


def _text(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(VOCAB) for _ in range(n))


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """40 rows; what is planted where (1-based lines)."""
    rng = random.Random(7)
    d = tmp_path_factory.mktemp("dc")
    rows = [{"prompt": _text(rng, 40), "response": _text(rng, 60)} for _ in range(30)]
    rows[4] = {"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": _text(rng, 30)},
                            {"role": "assistant", "content": _text(rng, 50)}]}
    rows[6] = {"instruction": _text(rng, 30), "input": _text(rng, 10), "output": _text(rng, 60)}
    rows.append({"prompt": "  " + rows[2]["prompt"].upper() + "\n", "response": rows[2]["response"].replace(" ", "  ")})  # 31 = 3
    rows.append(dict(rows[9]))  # 32 = 10
    near = rows[5]["response"].split()
    near[20] = "changed"
    rows.append({"prompt": rows[5]["prompt"], "response": " ".join(near)})  # 33 ~ 6
    rows.append({"prompt": "write to jane.roe@example.org today " + _text(rng, 10), "response": "ok " + _text(rng, 10)})  # 34
    rows.append({"messages": [{"role": "user", "content": "pay " + _text(rng, 5)},
                              {"role": "assistant", "content": "card 4111 1111 1111 1111 charged"}]})  # 35
    rows.append({"prompt": "server at 192.168.10.20 is down " + _text(rng, 5), "response": _text(rng, 8)})  # 36
    rows.append({"prompt": "my ssn is 536-22-8745 " + _text(rng, 5), "response": _text(rng, 8)})  # 37
    rows.append({"prompt": "wire to DE89370400440532013000 " + _text(rng, 5), "response": _text(rng, 8)})  # 38
    rows.append({"instruction": _text(rng, 10), "output": "   "})  # 39 empty answer
    rows.append({"prompt": _text(rng, 10), "response": _text(rng, 3000)})  # 40 too long
    train = _write(d / "train.jsonl", rows)
    golden = _write(d / "golden.jsonl", [
        {"prompt": rows[11]["prompt"], "expected": rows[11]["response"]},  # 1 = train 12, prompt+answer
        {"prompt": rows[13]["prompt"], "expected": "another answer entirely"},  # 2 = train 14, prompt
        {"prompt": "an unrelated question", "expected": "an unrelated answer"},  # 3 clean
    ])
    return train, golden, check(train, golden=golden, max_seq_len=1024)


def test_exact_duplicates_after_normalisation(planted):
    assert sorted(planted[2].exact_duplicates) == [[3, 31], [10, 32]]


def test_near_duplicates_grouped_with_similarity(planted):
    r = planted[2]
    assert [g.lines for g in r.near_duplicates] == [[6, 33]]
    assert 0.8 <= r.near_duplicates[0].similarity <= 1.0
    assert r.settings["near_threshold"] == 0.8 and r.settings["shingle_words"] == 3


def test_pattern_pii_kind_line_field(planted):
    got = {(h.line, h.kind, h.field) for h in planted[2].pii}
    assert {(34, "EMAIL_ADDRESS", "prompt"), (35, "CREDIT_CARD", "messages[1].content"),
            (36, "IP_ADDRESS", "prompt"), (37, "US_SSN", "prompt"), (38, "IBAN_CODE", "prompt")} <= got
    assert {h.line for h in planted[2].pii} <= {34, 35, 36, 37, 38}, "PII reported in a row without any"
    assert any("spaCy" in n for n in planted[2].notes)


def test_golden_leakage_both_lines(planted):
    leaks = [(x.golden_line, x.train_line, x.kind) for x in planted[2].leakage]
    assert leaks == [(1, 12, "exact prompt+answer"), (2, 14, "exact prompt")]


def test_length_and_empty_answers(planted):
    r = planted[2]
    assert r.too_long.count == 1 and r.too_long.lines == [40]
    assert r.too_long.max_tokens > 1024 and r.too_long.tokens_over_total == r.too_long.max_tokens - 1024
    assert r.empty_answers == [39]
    assert r.rows == 40 and r.found


def test_near_duplicate_below_threshold_not_reported(tmp_path):
    rng = random.Random(3)
    a = _text(rng, 100)
    b = a.split()
    for i in range(0, 100, 4):  # every 4th word changed: 3-word shingle Jaccard far below 0.8
        b[i] = "x" + b[i]
    train = _write(tmp_path / "t.jsonl", [{"prompt": "q", "response": a}, {"prompt": "q", "response": " ".join(b)}])
    assert check(train, pii=False).near_duplicates == []
    assert [g.lines for g in check(train, pii=False, near_threshold=0.05).near_duplicates] == [[1, 2]]


def test_normalisation_and_bands():
    assert normalized_text([{"role": "user", "content": "  Hello\n\tWorld "}]) == "user: hello world"
    b = lsh_bands(0.8, 128)
    r = 128 // b
    assert 1 - (1 - 0.8 ** r) ** b >= 0.99


def test_dedup_keeps_first_of_each_group(planted, tmp_path):
    out = tmp_path / "dedup.jsonl"
    kept, removed = dedup(planted[0], out)
    assert removed == 3 and kept == 37
    lines = out.read_text(encoding="utf-8").splitlines()
    src = planted[0].read_text(encoding="utf-8").splitlines()
    assert lines == [s for i, s in enumerate(src, 1) if i not in (31, 32, 33)]
    with pytest.raises(UserError, match="is the input file"):
        dedup(planted[0], planted[0])


def test_bad_rows_one_line_all_counted(tmp_path):
    p = tmp_path / "bad.jsonl"
    p.write_text('{"prompt": "a", "response": "b"}\n{oops\n\n{"x": 1}\n', encoding="utf-8")
    with pytest.raises(UserError) as e:
        check(p, pii=False)
    msg = str(e.value)
    assert "\n" not in msg and f"{p}:2: not valid JSON" in msg and "1 more" in msg and "lines 4" in msg


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "advisor", "data", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=300)


def test_cli_json_and_exit_1(planted):
    train, golden, _ = planted
    out = _cli("check", str(train), "--golden", str(golden), "--max-seq-len", "1024", "--json")
    assert out.returncode == 1, out.stderr
    d = json.loads(out.stdout)
    for key in ("rows", "exact_duplicates", "near_duplicates", "pii", "leakage", "too_long", "empty_answers", "settings"):
        assert key in d
    assert d["rows"] == 40 and d["too_long"]["count"] == 1 and d["too_long"]["lines"] == [40]
    assert {"lines": [6, 33]} .items() <= d["near_duplicates"][0].items()
    assert {"golden_line": 1, "train_line": 12, "kind": "exact prompt+answer"}.items() <= d["leakage"][0].items()
    assert {"line": 34, "kind": "EMAIL_ADDRESS", "field": "prompt"}.items() <= d["pii"][0].items()


def test_cli_clean_file_exit_0_and_text(tmp_path):
    rng = random.Random(11)
    clean = _write(tmp_path / "clean.jsonl", [{"prompt": _text(rng, 20), "response": _text(rng, 20)} for _ in range(10)])
    out = _cli("check", str(clean), "--no-pii")
    assert out.returncode == 0, out.stderr
    assert "nothing found" in out.stdout and "threshold 0.8" in out.stdout and "3-word shingles" in out.stdout


@pytest.mark.parametrize("args, needle", [
    (["check", "missing.jsonl", "--no-pii"], "missing.jsonl: no such file"),
    (["check", "BAD", "--no-pii"], "BAD:2: not valid JSON"),
    (["check", "GOOD", "--no-pii", "--near-threshold", "1.5"], "--near-threshold: must be in (0, 1], got 1.5"),
    (["check", "GOOD", "--no-pii", "--golden", "BAD"], "BAD:1: unknown key"),
    (["check", "GOOD", "--spacy-model", "no_such_model_xx"], "--spacy-model: 'no_such_model_xx' is neither"),
    (["check", "GOOD", "--no-pii", "--model", "GOOD"], "--model: GOOD: a file: --model takes the model directory"),
    (["check", "CUT", "--no-pii"], "CUT:1: not valid JSON (Unterminated string starting at column 12)"),
    (["dedup", "GOOD", "-o", "OUT", "--exact-only", "--near-threshold", "0.5"],
     "--near-threshold: sets the near-duplicate cut, which --exact-only turns off"),
])
def test_cli_bad_input_exit_2_one_line(tmp_path, args, needle):
    good = _write(tmp_path / "good.jsonl", [{"prompt": "a b c", "response": "d e f"}])
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "a", "response": "b"}\n{nope\n', encoding="utf-8")
    cut = tmp_path / "cut.jsonl"
    cut.write_text('{"prompt": "abc', encoding="utf-8")  # the last row cut off inside a string
    files = {"GOOD": str(good), "BAD": str(bad), "CUT": str(cut), "OUT": str(tmp_path / "out.jsonl")}
    args = [files.get(a, a) for a in args]
    for name, path in files.items():
        needle = needle.replace(name, path)
    out = _cli(*args)
    assert out.returncode == 2, (out.stdout, out.stderr)
    assert out.stderr.count("\n") == 1 and needle in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "out.jsonl").exists()


def test_spacy_model_named_is_used(tmp_path):
    """A named spaCy pipeline (here a saved blank one: no model can be downloaded in tests) is loaded and
    PERSON/LOCATION join the checked kinds; without one the report says they were not checked."""
    spacy = pytest.importorskip("spacy")
    nlp = spacy.blank("en")
    nlp.add_pipe("ner")
    nlp.initialize()
    nlp.to_disk(tmp_path / "pipe")
    train = _write(tmp_path / "t.jsonl", [{"prompt": "John lives in Paris, mail john@example.com", "response": "ok"}])
    r = check(train, spacy_model=str(tmp_path / "pipe"))
    assert {"PERSON", "LOCATION"} <= set(r.settings["pii"]) and not any("spaCy" in n for n in r.notes)
    assert [h.kind for h in r.pii] == ["EMAIL_ADDRESS"]  # the blank pipeline knows no names; the patterns still run


def test_cli_dedup_exact_only_and_near(planted, tmp_path):
    train = planted[0]
    out = _cli("dedup", str(train), "-o", str(tmp_path / "exact.jsonl"), "--exact-only")
    assert out.returncode == 0, out.stderr
    assert "removed 2" in out.stdout and len((tmp_path / "exact.jsonl").read_text(encoding="utf-8").splitlines()) == 38
    out = _cli("dedup", str(train), "-o", str(tmp_path / "all.jsonl"))
    assert out.returncode == 0 and "removed 3" in out.stdout, out.stderr
    bad = _cli("dedup", str(train), "-o", str(train))
    assert bad.returncode == 2 and "is the input file" in bad.stderr


def test_presidio_is_loaded_only_when_a_text_passes_a_recognizers_gate(tmp_path):
    """Presidio's import (it pulls spaCy, transformers and torch: 5-15 s) waits for the first text one of its
    recognizers has to look at; a file with none is checked without it, and a candidate still loads it."""
    clean = _write(tmp_path / "clean.jsonl", [{"prompt": "no numbers here, nor addresses", "response": "fine then"}] * 3)
    code = (f"import sys; from advisor.datacheck import check; r = check({str(clean)!r}); "
            "print(len(r.pii), len(r.settings['pii']), 'presidio_analyzer' in sys.modules); "
            "from advisor.pii import pii_scanner; s = pii_scanner(); print(s('see you'), 'presidio_analyzer' in sys.modules); "
            "print([k for k, *_ in s('write to jane.roe@example.org')], 'presidio_analyzer' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:3] == ["0 9 False", "[] False", "['EMAIL_ADDRESS'] True"], out.stdout
