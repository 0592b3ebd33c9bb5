"""Plain-text tables for the device CLI (no rich on the device: it is not a base dependency)."""

from __future__ import annotations

from collections.abc import Sequence


def render_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns padded to their widest cell; text left-aligned, numbers right-aligned."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=True)]

    def numeric(cell: str) -> bool:
        return cell.replace(".", "", 1).replace("-", "", 1).isdigit()

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            cell.rjust(width) if numeric(cell) else cell.ljust(width)
            for cell, width in zip(cells, widths, strict=True)
        ).rstrip()

    rule = "  ".join("-" * width for width in widths)
    return "\n".join([line(headers), rule, *(line(row) for row in rows)])
