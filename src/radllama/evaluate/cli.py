"""``radllama eval`` and ``radllama compare``: parse options, call the library, print."""

from __future__ import annotations

from pathlib import Path

import typer

from radllama.errors import RadLlamaError


def eval_command(
    predictions: list[Path] = typer.Option(..., "--predictions", "-p", help="Prediction JSONL file(s)."),
    more: list[Path] = typer.Argument(None, help="More prediction files (after --predictions)."),
    split: Path | None = typer.Option(None, "--split", help="Test split JSONL (references, ids)."),
    reference_system: str | None = typer.Option(
        None, "--reference-system", help="Paired permutation test of every other system against this one."
    ),
    out: Path | None = typer.Option(None, "--out", help="Folder for metrics.json and reports."),
    resamples: int = typer.Option(1000, "--resamples", help="Bootstrap resamples."),
    seed: int = typer.Option(0, "--seed", help="Bootstrap seed."),
    model_metrics: str | None = typer.Option(
        None, "--metrics", help="Model-based metrics too: any of bertscore,radgraph,chexbert (needs their weights)."
    ),
    metric_weights: Path | None = typer.Option(
        None,
        "--metric-weights",
        help="Folder with one sub-folder per model metric (default $RADLLAMA_METRIC_WEIGHTS or "
        "~/.cache/radllama/metric-weights).",
    ),
    allow_download: bool = typer.Option(
        False, "--allow-download", help="Let the metric packages download missing weights (off by default)."
    ),
) -> None:
    """Score prediction files: ROUGE-1/2/L, clinical F1 (CheXbert-style, positive mentions), conciseness, 95% CIs."""
    from radllama.evaluate.metrics import add_model_metrics, metrics_from_cases, score_systems
    from radllama.evaluate.model_metrics import DEFAULT_WEIGHTS, check_available, parse_metrics
    from radllama.evaluate.report import rich_table, write_reports
    from radllama.io import ensure_writable_dir, read_jsonl
    from radllama.progress import console

    files = list(predictions) + list(more or [])
    split_records = read_jsonl(split) if split is not None else None
    if resamples < 1:
        raise RadLlamaError("--resamples must be at least 1")
    names = parse_metrics(model_metrics)
    weights = metric_weights or DEFAULT_WEIGHTS
    check_available(names, weights, allow_download)  # before any scoring: a missing weight is one line
    systems = score_systems(files, split_records)
    metrics = metrics_from_cases(systems, reference_system, resamples, seed)
    if names:
        add_model_metrics(metrics, systems, names, weights, allow_download, resamples, seed)
    _print_summary(metrics)
    if out is not None:
        ensure_writable_dir(out)
        paths = write_reports(metrics, out, systems)
        console.print(f"wrote {paths['metrics']} and reports in {out}")
    for subset in ("all", "unseen"):
        console.print(rich_table(metrics, subset))


def _print_summary(metrics: dict) -> None:
    """One line per system with input problems, and the paired tests if any."""
    from radllama.progress import console

    for name, issues in metrics.get("issues", {}).items():
        problems = {
            k: issues.get(k, 0)
            for k in ("failed", "empty_predictions", "duplicate_ids", "missing_ids", "unknown_ids")
            if issues.get(k, 0)
        }
        if problems:
            text = ", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in problems.items())
            console.print(f"[yellow]{name}[/]: {text} (scored {issues.get('scored', 0)})")
    for name, subsets in metrics.get("paired_vs_reference", {}).items():
        parts = []
        for key, label in (("rougeL", "ΔR-L"), ("clinical_micro_f1", "ΔF1-13 µ")):
            test = subsets["all"].get(key)
            if test and test["n"]:
                parts.append(
                    f"{label} {test['mean_diff']:+.4f} [{test['ci95'][0]:+.4f}, {test['ci95'][1]:+.4f}] "
                    f"p={test['p_value']:.3f} (Holm {test['p_holm']:.3f})"
                )
        n = subsets["all"]["rougeL"]["n"]
        console.print(f"{name} vs {metrics['reference_system']} (paired permutation, n={n}): " + "; ".join(parts))


def compare_command(
    config: Path = typer.Option(..., "--config", help="YAML comparison config (configs/compare/*.yaml)."),
    out: Path | None = typer.Option(None, "--out", help="Output folder (default: the config's `out`)."),
    limit: int | None = typer.Option(None, "--limit", help="Only the first N test cases (a quick look)."),
    backend: str | None = typer.Option(
        None, "--backend", help="auto | transformers | vllm | llamacpp for local systems whose config names none."
    ),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Redo a system's cached predictions when they were made from something else."
    ),
) -> None:
    """Run many systems on one split → leaderboard, charts, per-case HTML (resumable)."""
    from radllama.evaluate.compare import run_comparison
    from radllama.evaluate.report import rich_table
    from radllama.progress import console

    result = run_comparison(
        config, out_dir=out, limit=limit, backend=backend, on_change="redo" if overwrite else "error"
    )
    _print_summary(result["metrics"])
    for subset in ("all", "unseen"):
        console.print(rich_table(result["metrics"], subset))
    console.print(f"reports in {result['out']}: leaderboard.md, leaderboard.csv, charts/, cases.html")
