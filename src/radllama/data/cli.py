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
    deidentify: bool = typer.Option(
        False, "--deidentify", help="Replace names, dates, IDs, phones, ... with [NAME], [DATE], ... first."
    ),
) -> None:
    """OpenI (Indiana University) chest X-ray reports → seeded train/validation/test splits."""
    from radllama.data.openi import build_openi_splits
    from radllama.data.splits import print_summary

    manifest = build_openi_splits(
        out, source=source, seed=seed, test_size=test_size, validation_size=validation_size, deidentify=deidentify
    )
    print_summary(manifest, out)


@app.command("mimic-cxr")
def mimic_cxr_command(
    reports: Path = typer.Option(..., "--reports", help="Folder with files/pXX/... or mimic-cxr-reports.zip."),
    split_csv: Path = typer.Option(..., "--split-csv", help="mimic-cxr-2.0.0-split.csv or .csv.gz."),
    out: Path = typer.Option(..., "--out", help="Folder for the split files and manifest.json."),
    deidentify: bool = typer.Option(
        False, "--deidentify", help="Replace names, dates, IDs, phones, ... with [NAME], [DATE], ... first."
    ),
) -> None:
    """MIMIC-CXR reports → train/validation/test by the official split (findings → impression)."""
    from radllama.data.mimic_cxr import build_mimic_cxr_splits
    from radllama.data.splits import print_summary

    print_summary(build_mimic_cxr_splits(reports, split_csv, out, deidentify=deidentify), out)


@app.command("table")
def table_command(
    input_path: Path = typer.Option(..., "--input", help="A .csv (with header), .jsonl or .parquet file of reports."),
    findings_col: str = typer.Option(..., "--findings-col", help="Column holding the findings."),
    impression_col: str = typer.Option(..., "--impression-col", help="Column holding the impression."),
    out: Path = typer.Option(..., "--out", help="Folder for the split files and manifest.json."),
    id_col: str | None = typer.Option(None, "--id-col", help="Column with a unique report id."),
    group_col: str | None = typer.Option(
        None, "--group-col", help="Column with the patient: one patient never spans two splits."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the group shuffle."),
    test_frac: float = typer.Option(0.15, "--test-frac", help="Fraction of reports for test."),
    validation_frac: float = typer.Option(0.1, "--validation-frac", help="Fraction of reports for validation."),
    deidentify: bool = typer.Option(
        False, "--deidentify", help="Replace names, dates, IDs, phones, ... with [NAME], [DATE], ... first."
    ),
) -> None:
    """A CSV/JSONL table of reports → train/validation/test splits, patient-disjoint with --group-col."""
    from radllama.data.splits import print_summary
    from radllama.data.tabular import build_table_splits
    from radllama.progress import console

    manifest = build_table_splits(
        input_path, out, findings_col, impression_col, id_col, group_col, seed, test_frac, validation_frac, deidentify
    )
    print_summary(manifest, out)
    for warning in manifest["warnings"]:
        console.print(f"[yellow]warning:[/] {warning}", highlight=False)
