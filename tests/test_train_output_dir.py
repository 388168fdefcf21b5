"""A training run owns its output_dir: a fresh run into a used folder is refused (it would mix two
runs' logs and checkpoints), --overwrite clears it, --resume continues it, and the demo resumes an
interrupted stage rather than training again on top of it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from radllama.errors import RadLlamaError
from radllama.train.config import load_config
from radllama.train.recipes import run
from radllama.train.tiny import INVENTED_TEXT, build_tiny_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("outdir")
    rows = [
        {"id": str(i), "findings": f"{INVENTED_TEXT[i % 5]} Case {i}.", "impression": INVENTED_TEXT[(i + 1) % 5]}
        for i in range(40)
    ]
    (root / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return {"root": root, "base": build_tiny_model("llama", root / "base")}


def lora(setup: dict[str, Path], out: Path, steps: int = 2) -> list[str]:
    return [
        f"model.path={setup['base']}",
        f"data.train={setup['root'] / 'train.jsonl'}",
        f"output_dir={out}",
        f"optim.max_steps={steps}",
        "optim.batch_size=4",
        "optim.micro_batch_size=4",
        "log_every=1",
    ]


def logged_steps(out: Path) -> list[int]:
    return [json.loads(line)["step"] for line in (out / "train_log.jsonl").read_text().splitlines()]


def test_a_fresh_run_into_a_used_folder_is_refused_and_overwrite_clears_it(setup) -> None:
    out = setup["root"] / "used"
    run(load_config(None, lora(setup, out, steps=3)))
    before = sorted(p.name for p in out.iterdir())
    with pytest.raises(RadLlamaError, match=r"not empty.*--resume.*--overwrite") as err:
        run(load_config(None, lora(setup, out, steps=2)))
    assert "\n" not in str(err.value)
    assert sorted(p.name for p in out.iterdir()) == before and logged_steps(out) == [1, 2, 3]  # untouched
    with pytest.raises(RadLlamaError, match="--resume and --overwrite"):
        run(load_config(None, lora(setup, out, steps=2)), resume=True, overwrite=True)

    run(load_config(None, lora(setup, out, steps=2)), overwrite=True)
    assert logged_steps(out) == [1, 2]  # one run's log, not two
    run(load_config(None, lora(setup, out, steps=2)), resume=True)  # --resume accepts its own folder


def test_overwrite_deletes_only_a_training_output(setup) -> None:
    out = setup["root"] / "notes"
    out.mkdir()
    (out / "thesis.docx").write_text("not a training run")
    for overwrite in (False, True):
        with pytest.raises(RadLlamaError, match="output_dir"):
            run(load_config(None, lora(setup, out)), overwrite=overwrite)
    assert (out / "thesis.docx").read_text() == "not a training run"


@pytest.mark.slow
def test_demo_stage_resumes_an_interrupted_run(setup) -> None:
    from radllama.demo import CONFIG_DIR, QUICK_BASE, _train_stage
    from radllama.train.checkpoint import list_checkpoints
    from radllama.train.recipes import COMPLETE_FILE

    out = setup["root"] / "demo-base"
    overrides = [f"data.train={setup['root'] / 'train.jsonl'}", f"output_dir={out}", *QUICK_BASE]
    overrides += ["data.max_seq_len=64", "optim.max_steps=3", "checkpoint.every_steps=1", "log_every=1"]
    _train_stage("base", CONFIG_DIR / "mini-base.yaml", overrides, {})
    # Interrupted after its second checkpoint: no summary, the log one row ahead of the checkpoint.
    (out / COMPLETE_FILE).unlink()
    assert [p.name for p in list_checkpoints(out)] == ["step-000001", "step-000002"]
    _train_stage("base", CONFIG_DIR / "mini-base.yaml", overrides, {})
    assert (out / COMPLETE_FILE).is_file() and logged_steps(out) == [1, 2, 3]  # resumed at 2, not rerun


@pytest.mark.slow
def test_pretraining_resumes_with_the_tokenizer_it_trained(setup, monkeypatch) -> None:
    """radllama-mini's tokenizer is part of the run: saved in output_dir from the start, hashed into
    every checkpoint, reused on resume (retraining it could give other ids under another library
    version), and a resume refused when it changed."""
    from radllama.demo import CONFIG_DIR, QUICK_BASE
    from radllama.provenance import file_digest
    from radllama.train import recipes
    from radllama.train.checkpoint import list_checkpoints

    out = setup["root"] / "mini"
    overrides = [f"data.train={setup['root'] / 'train.jsonl'}", f"output_dir={out}", *QUICK_BASE]
    overrides += ["data.max_seq_len=64", "optim.max_steps=3", "checkpoint.every_steps=1"]
    config = CONFIG_DIR / "mini-base.yaml"
    run(load_config(config, overrides))
    state = json.loads((list_checkpoints(out)[-1] / "trainer_state.json").read_text())
    assert state["provenance"]["tokenizer sha256"] == file_digest(out / "tokenizer.json")

    def retrained(*args: object, **kwargs: object) -> None:
        raise AssertionError("resume trained the tokenizer again")

    monkeypatch.setattr(recipes, "train_tokenizer", retrained)
    (out / recipes.COMPLETE_FILE).unlink()  # interrupted after its last checkpoint
    assert run(load_config(config, overrides), resume=True)["steps"] == 3
    # Another tokenizer in the folder than the checkpoints were trained with: refused.
    (out / recipes.COMPLETE_FILE).unlink()
    tok = json.loads((out / "tokenizer.json").read_text())
    tok["added_tokens"].append({**tok["added_tokens"][-1], "id": len(tok["model"]["vocab"]), "content": "[NEW]"})
    (out / "tokenizer.json").write_text(json.dumps(tok))
    with pytest.raises(RadLlamaError, match="tokenizer sha256"):
        run(load_config(config, overrides), resume=True)
