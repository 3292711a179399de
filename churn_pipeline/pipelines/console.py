"""Terminal output for long steps: a progress bar while they run and a one-line summary when they end."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

# Progress and summaries go to stderr so stdout stays clean for data and machine-readable output.
console = Console(stderr=True, highlight=False)


@dataclass
class StepResult:
    """Filled in by the step's body: what it produced, shown in the summary line."""

    rows: int | None = None
    detail: str = ""
    extra: dict[str, object] = field(default_factory=dict)


def format_seconds(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, sec = divmod(round(seconds), 60)
    return f"{minutes}m {sec:02d}s"


@contextlib.contextmanager
def step(name: str) -> Iterator[StepResult]:
    """Time a step and print ``✓ name: N rows, detail in 12.3s`` at its end (``✗`` and re-raise on error)."""
    result = StepResult()
    start = time.perf_counter()
    try:
        yield result
    except BaseException:
        console.print(f"[red]✗[/red] {name} failed after {format_seconds(time.perf_counter() - start)}", soft_wrap=True)
        raise
    parts = []
    if result.rows is not None:
        parts.append(f"{result.rows:,} rows")
    if result.detail:
        parts.append(result.detail)
    body = ", ".join(parts)
    console.print(f"[green]✓[/green] {name}: {body} in {format_seconds(time.perf_counter() - start)}", soft_wrap=True)


@contextlib.contextmanager
def progress_bar(description: str, total: int | None) -> Iterator[callable]:
    """A rich progress bar; yields ``advance(n=1)``. Quiet (no bar) when stderr is not a terminal."""
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    ) as progress:
        task = progress.add_task(description, total=total)

        def advance(n: int = 1) -> None:
            progress.advance(task, n)

        yield advance
