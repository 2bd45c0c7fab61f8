"""The TUI uses only the advisor's public API and the executor's command line; textual stays out of the CLI."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TUI = ROOT / "advisor" / "tui"
PUBLIC = {"advisor.models", "advisor.planner", "advisor.planfile", "advisor.catalog", "advisor.architecture",
          "advisor.render", "advisor.request", "advisor.errors", "advisor.fmt", "advisor.yamlio",
          "advisor.modelfiles",  # pure: the base model's files for the approval, as the CLI records them
          "advisor.scale_table",  # pure: the by-scale table (`sftplan table`), the TUI's table view shows it
          "advisor.datacheck",  # pure: the data check (`sftplan data check`), the TUI runs it in a worker (F12)
          "advisor.calibration"}  # pure: `sftplan tui --calibration FILE` loads it (advisor/tui/cli.py)
HEAVY = ("torch", "transformers", "deepspeed", "executor")


def _modules_after(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys, json; print(json.dumps(sorted(sys.modules)))"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120, check=True)
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def test_app_imports_nothing_heavy():
    mods = _modules_after("import advisor.tui.app, advisor.tui.cli, advisor.tui.screens.run, advisor.tui.screens.table, advisor.tui.screens.datacheck")
    assert "textual" in mods  # sanity: the app really was imported
    bad = sorted(m for m in mods if m.split(".")[0] in HEAVY)
    assert not bad, f"the TUI imported {bad}"


def test_cli_does_not_import_textual():
    mods = _modules_after("import advisor.cli; advisor.cli.build_parser()")
    assert not [m for m in mods if m.split(".")[0] == "textual"]


def test_tui_source_imports_only_the_public_api():
    for path in sorted(TUI.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
                for alias in node.names:
                    assert not alias.name.startswith("_"), f"{path.name}: imports private {node.module}.{alias.name}"
            for name in names:
                top = name.split(".")[0]
                assert top not in HEAVY, f"{path.name} imports {name}"
                if top == "advisor" and not name.startswith("advisor.tui"):
                    assert name in PUBLIC, f"{path.name} imports {name}, not the advisor's public API"
