"""Issue #13, second round: can the tuned model add what the retrieval consensus lacks? VALIDATION only.

    python bench/sweep_model_votes.py [--model runs/demo/mini/base] [--adapter runs/demo/mini/lora]
        [--data runs/demo/data] [--work /tmp/sweep_model_votes] [--no-write]

Four ideas the first sweeps (sweep_decoding.py, sweep_mini_recipe.py) left untried:
  dense: neighbours from the base model's own hidden states (alone, and mixed with TF-IDF), for
         the consensus and for the tuned model's prompt;
  voter: a LoRA trained without retrieved impressions in its prompt, whose answer does not echo
         the neighbours, as an independent MBR vote;
  order: the prompt's neighbours shown most-central first (the consensus first), trained and decoded so;
  average: the mean of the last LoRA checkpoints (A and B averaged separately, one trajectory).
Three of them train a LoRA from ``--model`` with the shipped recipe (mini-lora.yaml) plus one change.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import publish, rouge_cells, timed  # noqa: E402
from sweep_decoding import agree, pick  # noqa: E402

import radllama.generate.impressions as impressions_module  # noqa: E402
import radllama.train.examples as examples_module  # noqa: E402
import radllama.train.recipes as recipes_module  # noqa: E402
from radllama.data.records import text_key  # noqa: E402
from radllama.demo import CONFIG_DIR  # noqa: E402
from radllama.generate.impressions import complete_impressions, encode_prompts  # noqa: E402
from radllama.generate.mbr import MbrSettings, consensus  # noqa: E402
from radllama.inference import Decoding, load_model  # noqa: E402
from radllama.io import read_jsonl  # noqa: E402
from radllama.retrieval import TfidfRetriever  # noqa: E402
from radllama.rouge import rouge_many  # noqa: E402
from radllama.train.config import load_config  # noqa: E402

TITLE = "Issue #13: what the tuned model adds to retrieval, second round (sweep_model_votes.py)"


def train_lora(base: Path, data: Path, out: Path, overrides: Sequence[str]) -> float:
    """The shipped LoRA recipe from ``base`` with ``overrides``; returns its seconds."""
    shutil.rmtree(out, ignore_errors=True)
    fixed = [f"data.train={data}/train.jsonl", f"model.path={base}", f"output_dir={out}", "eval.rouge_samples=0"]
    cfg = load_config(CONFIG_DIR / "mini-lora.yaml", [*fixed, *overrides])
    started = time.perf_counter()
    recipes_module.run(cfg)
    return time.perf_counter() - started


@contextmanager
def central_first() -> Iterator[None]:
    """Experiment only: every retrieved list is reordered most-central first (its consensus first),
    in training prompts, validation prompts and generation alike (the three modules that import it)."""
    original = examples_module.retrieved_impressions

    def reordered(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        out = []
        for row in original(*args, **kwargs):
            if row and len(row) > 1:
                score = [centrality(row, i) for i in range(len(row))]
                row = [row[i] for i in sorted(range(len(row)), key=lambda i: (-score[i], i))]
            out.append(row)
        return out

    modules = (examples_module, recipes_module, impressions_module)
    for m in modules:
        m.retrieved_impressions = reordered
    try:
        yield
    finally:
        for m in modules:
            m.retrieved_impressions = original


def centrality(row: Sequence[str], i: int) -> float:
    """Summed utility of ``row[i]`` against the others (what :func:`consensus` maximises)."""
    return sum(agree(row[i], row[j]) for j in range(len(row)) if j != i)


def mean_states(model_dir: Path, texts: Sequence[str], layers: Sequence[int]) -> dict[int, np.ndarray]:
    """Per layer, the unit-length mean of its hidden states over each text's tokens (the base model,
    no adapter), all layers from one forward pass."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    tok.pad_token = tok.pad_token or tok.eos_token
    # Right padding: a causal model's states of the real tokens then do not depend on how long the
    # batch's other texts are (left padding would shift their positions).
    tok.padding_side = "right"
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    rows: dict[int, list] = {layer: [] for layer in layers}
    with torch.no_grad():
        for start in range(0, len(texts), 64):
            batch = tok(list(texts[start : start + 64]), return_tensors="pt", padding=True, truncation=True,
                        max_length=256)  # fmt: skip
            states = model(**batch, output_hidden_states=True).hidden_states
            mask = batch["attention_mask"].unsqueeze(-1).float()
            for layer in layers:
                rows[layer].append((states[layer] * mask).sum(1) / mask.sum(1))
    return {layer: torch.nn.functional.normalize(torch.cat(r), dim=-1).numpy() for layer, r in rows.items()}


