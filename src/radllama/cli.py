"""The ``radllama`` command line: one small function per command, each calling the library.

Heavy libraries (torch, transformers) are imported inside the commands so that
``radllama --help`` stays instant.
"""

from __future__ import annotations

import sys

import typer

from radllama.audit.cli import audit_command
from radllama.data.cli import app as data_app
from radllama.demo import demo_command
from radllama.evaluate.cli import compare_command, eval_command
from radllama.generate.cli import generate_command, merge_command
from radllama.models.cli import app as models_app
from radllama.review.cli import app as review_app
from radllama.serve.cli import chat_command, serve_command
from radllama.train.cli import export_command, train_command

app = typer.Typer(
    name="radllama",
    help="Local radiology-report assistants: derive the impression from the findings.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(data_app, name="data", help="Build train/validation/test splits from report collections.")
app.add_typer(models_app, name="models", help="Open pretrained bases shipped in PyPI wheels.")
app.add_typer(review_app, name="review", help="Blinded expert review of generated impressions.")
app.command("demo")(demo_command)
app.command("train")(train_command)
app.command("export")(export_command)
app.command("generate")(generate_command)
app.command("generate-merge")(merge_command)
app.command("eval")(eval_command)
app.command("compare")(compare_command)
app.command("serve")(serve_command)
app.command("chat")(chat_command)
app.command("audit")(audit_command)


def main() -> None:
    """Entry point: user errors become one red line and exit code 1, never a traceback."""
    from rich.markup import escape

    from radllama.errors import RadLlamaError
    from radllama.inference import vllm_backend
    from radllama.progress import console

    vllm_backend.IN_PROCESS_ON_CPU = True  # a command runs one offline engine at a time
    try:
        app()
    except RadLlamaError as exc:
        console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)  # text as is: "radllama[vllm]"
        sys.exit(1)
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/] (rerun the same command to resume)")
        sys.exit(130)


if __name__ == "__main__":
    main()
