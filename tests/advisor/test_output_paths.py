"""Every atomic writer (plan.yaml, calibration.yaml, the dedup / redact copies) refuses a folder or an empty name
as its output with one line naming it, instead of failing inside the rename with a traceback."""
import pytest

from advisor.datacheck import write_lines_atomic
from advisor.errors import UserError
from advisor.yamlio import atomic_write_text


@pytest.mark.parametrize("write", [lambda p: atomic_write_text(p, "x: 1\n"),
                                   lambda p: write_lines_atomic(p, iter([b"{}\n"]))])
def test_a_folder_or_an_empty_name_is_bad_input(tmp_path, write):
    with pytest.raises(UserError, match="is a folder"):
        write(tmp_path)
    with pytest.raises(UserError, match="empty"):
        write("")
    assert list(tmp_path.iterdir()) == []  # no temp file left behind
    out = tmp_path / "new" / "out.txt"
    write(out)
    assert out.read_bytes()
