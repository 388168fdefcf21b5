"""``radllama serve`` (OpenAI-compatible API + assistant page) and ``radllama chat`` (terminal)."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from radllama.errors import RadLlamaError
from radllama.net import bind_socket, is_loopback

PHI_GUARD_HELP = (
    "redact | flag | off: names, dates, IDs ... in an answer that the request did not hold are replaced by "
    "[NAME], [DATE] ... (redact), or only counted in /health and the log (flag)."
)


def resolve_api_key(host: str, api_key_env: str | None) -> str | None:
    """The API key from the named environment variable; refuse non-loopback hosts without one."""
    key = None
    if api_key_env:
        key = os.environ.get(api_key_env, "").strip()
        if not key:
            raise RadLlamaError(f"--api-key-env {api_key_env}: that environment variable is unset or empty")
    if not is_loopback(host) and not key:
        raise RadLlamaError(
            f"refusing to listen on {host} without an API key: export a secret in an environment variable "
            "and pass its name with --api-key-env (or keep the default --host 127.0.0.1)"
        )
    return key


def serve_command(
    model: Path = typer.Option(..., "--model", help="Model folder (HF base or merged; a GGUF export for llamacpp)."),
    adapter: Path | None = typer.Option(None, "--adapter", help="LoRA adapter folder."),
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to bind (loopback by default)."),
    port: int = typer.Option(8000, "--port", help="TCP port."),
    api_key_env: str | None = typer.Option(
        None, "--api-key-env", help="Name of the environment variable holding the API key (Bearer auth)."
    ),
    backend: str = typer.Option(
        "auto",
        "--backend",
        help="auto | transformers | vllm | llamacpp (auto: by a documented rule, for --clients clients; says why).",
    ),
    clients: int = typer.Option(
        1,
        "--clients",
        min=1,
        help="Expected concurrent clients: what --backend auto sizes the server for (not a limit; see --max-batch).",
    ),
    dtype: str = typer.Option("auto", "--dtype", help="auto | fp32 | bf16 | fp16 (auto: fp32 on CPU)."),
    tensor_parallel_size: int = typer.Option(1, "--tensor-parallel-size", min=1, help="GPUs per model (vLLM)."),
    max_batch: int = typer.Option(32, "--max-batch", min=1, help="Most rows decoded together."),
    batch_window_ms: float = typer.Option(
        10.0,
        "--batch-window-ms",
        min=0,
        help="How long an idle engine waits for a burst of requests to start together.",
    ),
    queue_size: int = typer.Option(256, "--queue-size", min=1, help="Queued requests before 503."),
    timeout_s: float = typer.Option(60.0, "--timeout-s", min=0.1, help="Per-request limit (then 504)."),
    max_body_bytes: int = typer.Option(1_000_000, "--max-body-bytes", min=1, help="Larger bodies get 413."),
    log_content: bool = typer.Option(False, "--log-content", help="Log prompts and answers (patient data!)."),
    cors_origin: list[str] | None = typer.Option(None, "--cors-origin", help="Allow this browser origin."),
    allow_other_base: bool = typer.Option(
        False, "--allow-other-base", help="Load --adapter on a base other than the one it was trained on."
    ),
    allowed_host: list[str] | None = typer.Option(
        None, "--allowed-host", help="Also answer to this Host name (a reverse proxy's); others get 400."
    ),
    phi_guard: str = typer.Option("redact", "--phi-guard", help=PHI_GUARD_HELP),
) -> None:
    """Serve the OpenAI-compatible API, /v1/impressions and the assistant page."""
    import logging

    import uvicorn

    from radllama.deid import check_guard_mode
    from radllama.inference import resolve_backend
    from radllama.progress import console
    from radllama.serve.app import create_app
    from radllama.serve.service import ServeSettings, load_service

    # auto decides (and says why) before the port is bound, for the clients expected (not --max-batch,
    # which only caps the rows decoded together: its default of 32 would size every server for 32 users)
    backend = resolve_backend(backend, model_dir=model, clients=clients)
    check_guard_mode(phi_guard)
    key = resolve_api_key(host, api_key_env)
    sock = bind_socket(host, port)
    settings = ServeSettings(host, port, key, max_batch, batch_window_ms, queue_size, timeout_s, max_body_bytes,
                             log_content, list(cors_origin or []), list(allowed_host or []), phi_guard,
                             clients)  # fmt: skip
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    with console.status(f"loading {model}"):
        service = load_service(model, adapter, settings, backend, dtype, tensor_parallel_size, allow_other_base)
    shown = f"[{host}]" if ":" in host else host
    console.print(
        f"serving [bold]{service.name}[/] ({service.backend}) on http://{shown}:{port}/ (OpenAI API under /v1)"
        + (" — API key required" if key else ""),
        highlight=False,
    )
    # Access lines hold method, path and status only — never bodies.
    config = uvicorn.Config(create_app(service), log_level="info", access_log=True)
    uvicorn.Server(config).run(sockets=[sock])


def chat_command(
    model: Path = typer.Option(..., "--model", help="Model folder (HF base or merged; a GGUF export for llamacpp)."),
    adapter: Path | None = typer.Option(None, "--adapter", help="LoRA adapter folder."),
    max_tokens: int = typer.Option(128, "--max-tokens", min=1, help="Longest answer, in tokens."),
    temperature: float = typer.Option(0.0, "--temperature", min=0.0, help="0 = greedy."),
    backend: str = typer.Option(
        "auto", "--backend", help="auto | transformers | vllm | llamacpp (auto: by a documented rule, for one case)."
    ),
    dtype: str = typer.Option("auto", "--dtype", help="auto | fp32 | bf16 | fp16."),
    allow_other_base: bool = typer.Option(
        False, "--allow-other-base", help="Load --adapter on a base other than the one it was trained on."
    ),
) -> None:
    """Talk to a local model in the terminal (/impression <findings>, /reset, /quit)."""
    from rich.console import Console

    from radllama.inference import load_model
    from radllama.progress import console as err_console
    from radllama.serve.chat import run_chat

    with err_console.status(f"loading {model}"):
        loaded = load_model(model, adapter, backend=backend, dtype=dtype, cases=1, allow_other_base=allow_other_base)
    out = Console()

    def read() -> str:
        return out.input("[bold green]you>[/] ")

    run_chat(loaded, read, out, max_tokens, temperature)