def zscore(sims: np.ndarray) -> np.ndarray:
    """Each query's similarities standardised, so TF-IDF and dense scores can be mixed."""
    return (sims - sims.mean(1, keepdims=True)) / (sims.std(1, keepdims=True) + 1e-9)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=Path("runs/demo/mini/base"))
    ap.add_argument("--adapter", type=Path, default=Path("runs/demo/mini/lora"))
    ap.add_argument("--data", type=Path, default=Path("runs/demo/data"))
    ap.add_argument("--work", type=Path, default=Path("/tmp/sweep_model_votes"))
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    train, val = read_jsonl(args.data / "train.jsonl"), read_jsonl(args.data / "validation.jsonl")
    findings, refs = [r["findings"] for r in val], [r["impression"] for r in val]
    seen = {text_key(r["findings"]) for r in train}
    unseen = np.array([text_key(f) not in seen for f in findings])
    n = len(val)
    rows = ["| variant | ROUGE-1 | ROUGE-2 | ROUGE-L | ROUGE-1 unseen | cost |", "|---|---:|---:|---:|---:|---|"]

    def add(label: str, preds: Sequence[str], cost: str) -> None:
        r1_unseen = np.array(rouge_many(list(preds), refs)["rouge1"])[unseen].mean()
        rows.append(f"| {label} | {rouge_cells(preds, refs)} | {r1_unseen:.4f} | {cost} |")
        print(rows[-1], flush=True)

    def per_case(seconds: float) -> str:
        return f"{seconds / n:.4f} s/case"

    def cons(lists: Sequence[Sequence[str]], k: int = 3) -> list[str]:
        return [list(t[:k])[consensus(list(t[:k]))] for t in lists]

    def greedy_and_mbr(loaded) -> tuple[list[str], list[str], float]:  # noqa: ANN001
        greedy, seconds = timed(lambda: [c.text for c in complete_impressions(loaded, findings, 64)])
        mbr = [c.text for c in complete_impressions(loaded, findings, 64, mbr=MbrSettings(0))]
        return greedy, mbr, seconds

    def trained(adapter: Path) -> tuple[list[str], list[str], float]:
        loaded = load_model(args.model, adapter, backend="transformers", batch_size=64)
        try:
            return greedy_and_mbr(loaded)
        finally:
            loaded.backend.close()

    # The TF-IDF neighbours (the model's index and the bar's) and dense ones from the base model.
    retriever = TfidfRetriever(train)
    tfidf = retriever.similarities(findings)
    impressions = [r["impression"] for r in retriever.records]

    def neighbours(sims: np.ndarray, k: int = 5) -> list[list[str]]:
        return [[impressions[j] for j in row] for row in np.argsort(-sims, axis=1, kind="stable")[:, :k]]

    top = neighbours(tfidf)
    layers = (2, 4, 6)
    states, t_embed = timed(lambda: mean_states(args.model, [*findings, *(r["findings"] for r in train)], layers))
    dense = {layer: s[:n] @ s[n:].T for layer, s in states.items()}
    hybrid_top = neighbours(0.5 * zscore(tfidf) + 0.5 * zscore(dense[4]))  # the grid's middle, fixed before looking

    # The shipped model: with its own prompts, and with the hybrid neighbours shown instead.
    shipped = load_model(args.model, args.adapter, backend="transformers", batch_size=64)
    shipped_greedy, shipped_mbr, t_greedy = greedy_and_mbr(shipped)
    prompts = [shipped.style.render(shipped.tokenizer, f, t[:3]) for f, t in zip(findings, hybrid_top, strict=True)]
    hybrid_greedy, t_hybrid = timed(lambda: [c.text for c in shipped.backend.generate(
        encode_prompts(shipped, prompts, 64), Decoding(max_new_tokens=64))])  # fmt: skip
    shipped.backend.close()

    rows.append("| *the bar: the shipped model, TF-IDF neighbours* | | | | | |")
    add("retrieval consensus, k=3 (TF-IDF)", cons(top), "–")
    add("shipped greedy", shipped_greedy, per_case(t_greedy))
    add("shipped MBR (greedy + the prompt's 3)", shipped_mbr, per_case(t_greedy))

    rows.append("| *dense: neighbours from the base model's hidden states (mean over tokens)* | | | | | |")
    cost = f"{t_embed:.0f} s to embed {len(train) + n} reports (3 layers, one pass)"
    for layer in layers:
        add(f"layer {layer}, dense alone: top-1", [t[0] for t in neighbours(dense[layer])], cost)
        add(f"layer {layer}, dense alone: consensus k=3", cons(neighbours(dense[layer])), cost)
        for a in (0.3, 0.5, 0.7):
            mixed = neighbours(a * zscore(tfidf) + (1 - a) * zscore(dense[layer]))
            add(f"layer {layer}, {a} TF-IDF + {1 - a:.1f} dense: top-1", [t[0] for t in mixed], cost)
            add(f"layer {layer}, {a} TF-IDF + {1 - a:.1f} dense: consensus k=3", cons(mixed), cost)
    add("shipped model, prompt shows the layer-4 0.5/0.5 neighbours: greedy", hybrid_greedy, per_case(t_hybrid))
    preds = [pick([g, *h[:3]], [g, *h[:3]]) for g, h in zip(hybrid_greedy, hybrid_top, strict=True)]
    add("same, MBR greedy + those 3", preds, per_case(t_hybrid))

    # voter: a LoRA without retrieval in its prompt, as an independent vote.
    rows.append("| *voter: a LoRA trained without retrieved impressions in its prompt* | | | | | |")
    seconds = train_lora(args.model, args.data, args.work / "voter", ["prompt.retrieval_k=0"])
    voter, _, t = trained(args.work / "voter")
    cost = f"LoRA {seconds:.0f} s + {t / n:.4f} s/case"
    add("no-retrieval LoRA, greedy", voter, cost)
    add("MBR: its answer + TF-IDF top-3", [pick([v, *p[:3]], [v, *p[:3]]) for v, p in zip(voter, top, strict=True)],
        cost)  # fmt: skip
    add("MBR: top-3 compete, its answer votes", [pick(p[:3], [v, *p[:3]]) for v, p in zip(voter, top, strict=True)],
        cost)  # fmt: skip
    both = [[g, v, *p[:3]] for g, v, p in zip(shipped_greedy, voter, top, strict=True)]
    add("MBR: shipped greedy + its answer + top-3", [pick(c, c) for c in both], cost)

    # order: neighbours shown most-central first.
    rows.append("| *order: the prompt's neighbours shown most-central first* | | | | | |")
    with central_first():
        seconds = train_lora(args.model, args.data, args.work / "order", [])
        greedy, mbr, t = trained(args.work / "order")
    cost = f"LoRA {seconds:.0f} s + {t / n:.4f} s/case"
    add("central-first LoRA, greedy", greedy, cost)
    add("central-first LoRA, MBR (greedy + the prompt's 3)", mbr, cost)

    # average: the mean of the last checkpoints of one run.
    rows.append("| *average: mean of the last LoRA checkpoints (every 60 steps)* | | | | | |")
    run_dir = args.work / "average"
    seconds = train_lora(args.model, args.data, run_dir, ["checkpoint.every_steps=60", "checkpoint.keep_last=5"])
    from safetensors.torch import load_file, save_file

    final = load_file(run_dir / "adapter_model.safetensors")
    steps = sorted(run_dir.glob("step-*"))
    for last in (2, 5):
        sds = [final]
        for step in steps[-last:]:
            weights = torch.load(step / "weights.pt", map_location="cpu", weights_only=True)
            sds.append({k.replace(".default", ""): v for k, v in weights.items()})
        folder = args.work / f"average-{last}"
        shutil.rmtree(folder, ignore_errors=True)
        shutil.copytree(run_dir, folder, ignore=shutil.ignore_patterns("step-*"))
        save_file({k: (sum(sd[k] for sd in sds) / len(sds)).contiguous() for k in final},
                  folder / "adapter_model.safetensors")  # fmt: skip
        greedy, mbr, t = trained(folder)
        names = "+".join(s.name.removeprefix("step-").lstrip("0") for s in steps[-last:])
        cost = f"LoRA {seconds:.0f} s (checkpoints) + {t / n:.4f} s/case"
        add(f"mean of steps {names} + final: greedy", greedy, cost)
        add(f"mean of steps {names} + final: MBR", mbr, cost)

    note = (
        f"{n} validation cases of `{args.data}` (the test split is not read), base `{args.model}`, shipped LoRA "
        f"`{args.adapter}`; transformers backend, fp32, at most 64 new tokens; MBR utility mean ROUGE-1/2/L F1. "
        "Each trained row is the shipped LoRA recipe (`mini-lora.yaml`, seed 0) from the same base with one change. "
        "`unseen`: validation findings not verbatim in train. Cost: training seconds on 2 quiet CPU cores and "
        "generation seconds per case (greedy)."
    )
    publish(TITLE, note, "\n".join(rows), write=not args.no_write)


if __name__ == "__main__":
    main()
