"""``radllama review ...``: the blinded expert study of Radiology-Llama2 §4.2 (five criteria, 1-5).

create → add-rater (one secret link each) → serve (raters score in the browser) → export / report.
A rater's "finish" freezes their scores; ``reopen`` (run by whoever holds the study file) thaws them.
"""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(no_args_is_help=True, help="Blinded expert review of generated impressions.")


@app.command("create")
def create_command(
    predictions: list[Path] = typer.Option(..., "--predictions", help="Prediction JSONL files, one system each."),
    more: list[Path] | None = typer.Argument(None, hidden=True, metavar="MORE.jsonl", help="More --predictions files."),
    cases: int = typer.Option(10, "--cases", help="Number of cases to sample (the paper used 10)."),
    seed: int = typer.Option(0, "--seed", help="Seed for sampling and candidate order."),
    stratify: str | None = typer.Option(None, "--stratify", help="'unseen': half seen, half unseen."),
    include_reference: bool = typer.Option(
        False, "--include-reference", help="Add the reference impression as one more blinded candidate."
    ),
    out: Path = typer.Option(..., "--out", help="Study file to write (SQLite)."),
    force: bool = typer.Option(False, "--force", help="Replace an existing study file (loses its ratings)."),
) -> None:
    """Sample cases present in every predictions file and write a blinded study."""
    from radllama.errors import RadLlamaError
    from radllama.progress import console
    from radllama.review.create import create_study

    if stratify not in (None, "unseen"):
        raise RadLlamaError(f"--stratify accepts only 'unseen', not {stratify!r}")
    # `--predictions A.jsonl B.jsonl`: click gives an option one value, so B arrives as an argument.
    info = create_study([*predictions, *(more or [])], out, cases, seed, stratify == "unseen", include_reference, force)
    for w in info["warnings"]:
        console.print(f"[yellow]warning:[/] {w}", highlight=False)
    extra = " + reference" if include_reference else ""
    console.print(
        f"study {info['path']}: {info['cases']} cases × {len(info['systems'])} systems{extra}. "
        f"Next: radllama review add-rater {info['path']} NAME",
        highlight=False,
    )


@app.command("add-rater")
def add_rater_command(
    study: Path = typer.Argument(..., help="Study file."),
    name: str = typer.Argument(..., help="Rater's name (shown only to the coordinator and in reports)."),
    base_url: str = typer.Option("http://127.0.0.1:8765", "--base-url", help="Where raters reach serve."),
) -> None:
    """Register a rater and print their personal link (shown once; only a hash is stored)."""
    from radllama.review import store

    conn = store.open_study(study)
    try:
        token = store.add_rater(conn, name)
    finally:
        conn.close()
    # stdout carries only the link, so scripts can capture it.
    typer.echo(f"{base_url.rstrip('/')}/r/{token}")


@app.command("serve")
def serve_command(
    study: Path = typer.Argument(..., help="Study file."),
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to bind (loopback by default)."),
    port: int = typer.Option(8765, "--port", help="TCP port."),
    allow_remote: bool = typer.Option(
        False, "--allow-remote", help="Allow a non-loopback --host: other machines can then reach the study."
    ),
    allowed_host: list[str] | None = typer.Option(
        None, "--allowed-host", help="Also answer to this Host name (a reverse proxy's); others get 400."
    ),
) -> None:
    """Serve the rater pages (each rater opens /r/<token>)."""
    from radllama.errors import RadLlamaError
    from radllama.net import bind_socket, is_loopback
    from radllama.progress import console
    from radllama.review import store
    from radllama.review.server import serve

    conn = store.open_study(study)
    try:
        n_raters = conn.execute("SELECT COUNT(*) FROM raters").fetchone()[0]
    finally:
        conn.close()
    if not is_loopback(host):
        if not allow_remote:
            raise RadLlamaError(
                f"refusing to serve the study on {host}, where other machines can reach it: rater links are its "
                "only protection and traffic is plain HTTP; pass --allow-remote to do it anyway (put TLS in front)"
            )
        console.print(
            f"[yellow]warning:[/] binding {host}: anyone who can reach it sees the login page; rater "
            "tokens are the only protection, and traffic is plain HTTP (put TLS in front).",
            highlight=False,
        )
    sock = bind_socket(host, port)  # a taken port fails here, in one line
    if n_raters == 0:
        console.print("[yellow]warning:[/] no raters yet: radllama review add-rater STUDY NAME")
    shown = f"[{host}]" if ":" in host else host
    console.print(f"serving {study} on http://{shown}:{port}/ ({n_raters} raters); Ctrl-C stops", highlight=False)
    serve(study, sock, host, allowed_host or [])


@app.command("reopen")
def reopen_command(
    study: Path = typer.Argument(..., help="Study file."),
    name: str = typer.Argument(..., help="The rater whose finished review may be changed again."),
) -> None:
    """Let a rater who finished change their scores again (they finish again when done)."""
    from radllama.progress import console
    from radllama.review import store

    conn = store.open_study(study)
    try:
        was_finished = store.reopen_rater(conn, name)
    finally:
        conn.close()
    if was_finished:
        console.print(f"reopened {name}: their scores can be changed until they finish again", highlight=False)
    else:
        console.print(f"{name} has not finished: their scores can already be changed", highlight=False)


@app.command("export")
def export_command(
    study: Path = typer.Argument(..., help="Study file."),
    out: Path = typer.Option(..., "--out", help="CSV to write."),
) -> None:
    """Write every rating, unblinded, as CSV."""
    from radllama.progress import console
    from radllama.review.report import export_csv

    n = export_csv(study, out)
    console.print(f"{n} ratings → {out}", highlight=False)


@app.command("report")
def report_command(
    study: Path = typer.Argument(..., help="Study file."),
    out: Path = typer.Option(..., "--out", help="Folder for report.md, summary.json, scores.png, ratings.csv."),
    predictions: list[Path] | None = typer.Option(
        None, "--predictions", help="Prediction files to take ROUGE-L texts from (default: the study's)."
    ),
    more: list[Path] | None = typer.Argument(None, hidden=True, metavar="MORE.jsonl", help="More --predictions files."),
) -> None:
    """Unblind: scores per system and criterion, agreement (α, κ), ROUGE-L correlation, chart."""
    from radllama.progress import console
    from radllama.review.report import build_report

    files = [*(predictions or []), *(more or [])]
    summary = build_report(study, out, files or None)
    alpha = summary["krippendorff_alpha_ordinal"]["overall"]
    n = len(summary["raters"])  # raters who scored (summary["raters_without_scores"] lists the others)
    alpha_text = "n/a" if alpha is None else f"{alpha:.3f}"
    console.print(
        f"{summary['n_ratings']} scores from {n} rater{'' if n == 1 else 's'}; "
        f"Krippendorff's alpha (ordinal, overall) {alpha_text}; report → {Path(out) / 'report.md'}",
        highlight=False,
    )
