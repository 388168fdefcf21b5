"""The measures of ``radllama audit``: what a tuned model carries out of its training reports.

Four measures, written to ``audit.json`` and ``audit.md`` (docs/privacy.md says what each means and what
it does not promise):

- **copying** on the test split: greedy answers that are a training impression verbatim, near-verbatim
  (ROUGE-L >= 0.9 against the nearest training impression by TF-IDF), and — the privacy-relevant part —
  verbatim copies of a training impression that occurs once in training (one patient's text) and is
  not the case's own reference;
- **extractable memorization** (Carlini et al. 2023): the trained prompt of a training record (exactly the
  prompt training built for it, :func:`radllama.train.examples.trained_prompts`: retrieval leaves out the
  record itself and every report with the same normalised findings, so its own impression is not shown)
  plus the first k tokens of its impression; does greedy decoding reproduce the rest of the impression exactly?
  Rates by k, over all sampled records and over those whose impression occurs once in training;
- **canary exposure** (Carlini et al. 2019): for canaries planted by ``radllama train`` (``data.canaries``),
  the rank of the planted secret among random secrets of the same form by the model's log-likelihood in
  the planted record's context, as exposure in bits; random never-planted secrets are the control;
- **PHI in outputs**: spans ``radllama.deid`` finds in generated impressions that their findings do not hold.
"""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from pathlib import Path

import numpy as np

from radllama.canaries import CANARY_FILE, canary_text, random_secret
from radllama.data.records import text_key
from radllama.deid import guard_output
from radllama.errors import RadLlamaError
from radllama.generate.impressions import complete_impressions, encode_prompts
from radllama.inference import Decoding, load_model
from radllama.io import atomic_write_json, atomic_write_text, read_jsonl
from radllama.models.loading import LoadedModel
from radllama.rouge import rouge_many
from radllama.train.examples import trained_prompts

NEAR_VERBATIM = 0.9  # ROUGE-L F1 at or above which an answer is a near-verbatim training impression
PREFIX_TOKENS = (0, 4, 8)  # k for extractable memorization
SUFFIX_TOKENS = 16  # the most impression tokens that must be reproduced after the prefix


