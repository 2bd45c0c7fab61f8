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


@pytest.mark.parametrize("write", [lambda p: atomic_write_text(p, "x: 1\n"),
                                   lambda p: write_lines_atomic(p, iter([b"{}\n"]))])
def test_a_new_file_gets_the_umask_mode_and_a_replaced_file_keeps_its_own(tmp_path, write):
    """Not mkstemp's 0600: a plan.md the reviewer cannot read on a shared host is a plan nobody approves."""
    import os

    old = os.umask(0o022)
    try:
        new = tmp_path / "new.txt"
        write(new)
        assert new.stat().st_mode & 0o777 == 0o644
        shared = tmp_path / "shared.txt"
        shared.write_text("old")
        shared.chmod(0o664)
        write(shared)
        assert shared.stat().st_mode & 0o777 == 0o664
        os.umask(0o077)
        private = tmp_path / "private.txt"
        write(private)
        assert private.stat().st_mode & 0o777 == 0o600
    finally:
        os.umask(old)


def test_reading_a_folder_as_a_yaml_file_says_so(tmp_path):
    from advisor.yamlio import load_yaml_mapping

    with pytest.raises(UserError, match="is a folder; give the YAML file"):
        load_yaml_mapping(tmp_path)
