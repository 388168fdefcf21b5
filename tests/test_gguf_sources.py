"""Where GGUF export's converter comes from: llama-cpp-python's source release only when its sha256 is the
pinned one (checked by pip and again by us), and a $RADLLAMA_LLAMA_CPP checkout without the internal we hook
refused in one line. Real files in tmp_path, real pip offline (no index, a local folder of links)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from radllama.errors import RadLlamaError
from radllama.inference import gguf_export
from radllama.inference.gguf_convert import HOOK, WORKS_WITH

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def pinned_version() -> str:
    extra = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]["optional-dependencies"]["llamacpp"]
    (version,) = [m.group(1) for r in extra if (m := re.fullmatch(r"llama-cpp-python==(\S+)", r))]
    return version


def test_the_pyproject_release_is_the_pinned_one() -> None:
    version = pinned_version()
    assert re.fullmatch(r"[0-9a-f]{64}", gguf_export.SDIST_SHA256[version])
    assert WORKS_WITH.endswith(f"llama-cpp-python {version}")


def test_an_archive_that_is_not_the_pinned_release_is_refused(tmp_path: Path) -> None:
    archive = tmp_path / f"llama_cpp_python-{pinned_version()}.tar.gz"
    archive.write_bytes(b"not the release")
    with pytest.raises(RadLlamaError, match=r"is not the pinned release \(sha256 [0-9a-f]{64}\); refused") as err:
        gguf_export.check_source(archive, pinned_version())
    assert "\n" not in str(err.value) and archive.name in str(err.value)
    with pytest.raises(RadLlamaError, match="no pinned sha256 for llama-cpp-python 0.0.1"):
        gguf_export.check_source(archive, "0.0.1")


def test_pip_refuses_a_source_with_another_hash(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """pip in hash-checking mode, offline: the only archive it can find is not the release."""
    links, into = tmp_path / "links", tmp_path / "into"
    links.mkdir(), into.mkdir()
    (links / f"llama_cpp_python-{pinned_version()}.tar.gz").write_bytes(b"not the release")
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(links))
    with pytest.raises(RadLlamaError, match="the archive pip fetched is not the pinned release") as err:
        gguf_export._download_source(pinned_version(), into)
    assert "\n" not in str(err.value) and not list(into.glob("*.tar.gz"))
    with pytest.raises(RadLlamaError, match="no pinned sha256 for llama-cpp-python 0.0.1"):
        gguf_export._download_source("0.0.1", into)  # refused before pip runs


def _checkout(root: Path, base: str | None) -> Path:
    """A llama.cpp checkout in miniature: the converter script, and conversion/base.py when given."""
    root.mkdir()
    (root / "convert_hf_to_gguf.py").write_text("raise SystemExit('the converter must not run')\n")
    if base is not None:
        (root / "conversion").mkdir()
        (root / "conversion" / "__init__.py").write_text("")
        (root / "conversion" / "base.py").write_text(base)
    return root


@pytest.mark.parametrize(
    ("base", "missing"),
    [(None, "conversion/base.py"), ("class ModelBase:\n    pass\n", HOOK),
     ("class TextModel:\n    def set_vocab(self):\n        pass\n", HOOK)],
    ids=["no-conversion-package", "no-TextModel", "no-get_vocab_base_pre"],
)  # fmt: skip
def test_a_checkout_without_the_hook_is_one_clear_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, base: str | None, missing: str
) -> None:
    checkout = _checkout(tmp_path / "llama.cpp", base)
    monkeypatch.setenv("RADLLAMA_LLAMA_CPP", str(checkout))
    with pytest.raises(RadLlamaError) as err:
        gguf_export.convert(tmp_path / "model", tmp_path / "out.gguf", "f16")
    line = str(err.value)
    assert line == (f"llama.cpp checkout {checkout} has no {missing} (radllama hooks {HOOK} to name the "
                    f"pre-tokenizer): use {WORKS_WITH}, or unset RADLLAMA_LLAMA_CPP to fetch it")  # fmt: skip
    assert not (tmp_path / "out.gguf").exists()
