"""The training curve beside the model: ``training_curve.png`` drawn from ``train_log.jsonl``
(train loss, validation loss, validation ROUGE-1 by step; the best step marked)."""

from __future__ import annotations

import io
import json
from pathlib import Path

from radllama.io import atomic_write_bytes

CURVE_FILE = "training_curve.png"


def read_log(path: Path) -> list[dict]:
    """The rows of a ``train_log.jsonl`` (a line cut by a kill is skipped)."""
    rows = []
    if Path(path).is_file():
        for line in Path(path).read_text(encoding="utf-8").splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return rows


def _series(rows: list[dict], key: str) -> tuple[list[int], list[float]]:
    points = [(r["step"], r[key]) for r in rows if r.get(key) is not None]
    return [s for s, _ in points], [v for _, v in points]


def draw_training_curve(log_path: Path, png_path: Path, best_step: int | None = None) -> Path:
    """Two panels sharing the step axis: losses above, validation ROUGE-1 below. Written atomically."""
    # The object API with the Agg canvas: no pyplot, no global backend switch, no display needed.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = read_log(log_path)
    fig = Figure(figsize=(7, 5.5))
    FigureCanvasAgg(fig)
    losses = fig.add_subplot(2, 1, 1)
    rouge = fig.add_subplot(2, 1, 2, sharex=losses)
    losses.plot(*_series(rows, "loss"), label="train loss", linewidth=1)
    steps, values = _series(rows, "val_loss")
    if steps:
        losses.plot(steps, values, marker="o", markersize=3, label="validation loss")
    losses.set_ylabel("loss per target token")
    losses.legend(loc="upper right")
    steps, values = _series(rows, "val_rouge1")
    if steps:
        rouge.plot(steps, values, marker="o", markersize=3, color="tab:green", label="validation ROUGE-1")
        rouge.legend(loc="lower right")
    else:
        rouge.text(0.5, 0.5, "ROUGE-1 not measured", ha="center", va="center", transform=rouge.transAxes)
    rouge.set_ylabel("ROUGE-1 F1")
    rouge.set_xlabel("optimiser step")
    if best_step is not None:
        for ax in (losses, rouge):
            ax.axvline(best_step, color="grey", linestyle="--", linewidth=1)
        losses.set_title(f"best step {best_step} (saved in best/)", fontsize=9)
    for ax in (losses, rouge):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    atomic_write_bytes(Path(png_path), buf.getvalue())
    return Path(png_path)
