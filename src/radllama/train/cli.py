"""``radllama train`` and ``radllama export``."""

from __future__ import annotations

from pathlib import Path

import typer


def train_command(
    config: Path = typer.Option(..., "--config", help="YAML training config (see configs/)."),
    overrides: list[str] = typer.Argument(None, help="key=value overrides, e.g. optim.lr=1e-4"),
    resume: bool = typer.Option(False, "--resume", help="Continue from the last step-NNNNNN/ checkpoint."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Delete a previous run in output_dir and start again."),
) -> None:
    """LoRA instruction tuning (or radllama-mini pretraining) from a YAML config."""
    from radllama.train.config import load_config
    from radllama.train.recipes import run

    run(load_config(config, overrides or []), resume=resume, overwrite=overwrite)


def export_command(
    model: Path = typer.Option(..., "--model", help="Base model folder the adapter was trained on."),
    adapter: Path = typer.Option(..., "--adapter", help="LoRA output folder (radllama train)."),
    out: Path = typer.Option(..., "--out", help="New folder to write."),
    merge: bool = typer.Option(False, "--merge", help="Fold the adapter into full weights (plain transformers)."),
    dtype: str = typer.Option("auto", "--dtype", help="Merged weights dtype: auto, fp32, bf16, fp16."),
    allow_other_base: bool = typer.Option(
        False, "--allow-other-base", help="Load --adapter on a base other than the one it was trained on."
    ),
) -> None:
    """Export a trained adapter (for vLLM LoRA serving) or merged full weights."""
    from radllama.models.export import export_adapter, export_merged
    from radllama.progress import console

    if merge:
        done = export_merged(model, adapter, out, dtype, allow_other_base)
    else:
        done = export_adapter(model, adapter, out, allow_other_base)
    console.print(f"wrote {'merged model' if merge else 'adapter'} to {done}")
