"""Every output records what it was made from, and a rerun reuses it only when that matches:
the cache rule itself, `radllama generate`, `radllama compare` and the demo's stages."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from test_inference_backends import _random_adapter
from test_serve_support import FINDINGS, tiny_model_dir

from radllama.errors import RadLlamaError
from radllama.evaluate.compare import run_comparison
from radllama.generate.impressions import generate_impressions
from radllama.io import read_jsonl, write_jsonl
from radllama.provenance import read_record, record_path, reuse

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_the_cache_rule(tmp_path: Path) -> None:
    out = tmp_path / "preds.jsonl"
    a, b = {"base": "1", "decoding": {"mode": "greedy"}}, {"base": "2", "decoding": {"mode": "greedy"}}
    assert reuse(out, a) is False and read_record(out) == a  # nothing yet: recorded for what is made
    out.write_text('{"id": "x"}\n')
    assert reuse(out, a) is True  # same fingerprint: resume
    with pytest.raises(RadLlamaError, match="different base than this run: pass --overwrite"):
        reuse(out, b)
    assert out.read_text() == '{"id": "x"}\n'  # an error loses nothing
    assert reuse(out, b, on_change="redo") is False and not out.exists() and read_record(out) == b
    out.write_text('{"id": "y"}\n')
    record_path(out).unlink()  # made by an older version, without a record: never trusted
    with pytest.raises(RadLlamaError, match="provenance \\(none recorded\\)"):
        reuse(out, b)
    stage = tmp_path / "stage"
    assert reuse(stage, a, folder=True) is False and (stage / "provenance.json").is_file()
    (stage / "weights").write_text("w")
    assert reuse(stage, a, folder=True) is True
    assert reuse(stage, b, on_change="redo", folder=True) is False and not (stage / "weights").exists()


def radllama(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "radllama.cli", *args], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "COLUMNS": "400"})  # fmt: skip


@pytest.mark.slow
def test_generate_reuses_only_what_matches(tmp_path: Path) -> None:
    split = tmp_path / "in.jsonl"
    write_jsonl(split, [{"id": f"c{i}", "findings": f} for i, f in enumerate(FINDINGS[:4])])
    adapter = _random_adapter(tiny_model_dir(), tmp_path / "lora", seed=5)
    out = tmp_path / "out.jsonl"
    base = ["generate", "--model", str(tiny_model_dir()), "--input", str(split), "--output", str(out),
            "--max-new-tokens", "6", "--backend", "transformers", "--system", "s"]  # fmt: skip
    assert radllama(*base).returncode == 0
    plain = [r["prediction"] for r in read_jsonl(out)]

    # An interrupted run of another model into the same file: the old lines must not be kept.
    r = radllama(*base, "--adapter", str(adapter))
    assert r.returncode == 1 and "different adapter" in r.stderr and "--overwrite" in r.stderr
    assert [r["prediction"] for r in read_jsonl(out)] == plain  # nothing lost
    r = radllama(*base, "--adapter", str(adapter), "--overwrite")
    assert r.returncode == 0 and "4 new prediction(s)" in r.stdout
    fresh = tmp_path / "fresh.jsonl"  # the tuned model alone, in a new file (same process setup)
    assert radllama(*[str(fresh) if a == str(out) else a for a in base], "--adapter", str(adapter)).returncode == 0
    tuned = [r["prediction"] for r in read_jsonl(fresh)]
    assert [r["prediction"] for r in read_jsonl(out)] == tuned != plain

    r = radllama(*base[:-4], "--max-new-tokens", "9", "--backend", "transformers", "--system", "s", "--adapter",
                 str(adapter))  # fmt: skip
    assert r.returncode == 1 and "different decoding" in r.stderr
    write_jsonl(split, [{"id": f"c{i}", "findings": f} for i, f in enumerate(FINDINGS[1:5])])  # edited split
    r = radllama(*base, "--adapter", str(adapter))
    assert r.returncode == 1 and "different split" in r.stderr
    r = radllama(*base, "--adapter", str(adapter), "--backend", "vllm")
    assert r.returncode == 1 and "backend" in r.stderr


def _compare_config(tmp_path: Path, adapter: Path) -> Path:
    records = [{"id": f"t{i}", "findings": f, "impression": "No acute disease."} for i, f in enumerate(FINDINGS[:5])]
    write_jsonl(tmp_path / "test.jsonl", records)
    config = {"split": {"test": str(tmp_path / "test.jsonl")}, "bootstrap": {"resamples": 20, "seed": 0},
              "systems": [{"name": "tuned", "kind": "local", "backend": "transformers", "max_new_tokens": 6,
                           "model": {"path": str(tiny_model_dir()), "adapter": str(adapter)}}]}  # fmt: skip
    (tmp_path / "compare.yaml").write_text(yaml.safe_dump(config))
    return tmp_path / "compare.yaml"


@pytest.mark.slow
def test_compare_with_a_new_adapter_stops_or_redoes_never_mixes(tmp_path: Path) -> None:
    """The bug of issue #14: a quick run's predictions kept at the head of the full run's file."""
    lora = tmp_path / "lora"
    config = _compare_config(tmp_path, _random_adapter(tiny_model_dir(), lora, seed=1))
    run_comparison(config, out_dir=tmp_path / "out", limit=2)  # the "quick" run: 2 cases
    preds = tmp_path / "out" / "predictions" / "tuned.jsonl"
    assert len(read_jsonl(preds)) == 2
    run_comparison(config, out_dir=tmp_path / "out")  # same model, more cases: resumes (2 kept, 3 new)
    assert len(read_jsonl(preds)) == 5

    # The adapter is retrained (new contents, same folder): resuming would mix two models.
    import shutil

    shutil.rmtree(lora)
    _random_adapter(tiny_model_dir(), lora, seed=2)
    with pytest.raises(RadLlamaError, match="different adapter"):
        run_comparison(config, out_dir=tmp_path / "out")
    run_comparison(config, out_dir=tmp_path / "out", on_change="redo")
    expected = generate_impressions(str(tiny_model_dir()), str(lora), FINDINGS[:5], max_new_tokens=6)
    assert [r["prediction"] for r in read_jsonl(preds)] == expected
    record = json.loads(record_path(preds).read_text())
    assert record["decoding"] == {"mode": "greedy", "max_new_tokens": 6, "stop": []}
    assert record["backend"]["name"] == "transformers" and record["adapter"]
