"""``radllama data ...`` commands: each builds ``DIR/{train,validation,test}.jsonl`` + manifest."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(no_args_is_help=True)


@app.command("openi")
def openi_command(
    out: Path = typer.Option(..., "--out", help="Folder for the split files and manifest.json."),
    source: str | None = typer.Option(
        None,
        "--source",
        help="NLMCXR_reports.tgz, a folder of its XML files, or a URL (default: NLM, then PyPI).",
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the random split."),
    test_size: int = typer.Option(576, "--test-size", help="Test reports (RRS literature: 576)."),
    validation_size: int = typer.Option(292, "--validation-size", help="Validation reports (RRS: 292)."),
) -> None:
    """OpenI (Indiana University) chest X-ray reports → seeded train/validation/test splits."""
    from radllama.data.openi import build_openi_splits
    from radllama.data.splits import print_summary

    manifest = build_openi_splits(
        out, source=source, seed=seed, test_size=test_size, validation_size=validation_size
    )
    print_summary(manifest, out)


@app.command("mimic-cxr")
def mimic_cxr_command(
    reports: Path = typer.Option(
        ..., "--reports", help="Folder with files/pXX/... or mimic-cxr-reports.zip."
    ),
    split_csv: Path = typer.Option(..., "--split-csv", help="mimic-cxr-2.0.0-split.csv or .csv.gz."),
    out: Path = typer.Option(..., "--out", help="Folder for the split files and manifest.json."),
) -> None:
    """MIMIC-CXR reports → train/validation/test by the official split (findings → impression)."""
    from radllama.data.mimic_cxr import build_mimic_cxr_splits
    from radllama.data.splits import print_summary

    print_summary(build_mimic_cxr_splits(reports, split_csv, out), out)
