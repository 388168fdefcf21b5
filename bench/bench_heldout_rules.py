"""Issue #30: what the systems with no model earn on the frozen held-out edition ``heldout-v2``, by the
independent reader and by ours: the findings pasted back, the faithful decoder's rule alone (the findings'
acute sentences, else the retrieval consensus), the retrieval baselines and the most frequent impression.

    python bench/bench_heldout_rules.py --data runs/demo/data [--no-write]

No model, no choice: these rows only report. They are the floor a decision rule stands on, and
``findings-verbatim`` read by the judge is the judge's own ceiling (what it reads in the texts themselves).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import publish  # noqa: E402

from radllama.baselines import make_baseline  # noqa: E402
from radllama.evaluate.edition_score import score_both  # noqa: E402
from radllama.evaluate.editions import FINDING_TYPES, edition_digest, load_edition  # noqa: E402
from radllama.evaluate.judge import reader_digest  # noqa: E402
from radllama.io import read_jsonl  # noqa: E402

TITLE = "Issue #30: systems with no model on the frozen heldout-v2 edition (bench_heldout_rules.py)"
SYSTEMS = ("findings-verbatim", "acute-rule", "retrieval-consensus", "tfidf-retrieval", "most-frequent")
COLUMNS = (
    ("named", "named"), ("multi_all_named", "all named (multi)"), ("hedge_kept", "hedge kept"),
    ("hedge_dropped", "hedge dropped"), ("hedge_asserted", "hedge asserted"),
    ("resolved_asserted", "resolved asserted"),
    ("invented_normal", "invented: normal"), ("invented_negation", "invented: negation"), ("side_kept", "side kept"),
)  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="runs/demo/data")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    cases = load_edition("heldout-v2")
    train = read_jsonl(Path(args.data) / "train.jsonl")
    findings = [c["findings"] for c in cases]
    lines = [
        "| system | reader | " + " | ".join(label for _, label in COLUMNS) + " |",
        "|---|---|" + "---|" * len(COLUMNS),
    ]
    for name in SYSTEMS:
        scores = score_both(cases, make_baseline(name).fit(train).predict(findings), FINDING_TYPES)
        for reader in ("judge", "ours"):
            s = scores[reader]
            cells = ["–" if s[key] is None else f"{s[key]:.1%}" for key, _ in COLUMNS]
            lines.append(f"| {name} | {reader} | " + " | ".join(cells) + " |")
    note = (
        f"`heldout-v2` sha256 {edition_digest('heldout-v2')[:12]}…, {len(cases)} cases; the judge's rules "
        f"{reader_digest()[:12]}…. `judge` is the independent reader (radllama.evaluate.judge), `ours` the labeller "
        "and consistency check the faithful decoder chooses with."
    )
    print("\n".join(lines))
    publish(TITLE, note, "\n".join(lines), write=not args.no_write)


if __name__ == "__main__":
    main()