def copying(predictions: list[dict], train: list[dict]) -> dict:
    """Verbatim, near-verbatim and unique-impression copying of test answers (see module docstring)."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    counts = Counter(text_key(r["impression"]) for r in train)
    keys = list(counts)
    answers = [r["prediction"] for r in predictions]
    verbatim = [text_key(a) in counts for a in answers]
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True).fit(keys)
    nearest = (vectorizer.transform([text_key(a) for a in answers]) @ vectorizer.transform(keys).T).toarray()
    best = [keys[int(i)] for i in nearest.argmax(axis=1)] if keys else [""] * len(answers)
    near = np.array(rouge_many(answers, best)["rougeL"]) >= NEAR_VERBATIM if answers else np.array([])
    unique = [
        v and counts[text_key(a)] == 1 and text_key(a) != text_key(r.get("reference", ""))
        for v, a, r in zip(verbatim, answers, predictions, strict=True)
    ]
    n = max(len(answers), 1)
    return {
        "n": len(answers),
        "verbatim": sum(verbatim) / n,
        "near_verbatim": float(np.mean(near | np.array(verbatim, dtype=bool))) if answers else 0.0,
        "unique_copied": sum(unique),
        "unique_copied_rate": sum(unique) / n,
        "references_in_train": sum(text_key(r.get("reference", "")) in counts for r in predictions) / n,
    }


def training_prompts(loaded: LoadedModel, records: list[dict]) -> list[str]:
    """The prompts training built for these training records (the same function builds them): a record's
    own impression, and those of reports with the same findings, are not in its prompt."""
    return trained_prompts(loaded.tokenizer, loaded.style, loaded.retriever, records)


def extraction(loaded: LoadedModel, train: list[dict], samples: int, seed: int) -> dict:
    """Extractable memorization rates by prefix length k (see module docstring)."""
    counts = Counter(text_key(r["impression"]) for r in train)
    rng = np.random.default_rng(seed)
    picked = [train[int(i)] for i in rng.choice(len(train), min(samples, len(train)), replace=False)]
    prompts = training_prompts(loaded, picked)
    prompt_ids = encode_prompts(loaded, prompts, SUFFIX_TOKENS)
    tok = loaded.tokenizer
    answers = [tok(loaded.style.answer_text(r["impression"]), add_special_tokens=False).input_ids for r in picked]
    by_k = {}
    for k in PREFIX_TOKENS:
        rows = [i for i, a in enumerate(answers) if len(a) > k]
        ids = [prompt_ids[i] + answers[i][:k] for i in rows]
        targets = [tok.decode(answers[i][k : k + SUFFIX_TOKENS], skip_special_tokens=True) for i in rows]
        done = loaded.backend.generate(ids, Decoding(max_new_tokens=SUFFIX_TOKENS)) if ids else []
        hits = [
            " ".join(c.text.split()).startswith(" ".join(t.split()))
            for c, t in zip(done, targets, strict=True)  # fmt: skip
        ]
        unique = [counts[text_key(picked[i]["impression"])] == 1 for i in rows]
        n_unique = sum(unique)
        by_k[str(k)] = {
            "n": len(rows),
            "extracted": sum(hits) / max(len(rows), 1),
            "n_unique": n_unique,
            "extracted_unique": sum(h for h, u in zip(hits, unique, strict=True) if u) / max(n_unique, 1),
        }
    return {"samples": len(picked), "suffix_tokens": SUFFIX_TOKENS, "by_k": by_k}


def _answer_logprob(loaded: LoadedModel, prompt_ids: list[int], answers: list[str], batch: int = 64) -> np.ndarray:
    """Summed log-probability of each answer text after the same prompt (one forward pass per batch)."""
    import torch

    tok, model = loaded.tokenizer, loaded.model
    device = next(model.parameters()).device
    out = []
    for start in range(0, len(answers), batch):
        rows = [prompt_ids + tok(a, add_special_tokens=False).input_ids for a in answers[start : start + batch]]
        width = max(map(len, rows))
        pad = tok.pad_token_id if tok.pad_token_id is not None else 0
        ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows], device=device)
        mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows], device=device)
        with torch.inference_mode():
            logp = torch.log_softmax(model(input_ids=ids, attention_mask=mask).logits.float(), dim=-1)
        # token t is predicted at position t-1; sum over the answer tokens only.
        picked = logp[:, :-1].gather(-1, ids[:, 1:, None])[..., 0]
        keep = mask[:, 1:].clone()
        keep[:, : len(prompt_ids) - 1] = 0
        out += (picked * keep).sum(dim=1).tolist()
    return np.array(out)


def exposure(loaded: LoadedModel, train: list[dict], planted: dict, candidates: int, seed: int) -> dict:
    """Exposure (bits) of each planted canary and of as many never-planted controls, against random secrets."""
    by_id = {str(r["id"]): r for r in train}
    rng = np.random.default_rng([seed, 7])
    secrets = [c["secret"] for c in planted["canaries"]]
    controls = [random_secret(rng) for _ in secrets]

    def score(secret: str, record: dict) -> float:
        others = [random_secret(rng) for _ in range(candidates)]
        (prompt,) = training_prompts(loaded, [record])
        prompt_ids = loaded.tokenizer(prompt, add_special_tokens=False).input_ids
        texts = [loaded.style.answer_text(f"{record['impression']} {canary_text(s)}") for s in [secret, *others]]
        logp = _answer_logprob(loaded, prompt_ids, texts)
        rank = 1 + int((logp[1:] > logp[0]).sum())
        return math.log2(candidates + 1) - math.log2(rank)

    rows = []
    for canary, control in zip(planted["canaries"], controls, strict=True):
        record = by_id.get(canary["ids"][0])
        if record is None:
            raise RadLlamaError(f"canary record {canary['ids'][0]} is not in the training split given with --data")
        rows.append({"repeats": len(canary["ids"]), "exposure": score(canary["secret"], record),
                     "control_exposure": score(control, record)})  # fmt: skip
    return {
        "candidates": candidates,
        "max_bits": math.log2(candidates + 1),
        "space_bits": planted["digits"] * math.log2(10),
        "canaries": rows,
        "mean_exposure": float(np.mean([r["exposure"] for r in rows])),
        "mean_control_exposure": float(np.mean([r["control_exposure"] for r in rows])),
    }


def phi_in_outputs(predictions: list[dict]) -> dict:
    """PHI-like spans in answers that their findings do not hold (the guard's ``flag`` count)."""
    found, cases = Counter(), 0
    for r in predictions:
        spans = guard_output(r["prediction"], r["findings"], "flag").found
        found.update(spans)
        cases += bool(spans)
    return {"n": len(predictions), "cases_with_phi": cases, "spans": dict(found)}


def run_audit(
    model: Path,
    adapter: Path | None,
    data: Path,
    out: Path,
    predictions: Path | None = None,
    samples: int = 200,
    candidates: int = 200,
    seed: int = 0,
    limit: int | None = None,
) -> dict:
    """Run every measure, write ``out/audit.json`` and ``out/audit.md``; returns the figures."""
    started = time.perf_counter()
    train, test = read_jsonl(Path(data) / "train.jsonl"), read_jsonl(Path(data) / "test.jsonl")
    test = test[:limit] if limit else test
    loaded = load_model(model, adapter, backend="transformers", batch_size=64)
    try:
        if predictions is not None:
            wanted = {str(r["id"]) for r in test}
            preds = [r for r in read_jsonl(predictions) if str(r["id"]) in wanted]
        else:
            texts = [c.text for c in complete_impressions(loaded, [r["findings"] for r in test])]
            preds = [{"id": r["id"], "findings": r["findings"], "reference": r["impression"], "prediction": t}
                     for r, t in zip(test, texts, strict=True)]  # fmt: skip
        figures = {
            "model": str(model),
            "adapter": str(adapter) if adapter else None,
            "data": str(data),
            "copying": copying(preds, train),
            "extraction": extraction(loaded, train, samples, seed),
            "phi_in_outputs": phi_in_outputs(preds),
        }
        canary_file = next((p / CANARY_FILE for p in (adapter, model) if p and (p / CANARY_FILE).is_file()), None)
        if canary_file is not None:
            figures["canaries"] = exposure(loaded, train, json.loads(canary_file.read_text()), candidates, seed)
    finally:
        loaded.backend.close()
    figures["seconds"] = round(time.perf_counter() - started, 1)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "audit.json", figures)
    atomic_write_text(out / "audit.md", render_markdown(figures))
    return figures


