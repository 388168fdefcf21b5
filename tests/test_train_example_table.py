"""Training examples in a memory-mapped Arrow table: the same examples as the list path, read
from a cache file, reused for the same inputs and rebuilt for changed ones, trained on as before."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from _helpers import task_list
from datasets.table import MemoryMappedTable

from radllama.errors import RadLlamaError
from radllama.models.mini import train_tokenizer
from radllama.prompts import PromptStyle
from radllama.retrieval import TfidfRetriever
from radllama.train.batch import collate, token_loss_sum
from radllama.train.config import load_config
from radllama.train.example_table import ExampleTable, cached_table
from radllama.train.examples import IGNORE_INDEX, iter_task_examples
from radllama.train.loop import step_indices
from radllama.train.recipes import prompt_style, run, sft_examples
from radllama.train.tiny import INVENTED_TEXT, build_tiny_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")
TASKS = {"impression": 1.0, "impression_abnormal": 0.5, "abnormal_list": 1.0, "presence": 1.5}
MESH = [["Cardiomegaly/mild"], ["normal"], ["Pleural Effusion/left", "Opacity/lung"], []]


def records(n: int = 24) -> list[dict]:
    """Invented reports: mixed sentences, some abnormal, one long enough to be cut."""
    out = []
    for i in range(n):
        findings = " ".join(INVENTED_TEXT[(i + j) % len(INVENTED_TEXT)] for j in range(1 + i % 3))
        findings *= 4 if i == 5 else 1
        impression = INVENTED_TEXT[(3 * i) % len(INVENTED_TEXT)]
        out.append({"id": f"r{i}", "findings": findings, "impression": impression, "mesh": MESH[i % len(MESH)]})
    return out


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer(INVENTED_TEXT * 10, vocab_size=300)


def test_table_holds_the_list_paths_examples_memory_mapped(tok, tmp_path) -> None:
    recs, style = records(), PromptStyle(instruction="Derive the impression", system=None, retrieval_k=2)
    retriever = TfidfRetriever(recs)
    listed, n_cut, counts = task_list(recs, tok, style, 256, TASKS, seed=3, retriever=retriever)
    table = cached_table(tmp_path, "k", lambda: iter_task_examples(recs, tok, style, 256, TASKS, 3, retriever))

    assert len(table) == len(listed) > len(recs)
    assert table.rows(range(len(table))) == listed  # the same token ids in the same order
    assert table.rows([7, 2]) == [listed[7], listed[2]] and table[4] == listed[4]
    assert table.lengths.tolist() == [len(e.input_ids) for e in listed]
    assert table.targets.tolist() == [sum(t != IGNORE_INDEX for t in e.labels[1:]) for e in listed]
    assert table.per_task(TASKS) == counts and table.n_cut() == n_cut > 0
    # Arrow on disk, memory-mapped: what the table itself holds is one number per example.
    assert isinstance(table.dataset.data, MemoryMappedTable)
    assert {str(table.dataset.features[c].feature.dtype) for c in ("input_ids", "labels")} == {"int32"}
    (cache_file,) = [Path(f["filename"]) for f in table.dataset.cache_files]
    assert cache_file.is_relative_to(tmp_path) and cache_file.suffix == ".arrow"
    held = vars(table).values()
    assert all(isinstance(v, np.ndarray) or isinstance(v.data, MemoryMappedTable) for v in held)
    assert not ExampleTable.from_examples(listed).is_memory_mapped()  # the in-memory kind is for small sets


def test_no_examples_and_a_clear_error_inside_the_build(tok, tmp_path) -> None:
    assert len(cached_table(tmp_path, "none", lambda: iter(()))) == 0
    style = PromptStyle()
    with pytest.raises(RadLlamaError, match="max_seq_len=8 does not hold the prompt template"):
        cached_table(tmp_path, "short", lambda: iter_task_examples(records(), tok, style, 8, {"impression": 1.0}))


def test_same_inputs_reuse_the_cache_and_changed_inputs_do_not(tok, tmp_path) -> None:
    recs = records()
    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps(r) + "\n" for r in recs))

    def examples(rows: list[dict], *overrides: str, tokenizer=tok) -> ExampleTable:
        where = [f"data.train={train}", f"output_dir={tmp_path / 'run'}", f"data.cache_dir={tmp_path / 'cache'}"]
        cfg = load_config(None, [*where, "data.max_seq_len=400", *overrides])
        return sft_examples(cfg, rows, tokenizer, prompt_style(cfg), None)

    def cache_file(table: ExampleTable) -> str:
        return table.dataset.cache_files[0]["filename"]

    first = examples(recs)
    assert first.is_memory_mapped() and len(first) == len(recs)
    # Same inputs: the table is opened, not built: no records are needed (none are given).
    again = examples([])
    assert cache_file(again) == cache_file(first) and again.rows(range(len(again))) == first.rows(range(len(first)))
    # Any input that decides the examples makes a new table.
    changed = {
        "max_seq_len": examples(recs, "data.max_seq_len=360"),
        "prompt": examples(recs, "prompt.instruction=Summarise"),
        "tasks": examples(recs, "data.tasks={impression: 1.0, abnormal_list: 1.0}"),
        "tokenizer": examples(recs, tokenizer=train_tokenizer(INVENTED_TEXT * 10, vocab_size=280)),
    }
    train.write_text("".join(json.dumps(r) + "\n" for r in recs[:-1]))
    changed["data"] = examples(recs[:-1])
    files = {name: cache_file(t) for name, t in changed.items()}
    assert len(set(files.values()) | {cache_file(first)}) == len(files) + 1, files
    assert len(changed["data"]) == len(recs) - 1


def test_training_reads_the_batches_the_list_path_gives(tmp_path) -> None:
    """The first step's loss (LoRA starts as the identity, no dropout) is the base model's loss
    on the global batch that step_indices picks from the list path's examples."""
    base = build_tiny_model("llama", tmp_path / "base")
    recs = records()
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    overrides = [f"model.path={base}", f"data.train={tmp_path / 'train.jsonl'}", f"output_dir={tmp_path / 'out'}",
                 "data.max_seq_len=448", "prompt.retrieval_k=2", "optim.max_steps=2", "optim.batch_size=4",
                 "optim.micro_batch_size=2", "lora.dropout=0", "log_every=1", "seed=5"]  # fmt: skip
    cfg = load_config(None, overrides)
    run(cfg)
    first_loss = json.loads((tmp_path / "out" / "train_log.jsonl").read_text().splitlines()[0])["loss"]

    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base)
    style = prompt_style(cfg)
    listed, _, _ = task_list(recs, tokenizer, style, 448, cfg.data.tasks, 5, TfidfRetriever(recs))
    idx = step_indices(len(listed), 4, 5, 0, np.array([len(e.input_ids) for e in listed]))
    batch = collate([listed[i] for i in idx], tokenizer.pad_token_id)
    with torch.no_grad():
        loss = token_loss_sum(AutoModelForCausalLM.from_pretrained(base), batch).item()
    n_target = int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())
    assert first_loss == pytest.approx(loss / n_target, rel=1e-5)


def test_resumed_pretraining_reuses_its_blocks(tmp_path) -> None:
    """The resumed run retrains nothing (the saved tokenizer) and opens the first run's blocks."""
    recs = records()
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    overrides = [f"data.train={tmp_path / 'train.jsonl'}", f"output_dir={tmp_path / 'base'}", "recipe=pretrain_mini",
                 "data.max_seq_len=64", "data.pretrain_order=neighbours", "mini.vocab_size=300", "mini.hidden_size=32",
                 "mini.intermediate_size=64", "mini.num_hidden_layers=1", "mini.num_attention_heads=2",
                 "mini.num_key_value_heads=2", "optim.batch_size=4", "optim.micro_batch_size=4", "optim.max_steps=4",
                 "checkpoint.every_steps=2"]  # fmt: skip
    first = run(load_config(None, overrides))
    (tmp_path / "base" / "train_summary.json").unlink()  # as if killed after its checkpoint at step 2
    resumed = run(load_config(None, overrides), resume=True)
    tables = list((tmp_path / "base" / "examples_cache" / "generator").iterdir())
    assert len(tables) == 1 and resumed["blocks"] == first["blocks"] > 4
    assert resumed["final_loss"] == pytest.approx(first["final_loss"], abs=1e-6)
