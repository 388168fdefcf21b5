"""Issue #13: decoding and retrieval variants for one trained radllama-mini, on VALIDATION only.

    python bench/sweep_decoding.py [--model runs/demo/mini/base] [--adapter runs/demo/mini/lora]
        [--data runs/demo/data] [--no-write]

What could make the tuned model beat the retrieval consensus without retraining: beam search,
minimum-Bayes-risk variants (who is a candidate, who votes, with what weight), the tuned model's
likelihood as a re-ranker or as MBR weights, and BM25 (``bm25s``, if installed) instead of TF-IDF
for the neighbours. Every row is scored on the validation split, so the test split stays unseen
by every choice; ``s per case`` is wall time on this machine (read the ratios).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from functools import cache
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import publish, rouge_cells, timed  # noqa: E402

from radllama.generate.impressions import complete_impressions, encode_prompts, impression_prompts  # noqa: E402
from radllama.generate.mbr import MbrSettings, consensus, utility  # noqa: E402
from radllama.inference import load_model  # noqa: E402
from radllama.io import read_jsonl  # noqa: E402
from radllama.retrieval import retrieved_impressions  # noqa: E402

TITLE = "Issue #13: decoding and retrieval variants on validation (sweep_decoding.py)"


@cache
def agree(a: str, b: str) -> float:
    """The MBR utility, cached (symmetric)."""
    return utility(*sorted((a, b)))


def pick(hypotheses: Sequence[str], evidence: Sequence[str], weights: Sequence[float] | None = None) -> str:
    """The hypothesis with the highest weighted utility against the evidence (itself excluded, by position)."""
    weights = weights or [1.0] * len(evidence)
    return max(
        hypotheses, key=lambda h: sum(w * agree(h, e) for e, w in zip(evidence, weights, strict=True) if e is not h)
    )


def beam_texts(loaded, ids: list[list[int]], beams: int, max_new_tokens: int) -> list[list[str]]:
    """The ``beams``-best list of plain beam search for each prompt (one prompt at a time)."""
    model, tok = loaded.backend.model, loaded.tokenizer
    eos = sorted(loaded.backend.eos)
    out = []
    with torch.no_grad():
        for row in ids:
            x = torch.tensor([row])
            seqs = model.generate(
                input_ids=x, attention_mask=torch.ones_like(x), num_beams=beams, num_return_sequences=beams,
                do_sample=False, max_new_tokens=max_new_tokens, eos_token_id=eos, pad_token_id=eos[0],
            )  # fmt: skip
            out.append([tok.decode(s[len(row) :], skip_special_tokens=True).strip() for s in seqs])
    return out


def mean_logprobs(loaded, ids: list[list[int]], candidates: list[list[str]]) -> list[list[float]]:
    """Per case, each candidate's mean token log-probability (answer + EOS) under the tuned model."""
    model, tok = loaded.backend.model, loaded.tokenizer
    eos = sorted(loaded.backend.eos)[0]
    out = []
    with torch.no_grad():
        for row, cands in zip(ids, candidates, strict=True):
            seqs = [row + tok(c, add_special_tokens=False).input_ids + [eos] for c in cands]
            width = max(map(len, seqs))
            x = torch.full((len(seqs), width), eos)
            mask = torch.zeros_like(x)
            for j, s in enumerate(seqs):
                x[j, : len(s)], mask[j, : len(s)] = torch.tensor(s), 1
            logp = torch.log_softmax(model(input_ids=x, attention_mask=mask).logits.float(), -1)
            scores = []
            for j, s in enumerate(seqs):
                pos = torch.arange(len(row) - 1, len(s) - 1)
                scores.append(float(logp[j, pos, torch.tensor(s[len(row) :])].mean()))
            out.append(scores)
    return out


