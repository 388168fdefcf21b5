"""Validation during training (data.validation + eval.*): loss rows at the configured steps,
greedy ROUGE-1, the best checkpoint, early stopping with patience, the training curve, the
one-line summary, and exact resume with evaluation on. Tiny random models (2 layers, 64 wide)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from test_train_cli import FINDINGS, IMPRESSIONS  # the same tiny reports
from test_train_resume import kill_at_first_checkpoint

from radllama.errors import RadLlamaError
from radllama.train.config import EvalArgs, load_config
from radllama.train.curves import CURVE_FILE
from radllama.train.evaluation import BestTracker, due
from radllama.train.recipes import run
from radllama.train.tiny import build_tiny_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _rows(n: int, prefix: str) -> str:
    rows = [{"id": f"{prefix}{i}", "findings": FINDINGS[i % 4], "impression": IMPRESSIONS[i % 4]} for i in range(n)]
    return "".join(json.dumps(r) + "\n" for r in rows)


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("validation")
    base = build_tiny_model("llama", root / "base", texts=FINDINGS + IMPRESSIONS)
    (root / "train.jsonl").write_text(_rows(12, "t"))
    (root / "validation.jsonl").write_text(_rows(6, "v"))
    return {"root": root, "base": base}


def lora(setup: dict[str, Path], out: Path, steps: int = 8, *extra: str) -> list[str]:
    return [
        f"model.path={setup['base']}",
        f"data.train={setup['root'] / 'train.jsonl'}",
        f"data.validation={setup['root'] / 'validation.jsonl'}",
        f"output_dir={out}",
        f"optim.max_steps={steps}",
        "optim.batch_size=4",
        "optim.micro_batch_size=2",
        "optim.lr=1e-2",
        "log_every=1",
        "eval.every_steps=2",
        "eval.rouge_samples=3",
        "eval.rouge_every_steps=4",
        "eval.max_new_tokens=6",
        *extra,
    ]


def log_rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]


def eval_rows(out: Path) -> list[dict]:
    return [r for r in log_rows(out) if "val_loss" in r]


# --- the rules, as pure functions ---------------------------------------------------------------


def test_evaluation_schedule() -> None:
    settings = EvalArgs(every_steps=2, rouge_samples=4, rouge_every_steps=0)
    got = {s: due(s, 11, 5, settings) for s in range(1, 12)}
    assert [s for s, (loss, _) in got.items() if loss] == [2, 4, 5, 6, 8, 10, 11]  # every 2, epoch ends, the end
    assert [s for s, (_, rouge) in got.items() if rouge] == [5, 10, 11]  # once an epoch, and at the end
    off = EvalArgs(every_steps=0, rouge_samples=0)
    assert [s for s in range(1, 12) if any(due(s, 11, 5, off))] == [5, 10, 11]
    assert not any(due(s, 11, 5, off)[1] for s in range(1, 12))


def test_best_tracker_patience_direction_and_missing_metric() -> None:
    loss = BestTracker("val_loss", patience=2)
    stops = []
    for step, value in zip(range(1, 7), [3.0, 2.0, 2.5, 2.4, 2.6, 1.0], strict=True):
        loss.update({"step": step, "val_loss": value})
        stops.append(loss.should_stop)
    assert (loss.best_step, loss.best) == (6, 1.0)  # the tracker keeps going; the loop stops at the first True
    assert stops == [False, False, False, True, True, False]
    rouge = BestTracker("val_rouge1", patience=1, min_delta=0.05)
    assert rouge.update({"step": 1, "val_rouge1": 0.30})
    assert not rouge.update({"step": 2, "val_loss": 9.0})  # no ROUGE in this row: neither better nor worse
    assert not rouge.should_stop
    assert not rouge.update({"step": 3, "val_rouge1": 0.34})  # higher, but not by more than min_delta
    assert rouge.should_stop and rouge.best_step == 1
    nan = BestTracker("val_loss")
    assert not nan.update({"step": 1, "val_loss": math.nan}) and nan.best_step is None
    assert BestTracker.from_state(rouge.state()) == rouge  # saved in checkpoints as plain JSON
    json.dumps(rouge.state())


def test_eval_and_autocast_keys_are_checked() -> None:
    with pytest.raises(RadLlamaError, match="optim.autocast must be off or bf16 or auto"):
        load_config(None, ["optim.autocast=fp16"])
    assert load_config(None, ["optim.autocast=auto"]).optim.autocast == "auto"
    assert load_config(None, ["optim.autocast=off"]).optim.autocast == "off"  # not YAML's false
    assert load_config(None, ["optim.autocast=bf16"]).optim.autocast == "bf16"
    with pytest.raises(RadLlamaError, match="eval.metric"):
        load_config(None, ["eval.metric=rouge2"])
    with pytest.raises(RadLlamaError, match="needs data.validation"):
        load_config(None, ["eval.patience=3"])
    with pytest.raises(RadLlamaError, match="needs eval.rouge_samples"):
        load_config(None, ["eval.metric=val_rouge1", "eval.rouge_samples=0"])


# --- bf16 autocast ------------------------------------------------------------------------------


def test_autocast_computes_in_bf16_and_keeps_fp32_master_weights(setup) -> None:
    from transformers import AutoModelForCausalLM

    from radllama.train.batch import token_loss_sum
    from radllama.train.loop import autocast_context

    model = AutoModelForCausalLM.from_pretrained(setup["base"])
    seen: list[torch.dtype] = []
    model.model.layers[0].self_attn.q_proj.register_forward_hook(lambda m, i, out: seen.append(out.dtype))
    ids = torch.randint(3, 100, (2, 12))
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids}
    with autocast_context("off", torch.device("cpu")):
        plain = token_loss_sum(model, batch)
    with autocast_context("bf16", torch.device("cpu")):
        mixed = token_loss_sum(model, batch)
    mixed.backward()
    assert seen == [torch.float32, torch.bfloat16]
    assert mixed.dtype == torch.float32  # the loss is taken from fp32 logits
    assert 0 < abs(mixed.item() - plain.item()) < 0.05 * plain.item()  # bf16 rounding, not another model
    assert all(p.dtype == torch.float32 and p.grad.dtype == torch.float32 for p in model.parameters())


def test_base_mix_takes_its_share_of_the_loss_against_the_base_models_own_prediction(setup) -> None:
    import torch.nn.functional as F
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from radllama.train.batch import token_loss_sum

    base = AutoModelForCausalLM.from_pretrained(setup["base"])
    ids = torch.randint(3, 100, (2, 12))
    labels = ids.clone()
    labels[:, :5] = -100  # the prompt carries no loss
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}
    with torch.no_grad():
        base_logits = base(input_ids=ids).logits[:, 4:-1].float()
    tuned = get_peft_model(AutoModelForCausalLM.from_pretrained(setup["base"]), LoraConfig(r=4, lora_alpha=8))
    with torch.no_grad():  # move the adapter off zero: the tuned model now differs from its base
        for name, param in tuned.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5)
        tuned_logits = tuned(input_ids=ids).logits[:, 4:-1].float()
    assert (tuned_logits - base_logits).abs().max() > 1e-3
    reference = F.cross_entropy(
        tuned_logits.reshape(-1, tuned_logits.size(-1)), ids[:, 5:].reshape(-1), reduction="sum"
    )
    soft = -(F.softmax(base_logits, -1) * F.log_softmax(tuned_logits, -1)).sum()
    assert token_loss_sum(tuned, batch).item() == pytest.approx(reference.item(), rel=1e-5)
    mixed = token_loss_sum(tuned, batch, base_mix=0.25)
    assert mixed.item() == pytest.approx(0.75 * reference.item() + 0.25 * soft.item(), rel=1e-5)
    mixed.backward()  # the gradient reaches the adapter, not the frozen base
    assert all(p.grad is not None for n, p in tuned.named_parameters() if "lora_" in n)
    with pytest.raises(RadLlamaError, match="needs a LoRA model"):
        token_loss_sum(base, batch, base_mix=0.25)


def _two_runs(setup: dict[str, Path], first: str, second: str, steps: int, change: str) -> tuple:
    """A LoRA run as it is and one with ``change``: both summaries, the second's adapter and the largest
    difference between the two adapters."""
    root = setup["root"]
    a_sum = run(load_config(None, lora(setup, root / first, steps, "data.validation=null")))
    b_sum = run(load_config(None, lora(setup, root / second, steps, "data.validation=null", change)))
    a = load_file(root / first / "adapter_model.safetensors")
    b = load_file(root / second / "adapter_model.safetensors")
    return a_sum, b_sum, b, max((a[k] - b[k]).abs().max().item() for k in a)


def test_base_mix_trains_another_adapter_and_is_checked_before_the_first_step(setup) -> None:
    root = setup["root"]
    plain, mixed, _, worst = _two_runs(setup, "mix0", "mix5", 2, "optim.base_mix=0.5")
    assert worst > 0
    assert plain["final_loss"] != mixed["final_loss"]
    with pytest.raises(RadLlamaError, match=r"base_mix must be in \[0, 1\)"):
        run(load_config(None, lora(setup, root / "mix10", 2, "data.validation=null", "optim.base_mix=1.0")))


def test_autocast_auto_runs_bf16_only_where_the_cpu_multiplies_it_natively(setup) -> None:
    import warnings

    from radllama.train.loop import autocast_context, native_bf16

    cpu = torch.device("cpu")
    native = native_bf16(cpu)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        explicit = autocast_context("bf16", cpu)
    # An explicit bf16 on a CPU without AVX-512 BF16 or AMX runs, and says it is the slow path.
    assert isinstance(explicit, torch.autocast)
    assert any("without native bfloat16" in str(w.message) for w in caught) == (not native)
    assert isinstance(autocast_context("auto", cpu), torch.autocast) == native
    root = setup["root"]
    summary = run(load_config(None, lora(setup, root / "auto", 2, "data.validation=null", "optim.autocast=auto")))
    assert summary["autocast"] == ("bf16" if native else "off")  # as it ran, recorded with the run
    written = json.loads((root / "auto" / "train_summary.json").read_text())
    assert written["autocast"] == summary["autocast"]


@pytest.mark.slow
def test_autocast_run_trains_fp32_weights_close_to_fp32_run(setup) -> None:
    fp32, bf16, b, worst = _two_runs(setup, "fp32", "bf16", 4, "optim.autocast=bf16")
    assert {t.dtype for t in b.values()} == {torch.float32}
    assert worst > 0  # autocast was on in the loop
    assert bf16["final_loss"] == pytest.approx(fp32["final_loss"], rel=0.05)


# --- the loop with validation -------------------------------------------------------------------


@pytest.mark.slow
def test_validation_rows_best_checkpoint_curve_and_summary_line(setup, capsys) -> None:
    out = setup["root"] / "eval"
    # Full fine-tuning at a constant, far too high lr: the validation loss jumps about, so the
    # best step is not the last one (checked below), and best/ must hold that earlier step.
    summary = run(load_config(None, lora(setup, out, 6, *UNSTABLE)))
    rows = eval_rows(out)
    assert [r["step"] for r in rows] == [2, 4, 6]
    assert [r["step"] for r in rows if "val_rouge1" in r] == [4, 6]
    assert all(r["rouge_samples"] == 3 for r in rows if "val_rouge1" in r)
    assert all(0 <= r["val_rouge1"] <= 1 and r["val_loss"] > 0 for r in rows if "val_rouge1" in r)
    # best/ holds the step with the lowest validation loss, and its weights give that loss again.
    best_step = min(rows, key=lambda r: r["val_loss"])["step"]
    assert best_step != 6, "the run no longer has a best step before its last: make it less stable"
    record = json.loads((out / "best" / "best.json").read_text())
    assert record["step"] == best_step == summary["validation"]["best_step"]
    assert [r["step"] for r in rows if r["best"]][-1] == best_step
    assert _validation_loss(setup, out / "best") == pytest.approx(record["val_loss"], rel=1e-5)
    assert _validation_loss(setup, out) == pytest.approx(rows[-1]["val_loss"], rel=1e-5)  # the final weights
    png = (out / CURVE_FILE).read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    saved = json.loads((out / "train_summary.json").read_text())
    assert saved["validation"]["final"]["val_rouge1"] == rows[-1]["val_rouge1"]
    err = capsys.readouterr().err
    best = next(r for r in rows if r["step"] == best_step)
    assert f"best step {best_step} by val_loss: validation loss {best['val_loss']:.4f}" in err
    assert f"ROUGE-1 {rows[-1]['val_rouge1']:.4f} (n=3)" in err


def _validation_loss(setup: dict[str, Path], model: Path) -> float:
    """The validation loss of saved (fully fine-tuned) weights, computed outside the loop."""
    from radllama.models.loading import load_for_inference
    from radllama.retrieval import retrieved_impressions
    from radllama.train.batch import collate, token_loss_sum
    from radllama.train.examples import encode_sft

    loaded = load_for_inference(model, device="cpu")
    records = [json.loads(line) for line in (setup["root"] / "validation.jsonl").read_text().splitlines()]
    shown = retrieved_impressions(loaded.retriever, [r["findings"] for r in records], loaded.style.retrieval_k)
    examples = [
        encode_sft(loaded.tokenizer, loaded.style, r["findings"], r["impression"], ex, 512)[0]
        for r, ex in zip(records, shown, strict=True)
    ]
    batch = collate(examples, loaded.tokenizer.pad_token_id)
    with torch.no_grad():
        total = token_loss_sum(loaded.model.eval(), batch).item()
    return total / int((batch["labels"][:, 1:] != -100).sum())


def test_rouge_answers_are_those_of_radllama_generate(setup) -> None:
    from radllama.generate.impressions import generate_impressions
    from radllama.models.loading import load_for_inference
    from radllama.train.evaluation import Validation, impression_answerer, rouge1_sum

    expected = generate_impressions(str(setup["base"]), None, FINDINGS, max_new_tokens=6)
    loaded = load_for_inference(setup["base"], device="cpu")
    answer = impression_answerer(loaded.tokenizer, loaded.style, None, 6)
    assert answer(loaded.model.eval(), FINDINGS) == expected and any(expected)
    # Scored against themselves they are perfect; split over two "ranks" the sums add up.
    validation = Validation([], FINDINGS, expected, answer, EvalArgs())
    shares = [rouge1_sum(validation, loaded.model, rank, 2) for rank in (0, 1)]
    assert [n for _, n in shares] == [2, 2] and sum(total for total, _ in shares) == pytest.approx(4.0)


@pytest.mark.slow
def test_evaluating_leaves_training_unchanged(setup) -> None:
    root = setup["root"]
    # Dropout 0.3: evaluation left in eval mode, or drawing random numbers, would change the weights.
    quiet = run(load_config(None, lora(setup, root / "quiet", 6, "lora.dropout=0.3", "data.validation=null")))
    measured = run(load_config(None, lora(setup, root / "measured", 6, "lora.dropout=0.3")))
    a = load_file(root / "quiet" / "adapter_model.safetensors")
    b = load_file(root / "measured" / "adapter_model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert measured["final_loss"] == quiet["final_loss"] and quiet["validation"] is None


@pytest.mark.slow
def test_early_stopping_on_rouge_in_pretraining(setup) -> None:
    root = setup["root"]
    config = root / "base.yaml"
    config.write_text(
        "recipe: pretrain_mini\ndata: {max_seq_len: 32, pretrain_sections: [findings, impression]}\n"
        "mini: {vocab_size: 400, hidden_size: 64, intermediate_size: 128, num_hidden_layers: 2, "
        "num_attention_heads: 2, num_key_value_heads: 2}\n"
    )
    out = root / "early"
    # lr 0: the metric never improves after its first value, so patience alone decides the stop.
    args = [
        f"data.train={root / 'train.jsonl'}",
        f"data.validation={root / 'validation.jsonl'}",
        f"output_dir={out}",
        "optim.lr=0",
        "optim.max_steps=20",
        "optim.batch_size=2",
        "optim.micro_batch_size=2",
        "eval.every_steps=1",
        "eval.rouge_every_steps=2",
        "eval.rouge_samples=2",
        "eval.max_new_tokens=4",
        "eval.metric=val_rouge1",
        "eval.patience=2",
    ]
    summary = run(load_config(config, args))
    rows = eval_rows(out)
    # ROUGE at 2 (best), 4 and 6 (no better): stop at 6; the loss-only rows do not count.
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert [r["step"] for r in rows if "val_rouge1" in r] == [2, 4, 6]
    assert (summary["steps"], summary["planned_steps"]) == (6, 20)
    assert summary["validation"]["stopped_early"] and summary["validation"]["best_step"] == 2
    assert json.loads((out / "best" / "best.json").read_text())["step"] == 2
    assert (out / "best" / "model.safetensors").is_file() and (out / "model.safetensors").is_file()
    assert max(r["step"] for r in log_rows(out)) == 6


UNSTABLE = ["lora.enabled=false", "optim.lr=0.2", "optim.min_lr_ratio=1", "optim.warmup_ratio=0"]
RESUME_CASES = {
    # LoRA with dropout: evaluation between steps must not disturb the restored RNG stream.
    "lora-dropout": (["checkpoint.every_steps=4", "eval.patience=50"], "adapter_model.safetensors", 12, 12),
    # Best at step 2 (before the kill), worse at 4 and 6: only a restored record stops at 6 with best 2.
    "early-stop": ([*UNSTABLE, "checkpoint.every_steps=2", "eval.patience=2"], "model.safetensors", 6, 2),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", RESUME_CASES)
def test_sigkill_then_resume_with_evaluation_matches_uninterrupted(setup, case) -> None:
    extra, weights, steps_done, best_step = RESUME_CASES[case]
    root, steps = setup["root"], 12
    args = ["checkpoint.keep_last=3", *extra]
    killed, straight = root / f"killed-{case}", root / f"straight-{case}"
    config = root / "lora.yaml"
    config.write_text("recipe: lora_sft\n")
    at_kill = kill_at_first_checkpoint(config, lora(setup, killed, steps, *args), killed, timeout_s=180)
    assert 0 < at_kill < steps_done

    resumed = run(load_config(config, lora(setup, killed, steps, *args)), resume=True)
    reference = run(load_config(config, lora(setup, straight, steps, *args)))
    assert resumed["steps"] == reference["steps"] == steps_done
    a, b = load_file(killed / weights), load_file(straight / weights)
    assert max((a[k] - b[k]).abs().max().item() for k in a) <= 1e-6
    got, want = resumed["validation"], reference["validation"]
    assert got["best_step"] == want["best_step"] == best_step
    assert (got["evaluations"], got["stopped_early"]) == (want["evaluations"], want["stopped_early"])
    assert got["stopped_early"] == (steps_done < steps)
    assert got["best"]["val_loss"] == pytest.approx(want["best"]["val_loss"], rel=1e-6)
    mine, theirs = eval_rows(killed), eval_rows(straight)
    assert [r["step"] for r in mine] == [r["step"] for r in theirs]  # redone rows not duplicated
    assert np.allclose([r["val_loss"] for r in mine], [r["val_loss"] for r in theirs], rtol=1e-6)
    assert json.loads((killed / "best" / "best.json").read_text())["step"] == best_step


@pytest.mark.slow
def test_resume_refuses_other_validation_data_or_eval_settings(setup) -> None:
    root = setup["root"]
    out = root / "refuse"
    args = ["checkpoint.every_steps=4"]
    run(load_config(None, lora(setup, out, 6, *args)))
    edited = root / "validation-edited.jsonl"
    edited.write_text((root / "validation.jsonl").read_text().replace("Pneumonia.", "Pneumonia, right."))
    changes = {
        f"data.validation={edited}": r"data\.validation sha256 differs",
        "eval.patience=3": r"eval\.patience: 0 in the checkpoint, 3 now",
        "optim.autocast=bf16": r"optim\.autocast: 'off' in the checkpoint, 'bf16' now",
    }
    for change, message in changes.items():
        with pytest.raises(RadLlamaError, match=f"written by a different run.*{message}"):
            run(load_config(None, [*lora(setup, out, 6, *args), change]), resume=True)


def test_best_swap_cut_off_between_its_renames_keeps_the_earlier_best(tmp_path, monkeypatch) -> None:
    """A kill between ``best/ -> best.old/`` and ``best.tmp/ -> best/`` leaves best.old the only whole
    copy: the next save must put it back, not delete it, even if that save is cut off too."""
    from radllama.train.evaluation import BEST_DIR, BEST_FILE, write_best

    def save(folder: Path, state_dict: dict | None) -> None:
        (folder / "weights.bin").write_text("w")

    def best_step() -> int:
        return json.loads((tmp_path / BEST_DIR / BEST_FILE).read_text())["step"]

    write_best(tmp_path, save, None, {"step": 1})
    real_rename = Path.rename

    def killed(self: Path, target: Path) -> Path:
        if self.name == f"{BEST_DIR}.tmp":
            raise KeyboardInterrupt  # the process dies here
        return real_rename(self, target)

    monkeypatch.setattr(Path, "rename", killed)
    with pytest.raises(KeyboardInterrupt):
        write_best(tmp_path, save, None, {"step": 2})
    monkeypatch.setattr(Path, "rename", real_rename)
    assert not (tmp_path / BEST_DIR).exists() and (tmp_path / f"{BEST_DIR}.old").is_dir()

    def dies_while_saving(folder: Path, state_dict: dict | None) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):  # the next run's first save is cut off as well
        write_best(tmp_path, dies_while_saving, None, {"step": 3})
    assert best_step() == 1
    write_best(tmp_path, save, None, {"step": 4})
    assert best_step() == 4 and sorted(p.name for p in tmp_path.iterdir()) == [BEST_DIR]
