"""`radllama eval --metrics ...`: the clear-error paths, and BERTScore wired to a tiny local encoder."""

import importlib.util
import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from radllama.cli import app
from radllama.errors import RadLlamaError
from radllama.evaluate.model_metrics import check_available, parse_metrics

SPLIT = [
    {"id": "a", "findings": "f", "impression": "mild cardiomegaly .", "seen_findings": False},
    {"id": "b", "findings": "f", "impression": "small left pleural effusion .", "seen_findings": True},
    {"id": "c", "findings": "f", "impression": "no acute cardiopulmonary abnormality .", "seen_findings": False},
]
WORDS = "no acute cardiopulmonary abnormality mild cardiomegaly small left pleural effusion right . ,".split()


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _tiny_encoder(folder: Path) -> Path:
    """A 2-layer, 64-wide random BERT with a word-level vocabulary, saved like any HF folder."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizer

    folder.mkdir(parents=True)
    (folder / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]) + "\n")
    BertTokenizer(str(folder / "vocab.txt"), model_max_length=128).save_pretrained(folder)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(WORDS) + 5, hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128
    )
    BertModel(config).save_pretrained(folder)
    return folder


def test_unknown_metric_and_missing_weights_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(RadLlamaError, match="unknown bleurt; choose from bertscore, radgraph, chexbert"):
        parse_metrics("bertscore,bleurt")
    assert parse_metrics(" BERTScore, bertscore ") == ["bertscore"]
    with pytest.raises(RadLlamaError, match=r"no weights in .*bertscore; put a Hugging Face encoder folder"):
        check_available(["bertscore"], tmp_path / "none")
    # radgraph: its package is not a dependency; with it installed the weights are what is missing.
    for name, package in (("radgraph", "radgraph"), ("chexbert", "f1chexbert")):
        message = f"needs the {package} package" if importlib.util.find_spec(package) is None else "no weights in"
        with pytest.raises(RadLlamaError, match=message):
            check_available([name], tmp_path / "none")


def test_eval_cli_missing_weights_fails_before_scoring(tmp_path: Path) -> None:
    split = _write(tmp_path / "test.jsonl", SPLIT)
    preds = _write(tmp_path / "p.jsonl", [{"id": r["id"], "system": "s", "prediction": "x"} for r in SPLIT])
    out = tmp_path / "eval"
    args = ["eval", "-p", str(preds), "--split", str(split), "--out", str(out), "--metrics", "bertscore"]
    result = CliRunner().invoke(app, [*args, "--metric-weights", str(tmp_path / "weights")])
    assert isinstance(result.exception, RadLlamaError)
    assert "put a Hugging Face encoder folder (e.g. roberta-large) there" in str(result.exception)
    assert "\n" not in str(result.exception) and not out.exists()


def test_bertscore_through_the_cli_with_a_local_encoder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("bert_score")  # in the test extras
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    weights = tmp_path / "weights"
    _tiny_encoder(weights / "bertscore")
    split = _write(tmp_path / "test.jsonl", SPLIT)
    copy = _write(
        tmp_path / "copy.jsonl", [{"id": r["id"], "system": "copy", "prediction": r["impression"]} for r in SPLIT]
    )
    other = [{"id": "a", "system": "other", "prediction": "small left pleural effusion ."}]
    other += [{"id": "b", "system": "other", "prediction": ""}]  # empty: scores 0, no crash
    other = _write(tmp_path / "other.jsonl", other)  # c missing: scored as empty
    out = tmp_path / "eval"
    args = ["eval", "-p", str(copy), str(other), "--split", str(split), "--out", str(out)]
    result = CliRunner().invoke(app, [*args, "--metrics", "bertscore", "--metric-weights", str(weights)])
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["systems"]["copy"]["all"]["bertscore"]["mean"] == pytest.approx(1.0, abs=1e-4)
    other_score = metrics["systems"]["other"]["all"]["bertscore"]["mean"]
    assert 0.0 < other_score < 1 / 3  # one imperfect answer, two empty ones at 0
    assert "HF_HUB_OFFLINE" not in os.environ  # switched off only while the metric loaded
    assert "### Model-based metrics" in (out / "leaderboard.md").read_text()
