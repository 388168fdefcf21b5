"""The field's model-based metrics, for users who have the weights: BERTScore, RadGraph F1, CheXbert F1.

Each runs through its own package (``bert-score``, ``radgraph``, ``f1chexbert``) from a local
weights folder, ``DIR/<metric>/``:

- ``bertscore``: a Hugging Face encoder folder (``config.json``, weights, tokenizer), e.g. a
  local copy of ``roberta-large``; every layer is used unless ``num_layers`` is given.
- ``radgraph``, ``chexbert``: the Hugging Face hub cache those packages download into (run
  them once with network elsewhere, copy the cache folder here).

Nothing is downloaded at run time unless the user allows it (``--allow-download``): the hub
is switched off (``HF_HUB_OFFLINE=1``) while a metric loads. A missing package or weights
folder is one clear line saying what to put where, before any scoring starts.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from radllama.errors import RadLlamaError

DEFAULT_WEIGHTS = Path(os.environ.get("RADLLAMA_METRIC_WEIGHTS", "~/.cache/radllama/metric-weights")).expanduser()


@dataclass(frozen=True)
class ModelMetric:
    """A model-based metric: the package it runs through and the weights it needs."""

    name: str
    module: str  # import name
    pip: str  # what to pip install
    weights: str  # what to put in DIR/<name>/


METRICS: dict[str, ModelMetric] = {
    m.name: m
    for m in (
        ModelMetric("bertscore", "bert_score", "bert-score", "a Hugging Face encoder folder (e.g. roberta-large)"),
        ModelMetric("radgraph", "radgraph", "radgraph", "the Hugging Face cache the radgraph package downloads into"),
        ModelMetric("chexbert", "f1chexbert", "f1chexbert", "the Hugging Face cache holding CheXbert's chexbert.pth"),
    )
}


def parse_metrics(text: str | None) -> list[str]:
    """``"bertscore,radgraph"`` -> names; an unknown name is a clear error."""
    names = [t.strip().lower() for t in (text or "").split(",") if t.strip()]
    unknown = [n for n in names if n not in METRICS]
    if unknown:
        raise RadLlamaError(f"--metrics: unknown {', '.join(unknown)}; choose from {', '.join(METRICS)}")
    return list(dict.fromkeys(names))


def check_available(names: Sequence[str], weights_dir: Path, allow_download: bool = False) -> None:
    """Fail before scoring, in one line, when a package or a weights folder is missing."""
    for name in names:
        metric = METRICS[name]
        if importlib.util.find_spec(metric.module) is None:
            raise RadLlamaError(f"--metrics {name}: needs the {metric.pip} package (pip install {metric.pip})")
        folder = Path(weights_dir) / name
        if not allow_download and not (folder.is_dir() and any(folder.iterdir())):
            raise RadLlamaError(
                f"--metrics {name}: no weights in {folder}; put {metric.weights} there "
                f"(or pass --allow-download to let {metric.pip} fetch them)"
            )


@contextlib.contextmanager
def _hub(cache: Path | None, allow_download: bool) -> Iterator[None]:
    """Point the Hugging Face hub at ``cache`` and keep it offline unless downloads are allowed."""
    keys = ("HF_HUB_OFFLINE", "HF_HUB_CACHE")
    saved = {k: os.environ.get(k) for k in keys}
    try:
        if not allow_download:
            os.environ["HF_HUB_OFFLINE"] = "1"
        if cache is not None:
            os.environ["HF_HUB_CACHE"] = str(cache)
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def bertscore(
    predictions: Sequence[str], references: Sequence[str], model_dir: Path | None, num_layers: int | None = None
) -> list[float]:
    """Per-case BERTScore F1 with the encoder in ``model_dir`` (all its layers by default).

    ``model_dir=None``: bert-score's own English default (roberta-large, layer 17), which it
    downloads; only reached with ``--allow-download``.
    """
    from bert_score import score

    model = {"lang": "en"}
    if model_dir is not None:
        if num_layers is None:
            config = json.loads((Path(model_dir) / "config.json").read_text(encoding="utf-8"))
            num_layers = int(config.get("num_hidden_layers") or config.get("n_layers"))
        model = {"model_type": str(model_dir), "num_layers": num_layers}
    # An empty prediction has no tokens to match: BERTScore would warn and score it 0 anyway.
    keep = [i for i, p in enumerate(predictions) if p.strip()]
    out = [0.0] * len(predictions)
    if keep:
        _, _, f1 = score(
            [predictions[i] for i in keep],
            [references[i] for i in keep],
            **model,
            device="cpu" if not _cuda() else None,
        )
        for i, v in zip(keep, f1.tolist(), strict=True):
            out[i] = float(v)
    return out


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def radgraph_f1(predictions: Sequence[str], references: Sequence[str]) -> list[float]:
    """Per-case RadGraph F1 (reward level 'partial') through the radgraph package."""
    from radgraph import F1RadGraph

    scorer = F1RadGraph(reward_level="partial")
    _, rewards, _, _ = scorer(hyps=list(predictions), refs=list(references))
    # Versions differ: a float per case, or (precision, recall, f1) per case.
    return [float(r[-1] if isinstance(r, list | tuple) else r) for r in rewards]


def chexbert_f1(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Corpus micro-F1 over the 5 competition observations, from the f1chexbert package."""
    from f1chexbert import F1CheXbert

    _, _, _, report5 = F1CheXbert()(hyps=list(predictions), refs=list(references))
    return float(report5["micro avg"]["f1-score"])


def score_cases(
    name: str, predictions: Sequence[str], references: Sequence[str], weights_dir: Path, allow_download: bool = False
) -> list[float] | float:
    """One metric over the cases: per-case values (bertscore, radgraph) or a corpus figure (chexbert)."""
    folder = Path(weights_dir) / name
    if name == "bertscore":
        local = folder if (folder / "config.json").is_file() else None
        if local is None and not allow_download:
            raise RadLlamaError(f"--metrics bertscore: {folder} has no config.json; put {METRICS[name].weights} there")
        with _hub(None, allow_download):
            return bertscore(predictions, references, local)
    with _hub(folder, allow_download):
        if name == "radgraph":
            return radgraph_f1(predictions, references)
        return chexbert_f1(predictions, references)
