"""Train/validation/test splits: seeded random or given, seen-in-train flags, files and manifest.

Every source (OpenI, MIMIC-CXR, tables) ends here, so all of them write the same files:
``DIR/{train,validation,test}.jsonl`` and ``DIR/manifest.json`` (written last: its presence
marks a complete split).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from rich.table import Table

from radllama.data.records import text_key
from radllama.errors import RadLlamaError
from radllama.io import atomic_write_json, ensure_writable_dir, write_jsonl
from radllama.progress import console

SPLIT_NAMES = ("train", "validation", "test")
# The OpenI split sizes used across the radiology report summarisation (RRS) literature.
DEFAULT_TEST_SIZE = 576
DEFAULT_VALIDATION_SIZE = 292
MANIFEST_VERSION = 1


def random_split(
    records: list[dict],
    seed: int = 0,
    test_size: int = DEFAULT_TEST_SIZE,
    validation_size: int = DEFAULT_VALIDATION_SIZE,
) -> dict[str, list[dict]]:
    """Split records at random, reproducibly: same records and seed give the same split.

    Records are sorted by id first so the input order never matters; then a
    ``numpy.random.default_rng(seed)`` permutation takes ``test_size`` test records,
    ``validation_size`` validation records and leaves the rest for training.
    """
    if test_size < 0 or validation_size < 0:
        raise RadLlamaError("split sizes must not be negative")
    ordered = sorted(records, key=lambda r: str(r["id"]))
    if test_size + validation_size >= len(ordered):
        raise RadLlamaError(
            f"only {len(ordered)} usable reports: too few for {test_size} test + "
            f"{validation_size} validation + at least one training report"
        )
    perm = np.random.default_rng(seed).permutation(len(ordered))
    bounds = {"test": perm[:test_size], "validation": perm[test_size : test_size + validation_size]}
    bounds["train"] = perm[test_size + validation_size :]
    # Each file is written in id order, so a diff between two runs is readable.
    return {name: [ordered[i] for i in sorted(bounds[name])] for name in SPLIT_NAMES}


def mark_seen(splits: dict[str, list[dict]]) -> dict[str, float]:
    """Flag test records whose findings (and impression) text also occurs in train.

    OpenI is heavily templated, so these flags let evaluation report an ``unseen`` subset.
    Returns the fractions of test records with seen findings and seen impressions.
    """
    train_findings = {text_key(r["findings"]) for r in splits["train"]}
    train_impressions = {text_key(r["impression"]) for r in splits["train"]}
    test = splits["test"]
    for rec in test:
        rec["seen_findings"] = text_key(rec["findings"]) in train_findings
        rec["seen_impression"] = text_key(rec["impression"]) in train_impressions
    n = max(len(test), 1)
    return {
        "test_findings": round(sum(r["seen_findings"] for r in test) / n, 4),
        "test_impression": round(sum(r["seen_impression"] for r in test) / n, 4),
    }


def check_overlap(train: Iterable[dict], test: Sequence[dict], train_name: str) -> dict[str, int]:
    """Refuse a test case that is also a training case; count the test findings texts found in train.

    The same id on both sides (the same file given twice, a case copied across, a model's retrieval
    index built from the test split) lets a system see its answer: a leak, refused. The same
    findings *text* under different ids is expected in templated reports (OpenI: about a quarter of
    test findings), so it is counted, not refused; the ``unseen`` subset leaves those cases out.
    """
    test_ids = {str(r["id"]) for r in test}
    train_findings, shared = set(), []
    for r in train:
        if str(r["id"]) in test_ids:
            shared.append(str(r["id"]))
        train_findings.add(text_key(str(r.get("findings", ""))))
    if shared:
        shown = ", ".join(sorted(shared)[:3]) + (", …" if len(shared) > 3 else "")
        raise RadLlamaError(
            f"{train_name} and the test split share {len(shared)} id{'s' if len(shared) > 1 else ''} ({shown}): "
            "a system could see those cases' answers; remove them from one side"
        )
    same_text = sum(text_key(str(r.get("findings", ""))) in train_findings for r in test)
    return {"shared_ids": 0, "shared_findings": same_text, "test_cases": len(test)}


def deidentify_splits(splits: dict[str, list[dict]]) -> dict:
    """Replace PHI in every record's text fields with typed placeholders (``radllama.deid``), in place.

    Returns the manifest's ``deidentified`` entry: the fields and the number of spans replaced per
    type, never the text.
    """
    from radllama.deid import DEID_FIELDS, deidentify_records, engine_version
    from radllama.progress import track

    records = [rec for name in SPLIT_NAMES for rec in splits[name]]
    counts = deidentify_records(track(records, "de-identifying", total=len(records)))
    return {"fields": list(DEID_FIELDS), "engine": engine_version(), "replaced": counts}


def write_splits(out_dir: Path, splits: dict[str, list[dict]], manifest: dict, deidentify: bool = False) -> dict:
    """Write the three JSONL files and then the manifest, each atomically.

    With ``deidentify``, PHI in the text fields is replaced first (so the seen-in-train flags compare
    de-identified text) and the manifest's ``deidentified`` entry counts the replacements per type.
    ``manifest`` gets ``counts``, ``seen_in_train`` and ``files`` filled in; it is returned.
    """
    out_dir = ensure_writable_dir(Path(out_dir))
    deidentified = deidentify_splits(splits) if deidentify else None
    seen = mark_seen(splits)
    manifest = {
        "format_version": MANIFEST_VERSION,
        **manifest,
        "deidentified": deidentified,
        "counts": {name: len(splits[name]) for name in SPLIT_NAMES},
        "seen_in_train": seen,
        "files": {name: f"{name}.jsonl" for name in SPLIT_NAMES},
    }
    for name in SPLIT_NAMES:
        write_jsonl(out_dir / f"{name}.jsonl", splits[name])
    atomic_write_json(out_dir / "manifest.json", manifest)
    return manifest


def dropped_summary(dropped: dict[str, list[str]]) -> dict[str, dict]:
    """``{reason: {"count", "ids"}}`` in a stable order, for the manifest."""
    return {reason: {"count": len(ids), "ids": sorted(ids)} for reason, ids in sorted(dropped.items())}


def read_complete_manifest(out_dir: Path) -> dict | None:
    """The manifest of a complete split in ``out_dir`` (all files present, line counts right), else None."""
    path = Path(out_dir) / "manifest.json"
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        for name in SPLIT_NAMES:
            with (Path(out_dir) / manifest["files"][name]).open("rb") as fh:
                if sum(1 for line in fh if line.strip()) != manifest["counts"][name]:
                    return None
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return manifest


def print_summary(manifest: dict, out_dir: Path) -> None:
    """A short rich table: reports per split, kept/dropped, seen-in-train fractions."""
    table = Table(title=f"{manifest.get('source', 'data')} splits in {out_dir}", show_header=True)
    table.add_column("")
    table.add_column("value", justify="right")
    for name in SPLIT_NAMES:
        table.add_row(name, str(manifest["counts"][name]))
    table.add_row("kept", str(manifest.get("kept", "")))
    for reason, info in manifest.get("dropped", {}).items():
        table.add_row(f"dropped: {reason}", str(info["count"]))
    for kind, n in ((manifest.get("deidentified") or {}).get("replaced") or {}).items():
        table.add_row(f"de-identified: {kind}", str(n))
    for key in ("malformed_files", "unsectioned_files"):
        if key in manifest:
            table.add_row(key.replace("_", " "), str(manifest[key]["count"]))
    seen = manifest["seen_in_train"]
    table.add_row("test findings seen in train", f"{seen['test_findings']:.1%}")
    table.add_row("test impressions seen in train", f"{seen['test_impression']:.1%}")
    console.print(table)
