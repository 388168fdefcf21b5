"""Tokenised training examples in a memory-mapped Arrow table (Hugging Face ``datasets``).

A million reports make hundreds of millions of token ids: as Python lists they take many GB,
in Arrow 4 bytes each, on disk and paged in as batches are read. The table is written from a
generator of examples (nothing is held but the chunk being encoded), under a key that hashes
everything deciding its contents: the data, the tokenizer, the prompt style, the settings and
the radllama code. A later run with the same key (a resumed run, or another run given the same
``data.cache_dir``) opens the table instead of building it again; any change makes a new one.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from radllama.errors import RadLlamaError
from radllama.provenance import file_digest
from radllama.train.examples import IGNORE_INDEX, Example

CACHE_DIR = "examples_cache"  # in output_dir unless data.cache_dir names a folder to share


def _features() -> Any:
    """The columns (declared for the in-memory kind; the cache file infers the same)."""
    from datasets import Features, List, Value

    # ``targets`` counts the tokens that carry loss (labels after the first, as the shifted loss sees them).
    return Features(
        {
            "input_ids": List(Value("int32")),
            "labels": List(Value("int32")),
            "length": Value("int32"),
            "targets": Value("int32"),
            "task": Value("string"),
            "cut": Value("bool"),
        }
    )


def _row(task: str, example: Example, cut: bool) -> dict[str, Any]:
    targets = sum(1 for t in example.labels[1:] if t != IGNORE_INDEX)
    ids, labels = example.input_ids, example.labels
    return {"input_ids": ids, "labels": labels, "length": len(ids), "targets": targets, "task": task, "cut": cut}


class ExampleTable:
    """Examples as the training loop reads them: rows by index, and per-example ``lengths`` and
    ``targets`` (tokens carrying loss) as numpy arrays for batching without touching the rows."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset
        # Selected once: a selection per batch costs more than reading the batch's rows.
        self._ids_and_labels = dataset.select_columns(["input_ids", "labels"])
        self.lengths: np.ndarray = self._column("length").astype(np.int64)
        self.targets: np.ndarray = self._column("targets").astype(np.int64)

    def _column(self, name: str) -> np.ndarray:
        # Straight from Arrow: no Python object per row.
        return self.dataset.with_format("arrow")[name].to_numpy()

    @classmethod
    def from_examples(cls, examples: Iterable[Example], task: str = "") -> ExampleTable:
        """An in-memory table of a few examples (none made, tests)."""
        from datasets import Dataset

        features = _features()
        columns: dict[str, list] = {name: [] for name in features}
        for example in examples:
            for name, value in _row(task, example, False).items():
                columns[name].append(value)
        return cls(Dataset.from_dict(columns, features=features))

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Example:
        return self.rows([index])[0]

    def rows(self, indices: Sequence[int]) -> list[Example]:
        """The examples at ``indices``, in that order (one gather from the table)."""
        got = self._ids_and_labels[[int(i) for i in indices]]
        return [Example(ids, labels) for ids, labels in zip(got["input_ids"], got["labels"], strict=True)]

    def per_task(self, names: Iterable[str]) -> dict[str, int]:
        """Examples of each task in ``names`` (0 for a task that made none)."""
        if not len(self):
            return dict.fromkeys(names, 0)
        counts = self.dataset.with_format("arrow")["task"].value_counts().to_pylist()
        found = {c["values"]: c["counts"] for c in counts}
        return {name: found.get(name, 0) for name in names}

    def n_cut(self) -> int:
        """Examples whose prompt was cut to fit ``max_seq_len``."""
        return int(self._column("cut").sum())

    def is_memory_mapped(self) -> bool:
        """Whether the rows are read from the cache file rather than held in memory."""
        return bool(self.dataset.cache_files)


def source_digest() -> str:
    """sha256 over radllama's own source: code that builds examples changes what they are."""
    import radllama

    root = Path(radllama.__file__).parent
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        h.update(f"{path.relative_to(root)}\0{file_digest(path)}\n".encode())
    return h.hexdigest()


def content_key(parts: dict[str, Any]) -> str:
    """A short stable hash of ``parts`` (JSON-able, tokenizer objects hashed by ``datasets``)."""
    from datasets.fingerprint import Hasher

    plain = {k: Hasher.hash(v) if k == "tokenizer" else v for k, v in parts.items()}
    plain["code"] = source_digest()
    return hashlib.sha256(json.dumps(plain, sort_keys=True, default=str).encode()).hexdigest()[:32]


@contextmanager
def _quiet_datasets() -> Any:
    """Our own progress bar counts the examples; ``datasets`` would add a second one."""
    from datasets import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    was = are_progress_bars_disabled()
    disable_progress_bars()
    try:
        yield
    finally:
        if not was:
            enable_progress_bars()


def cached_table(cache_dir: Path, key: str, make: Callable[[], Iterable[tuple[str, Example, bool]]]) -> ExampleTable:
    """The table under ``key`` in ``cache_dir``: opened if it was built, else built from ``make()``.

    ``make`` yields (task, example, cut) and is called only when the table is built. The file is
    written aside and renamed when complete (``datasets``' builder), so a killed build is redone.
    """
    from datasets import Dataset
    from datasets.exceptions import DatasetGenerationError

    made = {"rows": 0, "done": False}

    def rows() -> Iterable[dict[str, Any]]:
        for task, example, cut in make():
            made["rows"] += 1
            row = _row(task, example, cut)
            yield row | {k: np.asarray(row[k], dtype=np.int32) for k in ("input_ids", "labels")}
        made["done"] = True

    try:
        with _quiet_datasets():
            # No declared features: encoding every example against them doubles the write time;
            # the int32 arrays of the rows give the id columns their type.
            dataset = Dataset.from_generator(rows, cache_dir=str(cache_dir), fingerprint=key)
    except (DatasetGenerationError, ValueError) as exc:
        if isinstance(exc.__cause__, RadLlamaError):  # our own clear error, raised inside the generator
            raise exc.__cause__ from None
        if made["done"] and not made["rows"]:  # datasets writes no empty table; the caller says why
            return ExampleTable.from_examples([])
        raise
    return ExampleTable(dataset)
