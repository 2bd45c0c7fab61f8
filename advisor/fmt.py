"""Display formatters shared by every face (plan.md, the terminal, the TUI): one of each, so a figure
reads the same wherever it is shown. Pure text; rounding for display happens here."""

from __future__ import annotations


def usd(x: float | None) -> str:
    """$12.34 below $100, else $1,234 (no cents)."""
    return "-" if x is None else f"${x:,.2f}" if x < 100 else f"${x:,.0f}"


def hours(x: float | None) -> str:
    """Minutes below an hour (12.5 min), else hours (3.2 h)."""
    if x is None:
        return "-"
    return f"{x * 60:.1f} min" if x < 1 else f"{x:,.1f} h"


def secs(x: float) -> str:
    """1.25 s, or 3 significant digits below a second (0.000412 s)."""
    return f"{x:,.2f} s" if x >= 1 else f"{x:.3g} s"


def count(n: float) -> str:
    """A parameter or example count: 8.0B, 1.2M, 5,000."""
    return f"{n / 1e9:.1f}B" if n >= 1e9 else f"{n / 1e6:.1f}M" if n >= 1e6 else f"{int(n):,}"
