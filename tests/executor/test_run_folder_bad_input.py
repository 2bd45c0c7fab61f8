"""Bad input to the commands that act on a run folder (demo, run): one line, exit 2, nothing started."""

from advisor.cli import main


def test_demo_refuses_an_out_that_is_a_file_before_starting(tmp_path, capsys):
    f = tmp_path / "train.jsonl"
    f.write_text("{}\n")
    for out in (f, f / "sub"):
        assert main(["demo", "--out", str(out)]) == 2
        captured = capsys.readouterr()
        assert "== 1." not in captured.out  # refused before the first step's banner
        assert captured.err.startswith(f"sftplan: --out {out}: ") and "is not a folder" in captured.err
        assert captured.err.count("\n") == 1
    assert f.read_text() == "{}\n"
