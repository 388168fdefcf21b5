"""The shared sentence splitter: plain sentences by default, clauses and lines on request."""

from __future__ import annotations

from radllama.data.records import split_sentences

TEXT = "  Heart size 2.5 cm. Small left effusion; no pneumothorax!\nMild edema\n\nStable? "


def test_sentences_keep_decimals_and_semicolons() -> None:
    plain = ["Heart size 2.5 cm.", "Small left effusion; no pneumothorax!", "Mild edema\n\nStable?"]
    assert split_sentences(TEXT) == plain
    assert split_sentences(None) == [] and split_sentences(" \n ") == []


def test_clauses_also_cut_after_semicolons_and_at_line_breaks() -> None:
    # What names_keyword, the extractive MBR candidate and the copying measure read.
    assert split_sentences(TEXT, clauses=True) == [
        "Heart size 2.5 cm.",
        "Small left effusion;",
        "no pneumothorax!",
        "Mild edema",
        "Stable?",
    ]