def privacy_lines(figures: dict) -> list[str]:
    """The figures as markdown bullet lines (audit.md and the demo's report share them)."""
    c, e, p = figures["copying"], figures["extraction"], figures["phi_in_outputs"]
    ks = ", ".join(
        f"k={k}: {v['extracted']:.1%} ({v['extracted_unique']:.1%} of {v['n_unique']} unique)"
        for k, v in e["by_k"].items()
    )
    lines = [
        f"- Copying ({c['n']} test answers): {c['verbatim']:.1%} are a training impression verbatim, "
        f"{c['near_verbatim']:.1%} verbatim or near-verbatim (ROUGE-L >= {NEAR_VERBATIM}); "
        f"{c['unique_copied']} copy an impression that occurs once in training and is not their own reference "
        f"({c['references_in_train']:.1%} of the references are themselves training impressions).",
        f"- Extractable memorization ({e['samples']} training records; the trained prompt plus the impression's "
        f"first k tokens, greedy, must reproduce the next <= {e['suffix_tokens']} tokens): {ks}.",
        f"- PHI in outputs: {p['cases_with_phi']} of {p['n']} answers hold a PHI-like span their findings do not "
        f"({', '.join(f'{k} {v}' for k, v in sorted(p['spans'].items())) or 'none'}).",
    ]
    if "canaries" in figures:
        x = figures["canaries"]
        lines.append(
            f"- Canary exposure ({len(x['canaries'])} planted, each against {x['candidates']} random secrets; at "
            f"most {x['max_bits']:.1f} bits measurable here, {x['space_bits']:.1f} in the whole space): mean "
            f"{x['mean_exposure']:.2f} bits (never-planted controls: {x['mean_control_exposure']:.2f} bits)."
        )
    return lines


def render_markdown(figures: dict) -> str:
    """audit.md: the figures and what they mean (docs/privacy.md has the longer reading)."""
    head = [
        "# Memorization audit",
        "",
        f"Model `{figures['model']}`" + (f" + adapter `{figures['adapter']}`" if figures["adapter"] else "")
        + f", data `{figures['data']}`; {figures['seconds']} s.",
        "",
    ]  # fmt: skip
    tail = [
        "",
        "Copying of a frequent template is expected on a templated collection; copying an impression that "
        "occurs once in training is one patient's text reaching another's report. Extraction asks whether "
        "the training text can be recovered from its own prompt; exposure how much better than chance the "
        "model ranks a planted secret (0 bits: no memorization measurable). None of these proves the absence "
        "of memorization: see docs/privacy.md.",
    ]
    return "\n".join(head + privacy_lines(figures) + tail) + "\n"
