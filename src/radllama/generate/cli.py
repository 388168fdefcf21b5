"""``radllama generate``: impressions for one findings text or a whole split file."""

from __future__ import annotations

from pathlib import Path

import typer

from radllama.errors import RadLlamaError


def generate_command(
    model: Path = typer.Option(..., "--model", help="Base model folder (Hugging Face format)."),
    adapter: Path | None = typer.Option(None, "--adapter", help="LoRA adapter folder from `radllama train`."),
    findings: str | None = typer.Option(None, "--findings", help="One FINDINGS text; prints its impression."),
    input: Path | None = typer.Option(None, "--input", help="Split JSONL (records with findings)."),
    output: Path | None = typer.Option(None, "--output", help="Predictions JSONL (appended; a rerun resumes)."),
    system: str | None = typer.Option(None, "--system", help="System name in the predictions (default: folder)."),
    batch_size: int = typer.Option(32, "--batch-size", min=1),
    max_new_tokens: int = typer.Option(128, "--max-new-tokens", min=1),
    device: str | None = typer.Option(None, "--device", help="cpu, cuda, cuda:1 … (default: best available)."),
) -> None:
    """Derive impressions from findings with greedy decoding (batched, KV cache, stop at EOS)."""
    if (findings is None) == (input is None):
        raise RadLlamaError("give either --findings TEXT or --input JSONL --output JSONL")
    if input is not None and output is None:
        raise RadLlamaError("--input needs --output")
    from radllama.generate.impressions import clean_findings, complete_impressions, generate_file
    from radllama.models.loading import load_for_inference

    if findings is not None:
        clean_findings(findings)  # fail on empty input before loading any weights
    elif output is not None and not output.parent.exists():
        raise RadLlamaError(f"output folder {output.parent} does not exist")
    loaded = load_for_inference(model, adapter, device=device)
    if findings is not None:
        typer.echo(complete_impressions(loaded, [findings], 1, max_new_tokens)[0].text)
        return
    name = system or (adapter or model).name
    n = generate_file(loaded, input, output, name, batch_size, max_new_tokens)
    typer.echo(f"{n} new prediction(s) written to {output}")
