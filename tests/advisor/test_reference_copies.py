"""The repository keeps its own copies of the team's shared references (the guide's wording in
docs/SOURCES.md, the published measurements in tests/reference/), so a clean clone without ../shared
still checks every citation and every accuracy row. While ../shared sits beside the checkout, the
copies must be identical to it; no file in advisor/, executor/, README.md or docs/ points to it."""

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
COPIES = {"docs/SOURCES.md": REPO.parent / "shared" / "SOURCES.md",
          "tests/reference/measurements.yaml": REPO.parent / "shared" / "reference" / "measurements.yaml"}


@pytest.mark.parametrize("name", sorted(COPIES))
def test_copy_is_present_and_matches_the_shared_original(name):
    copy = REPO / name
    assert copy.is_file() and copy.stat().st_size > 0
    original = COPIES[name]
    if original.is_file():
        assert copy.read_bytes() == original.read_bytes(), f"{name} differs from {original}: re-copy it"


def test_nothing_in_the_package_or_docs_points_outside_the_repository():
    files = [*REPO.glob("advisor/**/*.py"), *REPO.glob("executor/**/*.py"), *REPO.glob("docs/*.md")]
    for path in files:
        assert "../shared" not in path.read_text(), f"{path.relative_to(REPO)} points to ../shared"
