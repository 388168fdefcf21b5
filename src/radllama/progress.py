"""One progress-bar style for every long step (rich)."""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

console = Console(stderr=True)


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
