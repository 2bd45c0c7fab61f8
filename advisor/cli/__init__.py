"""The `sftplan` command: argument parsing, exit codes, nothing clever.

Each group of subcommands lives in its own module with ``register(subparsers)``; a handler takes
the parsed args and returns an exit code. Bad input anywhere raises ``UserError``: one line on
stderr, exit 2, no traceback. The executor's module registers without importing torch.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import sys

from advisor.errors import UserError

# Modules that add subcommands, in help order.
COMMAND_MODULES = (
    "advisor.cli.estimate",  # estimate
    "advisor.cli.plan",  # plan, render, explain, diff, catalog, approve, verify
    "advisor.cli.execute",  # run, promote, demo
    "advisor.cli.data",  # data check, data dedup, table
    "advisor.cli.evaluate",  # evaluate
    "advisor.cli.calibrate",  # calibrate
    "advisor.tui.cli",  # tui
)
# Which module owns each command: `sftplan estimate` imports only its own module (start-up time).
COMMAND_OWNERS = {
    "estimate": "advisor.cli.estimate",
    **dict.fromkeys(("plan", "render", "explain", "diff", "catalog", "approve", "verify"), "advisor.cli.plan"),
    **dict.fromkeys(("run", "promote", "demo"), "advisor.cli.execute"),
    "evaluate": "advisor.cli.evaluate",
    "calibrate": "advisor.cli.calibrate",
    "tui": "advisor.tui.cli",
    **dict.fromkeys(("data", "table"), "advisor.cli.data"),
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2 (argparse would print usage first)
        sys.stderr.write(f"{self.prog}: {message}\n")
        raise SystemExit(2)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole parser, or (given a known command) only that command's module, which starts faster."""
    parser = _Parser(prog="sftplan", description="Plan, price, approve and run LLM fine-tuning (full SFT or LoRA). Without a command: the interactive planning session (TUI).")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    owner = COMMAND_OWNERS.get(command or "")
    for name in (owner,) if owner else COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:  # a face not built yet in this checkout
            if exc.name == name:
                continue
            raise
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        argv = ["tui"]
    parser = build_parser(argv[0])
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        from advisor.cli.fields import message  # the field -> flag table

        line = message(exc, args.command, getattr(args, "request", None), frozenset(getattr(args, "flag_fields", ())))
        sys.stderr.write(f"sftplan: {line}\n")
        return exc.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("sftplan: interrupted\n")
        return 130
    except BrokenPipeError:
        return 0
    except OSError as exc:
        line = os_error_line(exc)
        if line is None:  # not about a path or the machine: a programming error, shown in full
            raise
        sys.stderr.write(f"sftplan: {line}\n")
        return 2


# Errors of the machine rather than the code, shown in one line even when the OSError names no file (a write that
# fills the disk names none).
_ENVIRONMENT_ERRNOS = frozenset(getattr(errno, n) for n in ("ENOSPC", "EDQUOT", "EROFS", "EIO") if hasattr(errno, n))


def os_error_line(exc: OSError) -> str | None:
    """``<path>: <strerror>`` for an OSError about a path (read-only file system, permission denied, disk full...),
    ``<strerror>`` for a full disk / read-only file system / I/O error that names none; None for any other OSError
    (no errno, or no path: left to show as the programming error it is)."""
    if not isinstance(exc.errno, int):
        return None
    reason = exc.strerror or os.strerror(exc.errno)
    if exc.filename is not None:
        path = os.fsdecode(exc.filename) if isinstance(exc.filename, (str, bytes, os.PathLike)) else str(exc.filename)
        if exc.filename2 is not None:
            path += f" -> {os.fsdecode(exc.filename2)}"
        return f"{path}: {reason}"
    if exc.errno in _ENVIRONMENT_ERRNOS:
        return f"{reason} (errno {errno.errorcode.get(exc.errno, exc.errno)})"
    return None


if __name__ == "__main__":
    raise SystemExit(main())
