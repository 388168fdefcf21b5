"""`radllama generate` through the real entry point: answers, resume, and bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_serve_support import tiny_model_dir
from typer.testing import CliRunner

from radllama.cli import app
from radllama.consistency import check, warnings
from radllama.errors import RadLlamaError
from radllama.generate.impressions import generate_impressions


@pytest.fixture(scope="module")
def model() -> Path:
    return tiny_model_dir()


def radllama(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "1000"}  # keep rich from wrapping the one-line error
    return subprocess.run([sys.executable, "-m", "radllama.cli", *args], capture_output=True, text=True, env=env)


@pytest.mark.parametrize("findings", ["", "   \n\t "])
def test_empty_findings_is_a_clear_error(model: Path, findings: str) -> None:
    proc = radllama("generate", "--model", str(model), "--findings", findings)
    assert proc.returncode == 1
    assert "findings are empty" in proc.stderr and "Traceback" not in proc.stderr


def test_output_in_missing_folder_is_a_clear_error(model: Path, tmp_path: Path) -> None:
    (tmp_path / "in.jsonl").write_text(json.dumps({"id": "a", "findings": "Lungs are clear."}) + "\n")
    proc = radllama("generate", "--model", str(model), "--input", str(tmp_path / "in.jsonl"),
                    "--output", str(tmp_path / "nope" / "out.jsonl"))  # fmt: skip
    assert proc.returncode == 1 and "does not exist" in proc.stderr
    assert not (tmp_path / "nope").exists()


def test_file_mode_matches_library_and_resumes(model: Path, tmp_path: Path) -> None:
    rows = [{"id": str(i), "findings": f, "impression": "x"} for i, f in
            enumerate(["The heart is normal in size.", "Mild cardiomegaly.", "No pneumothorax."])]  # fmt: skip
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out.jsonl"
    args = ["generate", "--model", str(model), "--input", str(tmp_path / "in.jsonl"), "--output", str(out),
            "--max-new-tokens", "8"]  # fmt: skip
    first = radllama(*args)
    assert first.returncode == 0, first.stderr
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    expected = generate_impressions(str(model), None, [r["findings"] for r in rows], max_new_tokens=8)
    assert {r["id"]: r["prediction"] for r in lines} == {str(i): e for i, e in enumerate(expected)}
    # Every line carries the consistency check of its impression against its findings.
    for line in lines:
        checked = check(line["findings"], line["prediction"])
        assert {k: line[k] for k in checked} == checked
    # A crash mid-write leaves a truncated last line: the rerun redoes that case only.
    out.write_text(out.read_text()[:-10])
    again = radllama(*args)
    assert again.returncode == 0 and "1 new prediction" in again.stdout
    assert sorted(json.loads(line)["id"] for line in out.read_text().splitlines()) == ["0", "1", "2"]


def test_single_answer_warns_about_an_omitted_finding(model: Path) -> None:
    findings = "Large left pneumothorax. Heart size normal."
    proc = radllama("generate", "--model", str(model), "--findings", findings, "--max-new-tokens", "8")
    assert proc.returncode == 0, proc.stderr
    impression = proc.stdout.strip()
    expected = warnings(check(findings, impression))
    # A random tiny model does not write "pneumothorax": the omission must be on stderr, stdout the answer alone.
    assert any("Pneumothorax" in w for w in expected)
    for warning in expected:
        assert f"warning: {warning}" in " ".join(proc.stderr.split())
    assert "warning" not in proc.stdout


def invoke(*args: str) -> Exception | None:
    """The command in this process (quicker than a subprocess); returns what it raised."""
    result = CliRunner().invoke(app, list(args))
    return result.exception


@pytest.mark.parametrize(
    ("lines", "output", "message"),
    [
        ([], "out.jsonl", "has no records"),
        (["\n"], "out.jsonl", "has no records"),
        ([{"id": "a", "findings": "Lungs are clear."}, {"id": "b", "impression": "x"}], "out.jsonl",
         "in.jsonl, record 2 (id 'b'): no 'findings' text"),
        ([{"id": "a", "findings": ["Clear."]}], "out.jsonl", "in.jsonl, record 1 (id 'a'): no 'findings' text"),
        ([{"findings": "Lungs are clear."}], "out.jsonl", "in.jsonl, record 1: no 'id'"),
        ([{"id": "a", "findings": "Clear."}] * 2, "out.jsonl", "in.jsonl, record 2: id 'a' again"),
    ],
)  # fmt: skip
def test_bad_input_is_one_error_and_leaves_nothing(
    model: Path, tmp_path: Path, lines: list, output: str, message: str
) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text("".join(line if isinstance(line, str) else json.dumps(line) + "\n" for line in lines))
    before = sorted(tmp_path.rglob("*"))
    err = invoke("generate", "--model", str(model), "--input", str(src), "--output", str(tmp_path / output))
    assert isinstance(err, RadLlamaError) and message in str(err), err
    assert sorted(tmp_path.rglob("*")) == before  # no provenance file, no empty predictions file


def test_folder_as_output_is_one_line_and_leaves_nothing(model: Path, tmp_path: Path) -> None:
    (tmp_path / "in.jsonl").write_text(json.dumps({"id": "a", "findings": "Lungs are clear."}) + "\n")
    (tmp_path / "folder").mkdir()
    before = sorted(tmp_path.rglob("*"))
    proc = radllama("generate", "--model", str(model), "--input", str(tmp_path / "in.jsonl"),
                    "--output", str(tmp_path / "folder"))  # fmt: skip
    assert proc.returncode == 1 and "is a folder" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert sorted(tmp_path.rglob("*")) == before


def test_a_run_that_fails_to_start_leaves_no_provenance(tmp_path: Path) -> None:
    (tmp_path / "in.jsonl").write_text(json.dumps({"id": "a", "findings": "Lungs are clear."}) + "\n")
    not_a_model = tmp_path / "not-a-model"
    not_a_model.mkdir()
    (not_a_model / "config.json").write_text("{}")
    before = sorted(tmp_path.rglob("*"))
    err = invoke("generate", "--model", str(not_a_model), "--input", str(tmp_path / "in.jsonl"),
                 "--output", str(tmp_path / "out.jsonl"), "--backend", "transformers")  # fmt: skip
    assert err is not None and not isinstance(err, SystemExit)
    assert sorted(tmp_path.rglob("*")) == before


def test_batch_size_and_device_are_part_of_the_predictions_fingerprint(model: Path, tmp_path: Path) -> None:
    """Padding a row beside others changes its greedy answer: a file written 2 rows at a time is not
    resumed or reused by a run of 4 at a time (or on another device)."""
    from radllama.errors import RadLlamaError
    from radllama.generate.impressions import decoding_record, predictions_fingerprint
    from radllama.provenance import reuse

    split = tmp_path / "in.jsonl"
    split.write_text(json.dumps({"id": "a", "findings": "Lungs are clear."}) + "\n")

    def fingerprint(batch_size: int, device: str | None) -> dict:
        return predictions_fingerprint(split, "s", model, None, "transformers", "fp32", decoding_record(8, None),
                                       batch_size=batch_size, device=device)  # fmt: skip

    from radllama.models.loading import default_device

    out = tmp_path / "out.jsonl"
    assert reuse(out, fingerprint(2, None)) is False
    out.write_text(json.dumps({"id": "a", "prediction": "x"}) + "\n")
    assert reuse(out, fingerprint(2, default_device())) is True  # the device it resolved to
    for other in (fingerprint(4, None), fingerprint(2, "cuda:1")):
        with pytest.raises(RadLlamaError, match="backend"):
            reuse(out, other)


def test_shards_cover_the_split_once_and_merge_in_its_order(model: Path, tmp_path: Path) -> None:
    from radllama.generate.shards import in_shard

    texts = ["The heart is normal in size.", "Mild cardiomegaly.", "No pneumothorax.", "Small left effusion."]
    rows = [{"id": f"r{i}", "findings": texts[i % 4], "impression": "x"} for i in range(8)]
    assert sorted(r["id"] for k in (1, 2) for r in in_shard(rows, (k, 2))) == sorted(r["id"] for r in rows)
    split = tmp_path / "in.jsonl"
    split.write_text("".join(json.dumps(r) + "\n" for r in rows))
    parts = [tmp_path / f"part{k}.jsonl" for k in (1, 2)]
    for k, part in enumerate(parts, 1):
        args = ["generate", "--model", str(model), "--input", str(split), "--output", str(part), "--shard", f"{k}/2"]
        done = radllama(*args, "--max-new-tokens", "8")
        assert done.returncode == 0, done.stderr
    merged = tmp_path / "all.jsonl"
    alone = radllama("generate-merge", str(parts[0]), "--input", str(split), "--output", str(merged))
    assert alone.returncode == 1 and "not each of 1/2 .. 2/2" in alone.stderr and not merged.exists()
    both = radllama("generate-merge", *map(str, parts), "--input", str(split), "--output", str(merged))
    assert both.returncode == 0, both.stderr
    lines = [json.loads(line) for line in merged.read_text().splitlines()]
    assert [r["id"] for r in lines] == [r["id"] for r in rows]
    expected = generate_impressions(str(model), None, [r["findings"] for r in rows], max_new_tokens=8)
    assert [r["prediction"] for r in lines] == expected


def test_a_file_job_goes_in_chunks_with_the_same_answers(model: Path, tmp_path: Path, monkeypatch) -> None:
    """A split is worked through GENERATE_CHUNK cases at a time (bounded memory), each chunk written
    before the next is read; one row per batch decodes each case alike however the split is cut."""
    import radllama.generate.impressions as impressions
    from radllama.inference import load_model

    # r0 longest, then each shorter by the same sentence: no two prompts of the same length.
    rows = [{"id": f"r{i}", "findings": " ".join(["Mild cardiomegaly."] * (5 - i))} for i in range(5)]
    split = tmp_path / "in.jsonl"
    split.write_text("".join(json.dumps(r) + "\n" for r in rows))
    loaded = load_model(model, backend="transformers", batch_size=1)
    try:
        whole = tmp_path / "whole.jsonl"
        assert impressions.generate_file(loaded, split, whole, "tiny", max_new_tokens=8) == 5
        monkeypatch.setattr(impressions, "GENERATE_CHUNK", 2)
        chunked = tmp_path / "chunked.jsonl"
        assert impressions.generate_file(loaded, split, chunked, "tiny", max_new_tokens=8) == 5
    finally:
        loaded.backend.close()
    got = {name: [json.loads(line) for line in path.read_text().splitlines()] for name, path in
           (("whole", whole), ("chunked", chunked))}  # fmt: skip
    # Shortest prompt first within a call: one call for the whole split, three calls of at most 2 cases.
    assert [r["id"] for r in got["whole"]] == ["r4", "r3", "r2", "r1", "r0"]
    assert [r["id"] for r in got["chunked"]] == ["r1", "r0", "r3", "r2", "r4"]
    by_id = {name: {r["id"]: r["prediction"] for r in lines} for name, lines in got.items()}
    assert by_id["whole"] == by_id["chunked"]


def test_a_case_that_cannot_fit_fails_alone_and_the_job_goes_on(model: Path, tmp_path: Path) -> None:
    long = "Mild cardiomegaly with small bilateral effusions. " * 300  # fills the window, within the char limit
    rows = [{"id": "ok", "findings": "No pneumothorax."}, {"id": "long", "findings": long}]
    split, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    split.write_text("".join(json.dumps(r) + "\n" for r in rows))
    args = ["generate", "--model", str(model), "--input", str(split), "--output", str(out), "--max-new-tokens", "4"]
    proc = radllama(*args)
    assert proc.returncode == 0, proc.stderr
    lines = {r["id"]: r for r in map(json.loads, out.read_text().splitlines())}
    assert lines["ok"]["status"] == "ok"
    assert lines["long"]["status"] == "failed" and lines["long"]["prediction"] == ""
    assert "leaves no room for an answer" in lines["long"]["error"]
    again = radllama(*args)  # a rerun does not retry it: the same findings would not fit again
    assert again.returncode == 0 and "is complete" in again.stdout
    single = radllama("generate", "--model", str(model), "--findings", long)
    assert single.returncode == 1 and "leaves no room for an answer" in single.stderr
    assert "Traceback" not in single.stderr


def test_a_prompt_that_fills_the_window_loses_its_least_similar_examples(model: Path, tmp_path: Path) -> None:
    import shutil

    from radllama.generate.impressions import complete_impressions, fit_examples, prompts_and_examples
    from radllama.inference import load_model
    from radllama.io import write_jsonl
    from radllama.models.loading import RETRIEVAL_INDEX_FILE

    folder = tmp_path / "model"
    shutil.copytree(model, folder)
    # Two training reports whose impressions are each about half the context window.
    long = "Stable mild cardiomegaly without edema. " * 15
    index = [{"id": "a", "findings": "Mild cardiomegaly.", "impression": long},
             {"id": "b", "findings": "Cardiomegaly.", "impression": long}]  # fmt: skip
    write_jsonl(folder / RETRIEVAL_INDEX_FILE, index)
    loaded = load_model(folder, backend="transformers")
    try:
        findings = ["Mild cardiomegaly."]
        prompts, shown = prompts_and_examples(loaded, findings)
        ids = loaded.tokenizer(prompts, add_special_tokens=False).input_ids
        assert len(shown[0]) == 2 and len(ids[0]) >= loaded.backend.context_window  # as rendered, it cannot fit
        fit_examples(loaded, findings, shown, ids)
        assert len(shown[0]) == 1 and len(ids[0]) < loaded.backend.context_window  # the nearest one stays
        assert ids[0] == loaded.tokenizer(loaded.style.render(loaded.tokenizer, findings[0], shown[0]),
                                          add_special_tokens=False).input_ids  # fmt: skip
        (done,) = complete_impressions(loaded, findings, max_new_tokens=4)
        assert done.finish_reason in ("stop", "length") and done.prompt_tokens == len(ids[0])
    finally:
        loaded.backend.close()
