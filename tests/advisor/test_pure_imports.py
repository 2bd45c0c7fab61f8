"""The advisor core never imports torch, transformers, deepspeed or textual (DESIGN.md).

Every module under advisor/ (recursively, advisor/tui excluded) is imported in one fresh
subprocess; the heavy packages must then be absent from sys.modules.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "transformers", "deepspeed", "textual")


def _modules() -> list[str]:
    names = []
    for path in sorted((REPO / "advisor").rglob("*.py")):
        rel = path.relative_to(REPO).with_suffix("")
        if rel.parts[:2] == ("advisor", "tui") or rel.name == "__main__":
            continue
        parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
        names.append(".".join(parts))
    return names


def _loaded_after(code: str, packages: tuple[str, ...]) -> list[str]:
    """Run ``code`` in a fresh interpreter; the modules of ``packages`` it left in sys.modules."""
    code += f"import json, sys\nprint(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {packages!r})))\n"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_walk_finds_the_core():
    names = _modules()
    for expected in ("advisor.estimate", "advisor.memory", "advisor.catalog", "advisor.cli.estimate"):
        assert expected in names


def test_core_imports_no_heavy_package():
    code = f"import importlib\nfor n in {_modules()!r}: importlib.import_module(n)\n"
    assert _loaded_after(code, HEAVY) == []


def test_no_module_imports_pydantic():
    """One validation system, hand-written (advisor/specs.py, models.py): no module of the package, the
    faces and the executor included, loads pydantic."""
    names = _modules() + ["advisor.tui.app", "advisor.tui.planning", "executor.run", "executor.preflight"]
    code = f"import importlib\nfor n in {names!r}: importlib.import_module(n)\n"
    assert _loaded_after(code, ("pydantic",)) == []


def test_estimate_cli_imports_no_heavy_package():
    code = (
        "import runpy, sys\n"
        "sys.argv = ['advisor', 'estimate', '--model', 'llama-3.1-8b', '--gpu', 'h100-sxm', '--num-gpus', '8', '--json']\n"
        "try:\n    runpy.run_module('advisor', run_name='__main__')\n"
        "except SystemExit as e:\n    assert not e.code, e.code\n"
    )
    assert _loaded_after(code, HEAVY) == []


def test_estimate_json_imports_neither_pydantic_nor_rich():
    """`sftplan estimate --json` starts fast: the estimator's types are dataclasses (advisor/specs.py),
    so the path imports no pydantic, and rich only draws the table."""
    code = (
        "from advisor.cli import main\n"
        "rc = main(['estimate', '--model', 'llama-3.1-8b', '--gpu', 'h100-sxm', '--num-gpus', '8',"
        " '--strategy', 'fsdp', '--seq-len', '4096', '--micro-batch', '2', '--json'])\n"
        "assert rc == 0, rc\n"
    )
    assert _loaded_after(code, ("pydantic", "rich", "torch", "textual")) == []


def test_core_modules_import_no_argparse():
    """The core (advisor/*.py, the faces' subpackages aside) never parses a command line."""
    core = [f"advisor.{p.stem}" for p in sorted((REPO / "advisor").glob("*.py")) if p.stem not in ("__init__", "__main__")]
    assert "advisor.planner" in core and "advisor.specs" in core
    code = f"import importlib\nfor n in {core!r}: importlib.import_module(n)\n"
    assert _loaded_after(code, ("argparse", *HEAVY)) == []
