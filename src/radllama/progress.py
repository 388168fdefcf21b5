"""One progress-bar style for every long step (rich)."""

from __future__ import annotations

import os
import sys
from typing import TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


def _width(stream: TextIO) -> int | None:
    # Piped into a log, rich would assume 80 columns and cut tables and one-line errors;
    # a wide, soft-wrapping console keeps them whole.
    return None if stream.isatty() or "COLUMNS" in os.environ else 160


# Messages and progress go to stderr.
console = Console(stderr=True, soft_wrap=True, width=_width(sys.stderr))
# Results (tables a command exists to print) go to stdout, so they can be piped on their own.
results = Console(soft_wrap=True, width=_width(sys.stdout))


def progress_bar(transient: bool = False) -> Progress:
    """A rich Progress with count, elapsed and remaining time, drawn on stderr."""
    return Progress(
        TextColumn("[bold blue]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=transient,
    )


def track(iterable, description: str, total: int | None = None):
    """Iterate with a progress bar (``rich.progress.track`` with our columns)."""
    with progress_bar() as bar:
        yield from bar.track(iterable, total=total, description=description)
