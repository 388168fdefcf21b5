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
    adapter: Path | None = typer.Option(None, "--adapter", help="LoRA output folder (radllama train)."),
    out: Path = typer.Option(..., "--out", help="New folder to write."),
    format: str = typer.Option(
        "adapter", "--format", help="adapter (vLLM LoRA) | merged (plain transformers) | gguf (llama.cpp, Ollama)."
    ),
    merge: bool = typer.Option(False, "--merge", help="Same as --format merged."),
    quant: str = typer.Option("f16", "--quant", help="GGUF weights: f16 | q8_0 | q4_k_m (llama.cpp's quantiser)."),
    dtype: str = typer.Option("auto", "--dtype", help="Merged weights dtype: auto, fp32, bf16, fp16."),
    allow_other_base: bool = typer.Option(
        False, "--allow-other-base", help="Load --adapter on a base other than the one it was trained on."
    ),
) -> None:
    """Export a trained adapter (vLLM LoRA serving), merged full weights, or a GGUF with an Ollama Modelfile."""
    from radllama.errors import RadLlamaError
    from radllama.models.export import export_adapter, export_merged
    from radllama.progress import console

    format = "merged" if merge else format
    if format not in ("adapter", "merged", "gguf"):
        raise RadLlamaError(f"--format must be adapter, merged or gguf, not {format!r}")
    if format == "gguf":
        from radllama.inference.gguf_export import export_gguf

        done = export_gguf(model, adapter, out, quant, allow_other_base)
        console.print(f"wrote GGUF {quant} with its Ollama Modelfile to {done}")
        return
    if adapter is None:
        raise RadLlamaError(f"--format {format} needs --adapter")
    if format == "merged":
        done = export_merged(model, adapter, out, dtype, allow_other_base)
    else:
        done = export_adapter(model, adapter, out, allow_other_base)
    console.print(f"wrote {'merged model' if format == 'merged' else 'adapter'} to {done}")
