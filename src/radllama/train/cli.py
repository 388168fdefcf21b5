"""``radllama train`` and ``radllama export``."""

from __future__ import annotations

from pathlib import Path

import typer


def train_command(
    config: Path = typer.Option(..., "--config", help="YAML training config (see configs/)."),
    overrides: list[str] = typer.Argument(None, help="key=value overrides, e.g. optim.lr=1e-4"),
    resume: bool = typer.Option(False, "--resume", help="Continue from the last step-NNNNNN/ checkpoint."),
) -> None:
    """LoRA instruction tuning (or radllama-mini pretraining) from a YAML config."""
    from radllama.train.config import load_config
    from radllama.train.recipes import run

    run(load_config(config, overrides or []), resume=resume)


def export_command() -> None:
    """Export an adapter or merged weights (placeholder until implemented)."""
    raise NotImplementedError
