"""tests/reference/ keeps copies of the team's shared references (the guide's wording and the published
measurements), so a clean clone without ../shared still checks every citation and every accuracy row.
While ../shared sits beside the checkout, the copies must be identical to it."""

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
COPIES = {"SOURCES.md": REPO.parent / "shared" / "SOURCES.md",
          "measurements.yaml": REPO.parent / "shared" / "reference" / "measurements.yaml"}


@pytest.mark.parametrize("name", sorted(COPIES))
def test_copy_is_present_and_matches_the_shared_original(name):
    copy = REPO / "tests" / "reference" / name
    assert copy.is_file() and copy.stat().st_size > 0
    original = COPIES[name]
    if original.is_file():
        assert copy.read_bytes() == original.read_bytes(), f"tests/reference/{name} differs from {original}: re-copy it"
