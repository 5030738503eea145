"""Columns as kubectl prints them: left-aligned, padded to the widest cell, three spaces apart."""

from __future__ import annotations

from collections.abc import Sequence


def table(header: Sequence[str], rows: Sequence[Sequence[str]], indent: str = "") -> str:
    """The rows under the header, aligned; lines end without trailing spaces."""
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    lines = []
    for row in [header, *rows]:
        cells = [str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)]
        lines.append((indent + "   ".join(cells)).rstrip())
    return "\n".join(lines) + "\n"
