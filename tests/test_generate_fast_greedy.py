"""The engine's fast greedy path gives the tokens ``model.generate`` gives, row by row.

Tiny random models of each architecture family; the EOS token is set to a token the model
really emits, so rows finish at different steps and leave the batch while others go on.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import pytest
import torch

from radllama.generate.engine import MIN_SHARED_PREFIX, GenerationSettings, fast_greedy_cache, generate_batch
from radllama.models.loading import load_for_inference
from radllama.train.tiny import INVENTED_TEXT, build_tiny_model

PROMPTS = [t[: 10 + 9 * i] for i, t in enumerate(INVENTED_TEXT)] + ["No", "The heart is normal in size. " * 3]
# One template's prompts: a common beginning the fast path computes once per batch.
SHARED = ["Derive the impression from the findings. Findings: " + p for p in PROMPTS]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize("prompts", [PROMPTS, SHARED], ids=["distinct", "shared-prefix"])
@pytest.mark.parametrize("family", ["llama", "gpt_neox", "stablelm"])
def test_fast_greedy_equals_generate_with_rows_ending_early(tmp_path: Path, family: str, prompts: list[str]) -> None:
    loaded = load_for_inference(build_tiny_model(family, tmp_path / family), device="cpu")
    model, tok = loaded.model, loaded.tokenizer
    with torch.no_grad():  # sharp, position-dependent attention: wrong positions or masks change tokens
        for name, p in model.named_parameters():
            if any(k in name for k in ("q_proj", "k_proj", "query_key_value")):
                p.mul_(6)
    assert fast_greedy_cache(model) is not None  # the fast path is really taken
    ids = [tok(p, add_special_tokens=False).input_ids for p in prompts]
    assert (len(os.path.commonprefix(ids)) >= MIN_SHARED_PREFIX) == (prompts is SHARED)
    slow = GenerationSettings(max_new_tokens=12, fast_greedy=False)
    # Make a token the model produces mid-way an "EOS", so rows stop at different steps: the
    # most common token among those that appear in some rows' continuations but not in all.
    enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    with torch.inference_mode():
        out = model.generate(**enc, max_new_tokens=12, do_sample=False, pad_token_id=tok.pad_token_id)
    rows = [set(r[1:8]) for r in out[:, enc["input_ids"].shape[1] :].tolist()]
    counts = Counter(t for r in rows for t in r)
    eos = max((t for t, n in counts.items() if n < len(rows)), key=lambda t: counts[t])
    tok.eos_token = tok.convert_ids_to_tokens(eos)
    expected = generate_batch(model, tok, prompts, slow)
    got = generate_batch(model, tok, prompts, GenerationSettings(max_new_tokens=12))
    assert got == expected
    reasons = {c.finish_reason for c in got}
    assert reasons == {"stop", "length"}, reasons  # some rows left the batch early, some ran on
