"""``radllama audit``: the memorization audit of a tuned model (radllama.audit.measures)."""

from __future__ import annotations

from pathlib import Path

import typer

from radllama.errors import RadLlamaError


def audit_command(
    model: Path = typer.Option(..., "--model", help="Base model folder (Hugging Face format)."),
    adapter: Path | None = typer.Option(None, "--adapter", help="LoRA adapter folder from `radllama train`."),
    data: Path = typer.Option(..., "--data", help="The split folder the model was trained on (train/test.jsonl)."),
    out: Path | None = typer.Option(None, "--out", help="Folder for audit.json and audit.md (default: --data)."),
    predictions: Path | None = typer.Option(
        None, "--predictions", help="Greedy test predictions to audit instead of generating them."
    ),
    samples: int = typer.Option(200, "--samples", min=1, help="Training records tried for extraction."),
    candidates: int = typer.Option(200, "--candidates", min=1, help="Random secrets each canary is ranked against."),
    seed: int = typer.Option(0, "--seed"),
    limit: int | None = typer.Option(None, "--limit", min=1, help="Audit only the first N test cases."),
) -> None:
    """Memorization audit: copying, extractable memorization, canary exposure, PHI in outputs."""
    from radllama.audit.measures import privacy_lines, run_audit
    from radllama.progress import results

    for path, what in ((data / "train.jsonl", "--data"), (data / "test.jsonl", "--data")):
        if not path.is_file():
            raise RadLlamaError(f"{what} {data}: no {path.name} (a `radllama data` folder)")
    if predictions is not None and not predictions.is_file():
        raise RadLlamaError(f"--predictions {predictions}: no such file")
    out = out or data
    figures = run_audit(model, adapter, data, out, predictions, samples, candidates, seed, limit)
    for line in privacy_lines(figures):
        results.print(line, highlight=False)
    results.print(f"written: {out / 'audit.json'}, {out / 'audit.md'} ({figures['seconds']} s)", highlight=False)