def bm25_neighbours(train: list[dict], findings: list[str], k: int, k1: float, b: float) -> list[list[str]] | None:
    """The impressions of the ``k`` nearest training reports by BM25 (bm25s), or None without bm25s."""
    try:
        import bm25s
    except ImportError:
        return None
    index = bm25s.BM25(k1=k1, b=b)
    index.index(
        bm25s.tokenize([r["findings"] for r in train], stopwords=None, show_progress=False), show_progress=False
    )
    docs, _ = index.retrieve(bm25s.tokenize(findings, stopwords=None, show_progress=False), k=k, show_progress=False)
    return [[train[j]["impression"] for j in row] for row in docs]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=Path("runs/demo/mini/base"))
    ap.add_argument("--adapter", type=Path, default=Path("runs/demo/mini/lora"))
    ap.add_argument("--data", type=Path, default=Path("runs/demo/data"))
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    train, val = read_jsonl(args.data / "train.jsonl"), read_jsonl(args.data / "validation.jsonl")
    findings, refs = [r["findings"] for r in val], [r["impression"] for r in val]
    n = len(val)
    rows = ["| variant | ROUGE-1 | ROUGE-2 | ROUGE-L | s per case |", "|---|---:|---:|---:|---:|"]

    def add(label: str, preds: Sequence[str], seconds: float) -> None:
        rows.append(f"| {label} | {rouge_cells(preds, refs)} | {seconds / n:.4f} |")
        print(rows[-1], flush=True)

    loaded = load_model(args.model, args.adapter, backend="transformers", batch_size=64)
    top10, t_retrieve = timed(lambda: retrieved_impressions(loaded.retriever, findings, 10))
    greedy, t_greedy = timed(lambda: [c.text for c in complete_impressions(loaded, findings, 64)])
    ids = encode_prompts(loaded, impression_prompts(loaded, findings), 64)
    beams, t_beam = timed(lambda: beam_texts(loaded, ids, 4, 64))
    pool = [[g, *t] for g, t in zip(greedy, top10, strict=True)]  # greedy + top-10 retrieved
    logp, t_logp = timed(lambda: mean_logprobs(loaded, ids, pool))
    mbr_cli, t_mbr = timed(lambda: [c.text for c in complete_impressions(loaded, findings, 64, mbr=MbrSettings(0))])
    loaded.backend.close()
    k = loaded.style.retrieval_k  # the prompt shows this many (the shipped MBR's retrieved pool)

    rows.append("| *retrieval baselines (TF-IDF, the model's index)* | | | | |")
    add("top-1", [t[0] for t in top10], t_retrieve)
    for c in (3, 4, 5, 8):
        add(f"retrieval consensus, k={c}", [t[:c][consensus(t[:c])] for t in top10], t_retrieve)
    for k1, b in ((1.5, 0.75), (2.0, 0.9)):
        bm25, t_bm25 = timed(lambda k1=k1, b=b: bm25_neighbours(train, findings, 5, k1, b))
        if bm25 is None:
            rows.append("| BM25: bm25s not installed | | | | |")
            break
        add(f"BM25 (k1={k1}, b={b}) top-1", [t[0] for t in bm25], t_bm25)
        add(f"BM25 (k1={k1}, b={b}) consensus, k=3", [t[:3][consensus(t[:3])] for t in bm25], t_bm25)
    rows.append("| *the tuned model* | | | | |")
    add("greedy", greedy, t_greedy)
    add("beam search, 4 beams (best)", [b[0] for b in beams], t_beam)
    shipped = [pick([g, *t[:k]], [g, *t[:k]]) for g, t in zip(greedy, top10, strict=True)]
    add(f"MBR as shipped: greedy + the prompt's {k} retrieved vote and compete", shipped, t_greedy)
    for w in (0.5, 2.0):
        preds = [pick([g, *t[:k]], [g, *t[:k]], [w] + [1.0] * k) for g, t in zip(greedy, top10, strict=True)]
        add(f"MBR, the greedy answer's vote weighted {w}", preds, t_greedy)
    preds = [pick(t[:k], [g, *t[:k]]) for g, t in zip(greedy, top10, strict=True)]
    add(f"MBR, only the {k} retrieved compete, greedy votes", preds, t_greedy)
    preds = [pick([g, *t[:k]], t[:8]) for g, t in zip(greedy, top10, strict=True)]
    add(f"MBR, greedy + {k} retrieved compete, 8 retrieved vote", preds, t_greedy)
    preds = [pick([g, *b, *t[:k]], [g, *b, *t[:k]]) for g, b, t in zip(greedy, beams, top10, strict=True)]
    add(f"MBR, greedy + 4 beams + {k} retrieved", preds, t_greedy + t_beam)
    preds = [p[max(range(6), key=lambda j, s=s: s[j])] for p, s in zip(pool, logp, strict=True)]
    add("likelihood re-ranking of greedy + 5 retrieved", preds, t_greedy + t_logp)
    for temp in (1.0, 4.0):
        preds = []
        for p, s in zip(pool, logp, strict=True):
            w = np.exp((np.array(s[: k + 1]) - max(s[: k + 1])) / temp)
            preds.append(pick(p[: k + 1], p[: k + 1], list(w / w.sum())))
        add(f"MBR weighted by likelihood (T={temp}), greedy + {k} retrieved", preds, t_greedy + t_logp)
    add("check: the shipped MBR through `complete_impressions` (greedy + MBR)", mbr_cli, t_mbr)

    note = (
        f"{n} validation cases of `{args.data}`, model `{args.model}` + `{args.adapter}` (transformers backend, fp32, "
        "at most 64 new tokens). MBR utility: mean ROUGE-1/2/L F1 (rouge-score), a candidate never votes for itself. "
        "Likelihood: mean token log-probability of the answer and EOS under the tuned model, given the trained prompt."
    )
    publish(TITLE, note, "\n".join(rows), write=not args.no_write)


if __name__ == "__main__":
    main()
