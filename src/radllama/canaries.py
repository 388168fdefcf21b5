"""Canaries (Carlini et al. 2019, "The Secret Sharer"): random secrets planted in training copies of the data.

``radllama train`` with ``data.canaries: N`` appends N random sentences ("The pager number is 3 8 1 0 5 2.")
to the impressions of ``data.canary_repeats`` training records each (copies; the split files and the
retrieval index stay clean) and saves which, as ``canaries.json`` beside the weights. ``radllama audit``
then ranks each planted secret against random secrets of the same form by the model's likelihood: a
model that memorised it ranks it first (high exposure, in bits); one that did not ranks it anywhere.
"""

from __future__ import annotations

import copy

import numpy as np

from radllama.errors import RadLlamaError

CANARY_FILE = "canaries.json"
TEMPLATE = "The pager number is {}."
DIGITS = 6  # 10**6 possible secrets: at most log2(10**6) = 19.9 bits of exposure


def random_secret(rng: np.random.Generator) -> str:
    """Digits separated by spaces, so every tokenizer spends one token per digit."""
    return " ".join(str(d) for d in rng.integers(0, 10, DIGITS))


def canary_text(secret: str) -> str:
    return TEMPLATE.format(secret)


def plant_canaries(records: list[dict], n: int, repeats: int, seed: int) -> tuple[list[dict], dict | None]:
    """Copies of ``records`` with ``n`` canaries, each appended to the impressions of ``repeats`` records.

    Returns the planted copies and the record for ``canaries.json`` (``None`` when ``n`` is 0): the
    template, and per canary its secret and the ids of the records that carry it.
    """
    if n <= 0:
        return records, None
    if repeats < 1 or repeats > len(records):
        raise RadLlamaError(f"data.canary_repeats must be between 1 and the {len(records)} training records")
    rng = np.random.default_rng([seed, 2019])
    planted = copy.deepcopy(records)
    canaries = []
    for _ in range(n):
        secret = random_secret(rng)
        chosen = sorted(int(i) for i in rng.choice(len(planted), repeats, replace=False))
        for i in chosen:
            planted[i]["impression"] = f"{planted[i]['impression']} {canary_text(secret)}".strip()
        canaries.append({"secret": secret, "ids": [str(planted[i]["id"]) for i in chosen]})
    return planted, {"template": TEMPLATE, "digits": DIGITS, "seed": seed, "canaries": canaries}
