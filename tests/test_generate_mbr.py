"""Minimum Bayes risk decoding: the consensus rule, the generate CLI and the server's /v1/impressions."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from live_server import live_uvicorn
from test_serve_support import BACKENDS, FINDINGS, live_server, tiny_loaded, tiny_model_dir

from radllama.generate.impressions import complete_impressions
from radllama.generate.mbr import MbrSettings, consensus
from radllama.inference.transformers_backend import TransformersBackend
from radllama.io import read_jsonl, write_jsonl
from radllama.models.loading import RETRIEVAL_INDEX_FILE, load_for_inference
from radllama.prompts import PromptStyle
from radllama.retrieval import retrieved_impressions
from radllama.serve.app import create_app
from radllama.serve.service import ModelService, ServeSettings

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_consensus_answers_what_the_candidates_agree_on() -> None:
    odd = "Right upper lobe pneumonia."
    agree = ["No acute cardiopulmonary abnormality.", "No acute cardiopulmonary disease.", "No acute abnormality."]
    assert consensus([odd, *agree]) == 1  # the odd greedy answer loses to what the others share
    assert consensus(["a b", "c d"]) == 0  # a tie goes to the first (greedy) candidate
    assert consensus(["only"]) == 0


def _loaded():
    loaded = tiny_loaded()
    loaded.backend = loaded.backend or TransformersBackend(loaded.model, loaded.tokenizer)
    return loaded


def test_mbr_picks_among_greedy_samples_and_retrieved() -> None:
    loaded = _loaded()
    greedy = complete_impressions(loaded, FINDINGS[:6], 8)
    picked = complete_impressions(loaded, FINDINGS[:6], 8, mbr=MbrSettings(samples=3))
    again = complete_impressions(loaded, FINDINGS[:6], 8, mbr=MbrSettings(samples=3))
    assert [c.text for c in picked] == [c.text for c in again]  # seeded: reproducible
    for g, c in zip(greedy, picked, strict=True):
        assert c.source in ("greedy", "sample", "retrieved")
        assert c.completion_tokens >= g.completion_tokens  # it paid for its samples
        if c.source == "greedy":
            assert c.text == g.text
    assert len({c.source for c in picked}) > 1  # more than one kind of candidate wins across cases

    # No samples, no retrieval: MBR is greedy. No samples, retrieval: the consensus of greedy and the
    # impressions the prompt shows.
    alone = complete_impressions(loaded, FINDINGS[:6], 8, mbr=MbrSettings(samples=0, retrieved=0))
    assert [c.text for c in alone] == [c.text for c in greedy]
    shown = retrieved_impressions(loaded.retriever, FINDINGS[:6], loaded.style.retrieval_k)
    voted = complete_impressions(loaded, FINDINGS[:6], 8, mbr=MbrSettings(samples=0))
    for g, ex, c in zip(greedy, shown, voted, strict=True):
        texts = [g.text, *ex]
        assert c.text == texts[consensus(texts)]


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_server_mbr_equals_offline_mbr_without_samples(backend: str) -> None:
    """With no samples MBR is deterministic (greedy + retrieved): the server must pick as offline does."""
    findings = FINDINGS[:4]
    expected = [c.text for c in complete_impressions(_loaded(), findings, 8, mbr=MbrSettings(samples=0))]
    nearest3 = [c.text for c in complete_impressions(_loaded(), findings, 8, mbr=MbrSettings(samples=0, retrieved=3))]
    assert nearest3 != expected  # the request's "retrieved" must change the candidates to pass below
    with live_server(backend=backend) as url:
        body = {"findings": findings, "max_tokens": 8, "decode": "mbr", "samples": 0}
        assert httpx.post(f"{url}/v1/impressions", json=body, timeout=120).json()["impressions"] == expected
        three = httpx.post(f"{url}/v1/impressions", json={**body, "retrieved": 3}, timeout=120).json()
        assert three["impressions"] == nearest3
        sampled = httpx.post(f"{url}/v1/impressions", json={**body, "samples": 3}, timeout=120).json()
        greedy = httpx.post(f"{url}/v1/impressions", json={**body, "decode": "greedy"}, timeout=120).json()
        assert len(sampled["impressions"]) == 4 and all(sampled["impressions"])
        assert sampled["usage"]["completion_tokens"] > greedy["usage"]["completion_tokens"]
        too_many = httpx.post(f"{url}/v1/impressions", json={"findings": ["x"] * 64, "decode": "mbr", "samples": 16})
        assert too_many.status_code == 400 and too_many.json()["error"]["code"] == "too_many_completions"


def test_server_refuses_retrieved_candidates_without_an_index(tmp_path: Path) -> None:
    """A model folder with no retrieval index: asking MBR for retrieved candidates is a 400 before any
    decoding, not an answer that silently lacks them; without "retrieved" the same request is answered."""
    folder = tmp_path / "no-index"
    shutil.copytree(tiny_model_dir(), folder)
    (folder / RETRIEVAL_INDEX_FILE).unlink()
    PromptStyle(retrieval_k=0).save(folder)  # a prompt that shows no neighbours, like SmolLM2's
    service = ModelService(load_for_inference(folder, device="cpu"), ServeSettings())
    with live_uvicorn(create_app(service)) as url:
        body = {"findings": FINDINGS[:2], "max_tokens": 4, "decode": "mbr", "samples": 0}
        refused = httpx.post(f"{url}/v1/impressions", json={**body, "retrieved": 3}, timeout=120)
        assert refused.status_code == 400 and refused.json()["error"]["code"] == "no_retrieval_index"
        answered = httpx.post(f"{url}/v1/impressions", json={**body, "retrieved": 0}, timeout=120)
        assert answered.status_code == 200 and len(answered.json()["impressions"]) == 2


@pytest.mark.slow
def test_generate_cli_mbr_records_the_winning_candidate(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "in.jsonl", [{"id": str(i), "findings": f} for i, f in enumerate(FINDINGS[:4])])
    args = ["generate", "--model", str(tiny_model_dir()), "--input", str(tmp_path / "in.jsonl"), "--output",
            str(tmp_path / "out.jsonl"), "--max-new-tokens", "6", "--decode", "mbr", "--samples", "2",
            "--backend", "transformers"]  # fmt: skip
    r = subprocess.run([sys.executable, "-m", "radllama.cli", *args], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    rows = read_jsonl(tmp_path / "out.jsonl")
    assert len(rows) == 4 and all(row["candidate"] in ("greedy", "sample", "retrieved") for row in rows)
    greedy = subprocess.run([sys.executable, "-m", "radllama.cli", *args[:-6], "--backend", "transformers"],
                            capture_output=True, text=True, timeout=300)  # fmt: skip
    assert greedy.returncode == 1 and "different decoding" in greedy.stderr  # provenance knows the mode


def test_clinical_utility_and_extractive_candidate_name_the_finding() -> None:
    from radllama.generate.mbr import extractive_impression, pick

    findings = "Large left pneumothorax with mediastinal shift. The heart size is normal. No effusion."
    normal = ["No acute cardiopulmonary disease.", "No acute cardiopulmonary abnormality.", "No acute disease."]
    # ROUGE alone: the normal impressions agree with each other and win.
    index, texts = pick(findings, normal, MbrSettings(samples=0))
    assert texts == normal and "pneumothorax" not in texts[index].lower()
    # The findings' acute sentence competes; with the clinical term it wins, sides kept.
    assert extractive_impression(findings) == "Large left pneumothorax with mediastinal shift."
    index, texts = pick(findings, normal, MbrSettings(samples=0, clinical=1.0, extractive=True))
    assert texts[index] == "Large left pneumothorax with mediastinal shift."
    # Normal findings: no extractive candidate, and an invented finding loses to a normal answer.
    clear = "The lungs are clear. Heart size is normal."
    assert extractive_impression(clear) is None
    index, texts = pick(clear, ["Stable cardiomegaly.", "Stable cardiomegaly.", "No acute disease."],
                        MbrSettings(samples=0, clinical=1.0, extractive=True))  # fmt: skip
    assert texts[index] == "No acute disease."


def test_clinical_utility_counts_a_dropped_side() -> None:
    from radllama.generate.mbr import consistency_flags

    findings = "Small left pleural effusion."
    assert consistency_flags(findings, "Left pleural effusion.") == 0
    assert consistency_flags(findings, "Pleural effusion.") == 1  # the side is gone
    assert consistency_flags(findings, "Right pleural effusion.") == 1  # the wrong side (the check's own flag)
    assert consistency_flags(findings, "No acute disease.") == 1  # omitted


def test_extractive_candidate_keeps_a_hedge_and_skips_a_resolved_finding() -> None:
    from radllama.generate.mbr import consistency_flags, extractive_impression, pick

    findings = (
        "Previously seen left pneumothorax is no longer visible. Cannot exclude small right effusion. "
        "Heart size is normal."
    )
    # The hedged sentence verbatim (hedge kept), the resolved one left out.
    assert extractive_impression(findings) == "Cannot exclude small right effusion."
    assert extractive_impression("Previously seen left pneumothorax is no longer visible. Lungs clear.") is None
    assert extractive_impression("Large left effusion. Possible early right lower lobe pneumonia.") == (
        "Large left effusion. Possible early right lower lobe pneumonia."
    )
    # The clinical term counts the hedge flags: dropped and asserted each cost one.
    assert consistency_flags(findings, "Cannot exclude small right effusion.") == 0
    assert consistency_flags(findings, "No acute disease.") == 1  # hedge dropped
    assert consistency_flags(findings, "Small right effusion.") == 1  # hedge asserted
    assert consistency_flags(findings, "Possible small effusion.") == 1  # the hedged finding's side is gone
    normal = ["No acute cardiopulmonary disease.", "No acute cardiopulmonary abnormality.", "No acute disease."]
    index, texts = pick(findings, normal, MbrSettings(samples=0, clinical=1.0, extractive=True))
    assert texts[index] == "Cannot exclude small right effusion."
