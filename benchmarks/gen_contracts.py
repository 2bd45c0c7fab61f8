"""Regenerate the plan file's reference in docs/CONTRACTS.md from the models' field descriptions.

Usage: python benchmarks/gen_contracts.py          (rewrites the block between the markers)
       python benchmarks/gen_contracts.py --check  (exit 1 when docs/CONTRACTS.md is stale)
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

CONTRACTS = REPO / "docs" / "CONTRACTS.md"


def updated(text: str) -> str:
    """``text`` with the generated block replaced (appended under its heading when missing)."""
    from advisor.schema_doc import BEGIN, END, plan_reference

    block = plan_reference()
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        tail = rest.split(END, 1)[1].lstrip("\n")
        return head + block + ("\n" + tail if tail else "")
    return text.rstrip("\n") + "\n\n## Plan file reference (plan.yaml)\n\n" + block


def main() -> int:
    text = CONTRACTS.read_text(encoding="utf-8")
    new = updated(text)
    if "--check" in sys.argv[1:]:
        if new != text:
            print("docs/CONTRACTS.md is stale: run python benchmarks/gen_contracts.py")
            return 1
        print("docs/CONTRACTS.md is up to date")
        return 0
    if new != text:
        CONTRACTS.write_text(new, encoding="utf-8")
        print("rewrote the plan file reference in docs/CONTRACTS.md")
    else:
        print("docs/CONTRACTS.md already up to date")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
