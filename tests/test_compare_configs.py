import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from radllama.cli import app
from radllama.evaluate.compare import load_config
from radllama.evaluate.paper_reported import PAPER_MODELS

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", ["openi-mini.yaml", "paper-table2.yaml"])
def test_configs_are_valid_and_start_with_their_command(name: str) -> None:
    path = ROOT / "configs" / "compare" / name
    assert path.read_text().startswith(f"# radllama compare --config configs/compare/{name}")
    load_config(path)


def test_paper_config_lists_every_paper_model_and_none_runs_without_weights(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for env in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY"):
        monkeypatch.delenv(env, raising=False)
    cfg = yaml.safe_load((ROOT / "configs" / "compare" / "paper-table2.yaml").read_text())
    assert set(PAPER_MODELS) <= {s["name"] for s in cfg["systems"]}
    rows = [
        {"id": "a", "findings": "Heart is enlarged.", "impression": "Cardiomegaly.", "seen_findings": False},
        {"id": "b", "findings": "Lungs clear.", "impression": "Normal chest.", "seen_findings": True},
    ]
    for split in ("train", "test"):  # the same texts under other ids: compare refuses an id in both
        split_rows = [{**r, "id": f"{split}-{r['id']}"} for r in rows]
        (tmp_path / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in split_rows))
    cfg["split"] = {"test": str(tmp_path / "test.jsonl"), "train": str(tmp_path / "train.jsonl")}
    monkeypatch.chdir(tmp_path)  # model paths (models/...) are relative and absent here
    config = tmp_path / "paper.yaml"
    config.write_text(yaml.safe_dump(cfg))
    result = CliRunner().invoke(app, ["compare", "--config", str(config), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    for model in PAPER_MODELS:
        assert "not_run" in metrics["systems"][model], model
    assert metrics["systems"]["most-frequent"]["all"]["n"] == 2
    board = (tmp_path / "out" / "leaderboard.md").read_text()
    assert "| GPT-4 | – | not run: API key variable OPENAI_API_KEY is not set |" in board
    paper = (tmp_path / "out" / "paper_table.md").read_text()
    assert "Reported by the paper, not measured here" in paper
    # Every Table 2 row of the paper, as printed, in its own "not measured here" table.
    reported = paper.split("Reported by the paper, not measured here", 1)[1]
    assert "| Radiology-Llama2 | 0.4185 | 0.2569 | 0.4087 |" in reported
    assert "| GPT-4 | 0.1171 | 0.0343 | 0.0975 |" in reported and "not found" not in reported
