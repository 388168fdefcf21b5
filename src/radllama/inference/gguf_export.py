"""``radllama export --format gguf``: a tuned model as one GGUF file for llama.cpp and Ollama.

The adapter is merged into the base first (:func:`radllama.inference.merged.merged_weights`), then
llama.cpp's own tools do the rest: ``convert_hf_to_gguf.py`` writes the tensors, vocabulary, merges
and chat template (run by :mod:`radllama.inference.gguf_convert`, which names radllama-mini's pre-tokenizer
for it), and llama.cpp's quantiser (``llama_model_quantize`` through llama-cpp-python) makes
``q8_0`` / ``q4_k_m``. Beside the GGUF: the tokenizer, ``prompt_style.yaml`` and the retrieval
index (so ``radllama generate/serve --backend llamacpp --model DIR`` prompts it as in training), an
Ollama ``Modelfile`` whose TEMPLATE is our chat template, and ``radllama_export.json`` with the
provenance of the base and adapter.

The converter is the one of the installed llama-cpp-python's own llama.cpp: its PyPI source
release, fetched once with pip into RadLlama's cache, refused unless its sha256 is the pinned one
(``$RADLLAMA_LLAMA_CPP`` names a llama.cpp checkout instead, for machines without PyPI).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

from radllama.errors import RadLlamaError
from radllama.io import atomic_write_json, atomic_write_text, extract_member
from radllama.models.loading import RETRIEVAL_INDEX_FILE, folder_stop_ids, load_prompting
from radllama.paths import cache_dir, cache_lock
from radllama.provenance import file_digest, model_fingerprint, versions

QUANTS = ("f16", "q8_0", "q4_k_m")
INSTALL_HINT = "pip install 'radllama[llamacpp]' (builds llama-cpp-python with this machine's compiler)"
MODELFILE = "Modelfile"
GENERATION_CONFIG = "generation_config.json"
CONVERTER_FILES = ("convert_hf_to_gguf.py", "conversion", "gguf-py", "LICENSE")
# sha256 of llama-cpp-python's source release on PyPI, per version (pyproject's `llamacpp` extra pins it):
# the converter we run comes out of it, so a release that is not this one is refused before unpacking.
SDIST_SHA256 = {"0.3.36": "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e"}


def gguf_name(quant: str) -> str:
    return f"model-{quant}.gguf"


def llama_cpp_version() -> str:
    """The installed llama-cpp-python, or one line saying how to install it."""
    try:
        return metadata.version("llama-cpp-python")
    except metadata.PackageNotFoundError as exc:
        raise RadLlamaError(f"GGUF export and --backend llamacpp need llama-cpp-python: {INSTALL_HINT}") from exc


def converter_folder() -> Path:
    """A llama.cpp source folder with ``convert_hf_to_gguf.py``: ``$RADLLAMA_LLAMA_CPP``, else the
    installed llama-cpp-python's own release, unpacked once into the cache."""
    if os.environ.get("RADLLAMA_LLAMA_CPP"):
        folder = Path(os.environ["RADLLAMA_LLAMA_CPP"])
        if not (folder / "convert_hf_to_gguf.py").is_file():
            raise RadLlamaError(f"$RADLLAMA_LLAMA_CPP={folder} has no convert_hf_to_gguf.py (a llama.cpp checkout)")
        return folder
    version = llama_cpp_version()
    folder = cache_dir() / "llama.cpp" / version
    if (folder / "convert_hf_to_gguf.py").is_file():
        return folder
    from radllama.progress import console

    # Another process filling the same cache must not replace the folder while this one converts with it.
    with cache_lock(f"llama.cpp-{version}"):
        if (folder / "convert_hf_to_gguf.py").is_file():
            return folder
        status = console.status(f"fetching llama.cpp's converter (llama-cpp-python {version}, once)")
        with tempfile.TemporaryDirectory() as tmp, status:
            unpack_converter(_download_source(version, Path(tmp)), folder)
    return folder


def _download_source(version: str, into: Path) -> Path:
    """llama-cpp-python's source release (its sdist, which vendors llama.cpp), fetched with pip into ``into``
    and refused unless it is the release whose sha256 is pinned in :data:`SDIST_SHA256`."""
    expected = pinned_sha256(version)
    # pip checks the hash itself (hash-checking mode needs a requirements file) ...
    requirements = into / "llama-cpp-python.txt"
    requirements.write_text(f"llama-cpp-python=={version} --hash=sha256:{expected}\n", encoding="utf-8")
    # The sdist of this one package only: ":all:" would make pip build each of its build requirements
    # (scikit-build-core, packaging, ...) from source too, about 7 minutes on 2 cores instead of 9 s.
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--require-hashes", "--no-binary",
           "llama-cpp-python", "-r", str(requirements), "-d", str(into)]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True)
    if "DO NOT MATCH THE HASHES" in done.stderr:
        raise RadLlamaError(_mismatch(version, expected))
    archives = sorted(into.glob("*.tar.gz"))
    if done.returncode != 0 or not archives:
        why = done.stderr.strip()[-300:]
        raise RadLlamaError(f"could not fetch llama-cpp-python {version}'s source with pip ({why}); "
                            "set RADLLAMA_LLAMA_CPP to a llama.cpp checkout")  # fmt: skip
    check_source(archives[0], version)  # ... and we check again what is unpacked, whatever pip did
    return archives[0]


def pinned_sha256(version: str) -> str:
    """The pinned sha256 of llama-cpp-python ``version``'s source, or one line saying none is."""
    if version not in SDIST_SHA256:
        raise RadLlamaError(f"no pinned sha256 for llama-cpp-python {version}'s source (pinned: "
                            f"{', '.join(SDIST_SHA256)}): install one of those, or set RADLLAMA_LLAMA_CPP "
                            "to a llama.cpp checkout")  # fmt: skip
    return SDIST_SHA256[version]


def check_source(archive: Path, version: str) -> None:
    """Refuse (one line) a llama-cpp-python source archive that is not the pinned release of ``version``."""
    expected = pinned_sha256(version)
    if file_digest(archive) != expected:
        raise RadLlamaError(_mismatch(version, expected, archive))


def _mismatch(version: str, expected: str, archive: Path | None = None) -> str:
    what = archive.name if archive is not None else "the archive pip fetched"
    return (
        f"llama-cpp-python {version}'s source: {what} is not the pinned release (sha256 {expected}); refused, "
        "nothing unpacked"
    )


def unpack_converter(archive: Path, folder: Path) -> None:
    """The converter's files of the llama.cpp vendored in ``archive`` (``*/vendor/llama.cpp/...``) as
    ``folder``: complete or absent, each member checked by :func:`radllama.io.extract_member`."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=folder.parent))
    try:
        with tarfile.open(archive) as tar:
            for member in tar.getmembers():
                parts = Path(member.name).parts
                if len(parts) > 3 and parts[1:3] == ("vendor", "llama.cpp") and parts[3] in CONVERTER_FILES:
                    member.name = str(Path(*parts[3:]))
                    extract_member(tar, member, staging)
        if not (staging / "convert_hf_to_gguf.py").is_file():
            raise RadLlamaError(f"{archive.name} has no vendor/llama.cpp/convert_hf_to_gguf.py")
    except (tarfile.TarError, EOFError) as exc:  # not a tar.gz, or cut short
        shutil.rmtree(staging)
        raise RadLlamaError(f"{archive.name}: not a readable source archive ({exc})") from exc
    except BaseException:
        shutil.rmtree(staging)  # no half-unpacked folder left in the cache
        raise
    if folder.exists():
        shutil.rmtree(folder)
    staging.rename(folder)


def convert(model_dir: Path, out_file: Path, outtype: str) -> None:
    """llama.cpp's converter on a Hugging Face folder (its log is shown only when it fails)."""
    cmd = [sys.executable, "-m", "radllama.inference.gguf_convert", str(converter_folder()), "--", str(model_dir),
           "--outfile", str(out_file), "--outtype", outtype]  # fmt: skip
    # This radllama (a checkout or an install) in the converter's process.
    here = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [here, os.environ.get("PYTHONPATH")]))}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    from radllama.inference.gguf_convert import ERROR_PREFIX

    last = (done.stderr.strip().splitlines() or [""])[-1]
    if done.returncode != 0 and last.startswith(ERROR_PREFIX):  # refused by gguf_convert: its one line
        raise RadLlamaError(last.removeprefix(ERROR_PREFIX))
    if done.returncode != 0 or not out_file.is_file():
        raise RadLlamaError(f"llama.cpp's converter failed on {model_dir}: {done.stderr.strip()[-600:]}")


def quantize(source: Path, out_file: Path, quant: str) -> None:
    """llama.cpp's quantiser (``llama_model_quantize``) from an f32 GGUF to ``quant``."""
    import ctypes
    import logging

    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = {"q8_0": llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0, "q4_k_m": llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_K_M}[quant]
    params.nthread = os.cpu_count() or 1
    log = logging.getLogger("llama-cpp-python")  # where llama-cpp-python sends llama.cpp's log
    level = log.level
    log.setLevel(logging.ERROR)  # not a line per tensor
    try:
        failed = llama_cpp.llama_model_quantize(str(source).encode(), str(out_file).encode(), ctypes.byref(params))
    finally:
        log.setLevel(level)
    if failed:
        raise RadLlamaError(f"llama.cpp's quantiser failed to write {quant} from {source}")


def chat_template_pieces(style: Any, tokenizer: Any) -> tuple[str, str, str]:
    """Our chat template as three literal pieces with placeholders — a first user turn with the
    system prompt, a later user turn, an assistant answer — read off the tokenizer's own template
    by rendering marker messages (so the Ollama template is ours, not a copy written by hand)."""
    if not (style.use_chat_template and getattr(tokenizer, "chat_template", None)):
        raise RadLlamaError("this model has no chat template: an Ollama Modelfile needs one")
    sys_, user, answer = "\x01SYSTEM\x01", "\x01USER\x01", "\x01ANSWER\x01"
    first = style.render_messages(tokenizer, [{"role": "system", "content": sys_}, {"role": "user", "content": user}])
    later = style.render_messages(tokenizer, [{"role": "user", "content": user}])
    both = [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]
    answered = tokenizer.apply_chat_template(both, tokenize=False)
    if first.count(sys_) != 1 or first.count(user) != 1 or not answered.startswith(later):
        raise RadLlamaError("this model's chat template is not one turn after another: write its Modelfile by hand")
    pieces = (first, later, answered[len(later) :])
    if any("{{" in p or '"""' in p for p in pieces):
        raise RadLlamaError("this model's chat template has text an Ollama template cannot hold ('{{' or '\"\"\"')")
    return pieces


def modelfile_text(loaded: Any, gguf_file: str, stops: list[str], context_window: int, max_tokens: int = 128) -> str:
    """An Ollama Modelfile for the GGUF: our chat template as a Go template, the system prompt the
    model was trained with, its stop tokens, and greedy decoding (as ``radllama generate``)."""
    first, later, answer = chat_template_pieces(loaded.style, loaded.tokenizer)
    go = {"\x01SYSTEM\x01": "{{ $.System }}", "\x01USER\x01": "{{ .Content }}", "\x01ANSWER\x01": "{{ .Content }}"}

    def fill(piece: str) -> str:
        for marker, action in go.items():
            piece = piece.replace(marker, action)
        return piece

    # One line of actions, so that no layout whitespace enters the prompt; system messages are
    # read through $.System (Ollama's own), which goes into the first user turn as in our template.
    template = (
        '{{ $first := true }}{{ range .Messages }}{{ if eq .Role "user" }}'
        f"{{{{ if and $first $.System }}}}{fill(first)}{{{{ else }}}}{fill(later)}{{{{ end }}}}{{{{ $first = false }}}}"
        f'{{{{ else if eq .Role "assistant" }}}}{fill(answer)}{{{{ end }}}}{{{{ end }}}}'
    )
    lines = [
        "# Ollama: ollama create radllama -f Modelfile && ollama run radllama",
        "# Made by `radllama export --format gguf`; Ollama prompts are not retrieval-augmented (see docs/serving.md).",
        f"FROM ./{gguf_file}",
        f'TEMPLATE """{template}"""',
    ]
    if loaded.style.system:
        lines.append(f'SYSTEM """{loaded.style.system}"""')
    lines += [f'PARAMETER stop "{s}"' for s in stops]
    lines += [f"PARAMETER num_ctx {context_window}", f"PARAMETER num_predict {max_tokens}",
              "PARAMETER temperature 0", "PARAMETER repeat_penalty 1"]  # fmt: skip
    return "\n".join(lines) + "\n"


def export_gguf(
    model_dir: Path, adapter_dir: Path | None, out_dir: Path, quant: str = "f16", allow_other_base: bool = False
) -> Path:
    """Merge, convert, quantise; write the GGUF folder (under a temporary name, renamed when complete).
    An adapter meets its own base only, unless ``allow_other_base``."""
    from radllama.inference.merged import merged_weights
    from radllama.models.export import _finish, _fresh_tmp
    from radllama.progress import console

    if quant not in QUANTS:
        raise RadLlamaError(f"--quant must be one of {', '.join(QUANTS)}, not {quant!r}")
    llama_cpp_version()  # a missing llama-cpp-python is one line, before any merging
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    loaded = load_prompting(model_dir, adapter_dir, allow_other_base=allow_other_base)
    source = merged_weights(model_dir, Path(adapter_dir), allow_other_base) if adapter_dir is not None else model_dir
    tmp = _fresh_tmp(out_dir)
    name = gguf_name(quant)
    with console.status(f"converting to GGUF {quant} with llama.cpp"):
        if quant == "f16":
            convert(source, tmp / name, "f16")
        else:  # quantised from full precision, as llama.cpp advises
            convert(source, tmp / "full.gguf", "f32")
            quantize(tmp / "full.gguf", tmp / name, quant)
            (tmp / "full.gguf").unlink()
    loaded.tokenizer.save_pretrained(tmp)
    loaded.style.save(tmp)
    prompt_source = Path(adapter_dir) if adapter_dir is not None else model_dir
    if (prompt_source / RETRIEVAL_INDEX_FILE).is_file():
        shutil.copy2(prompt_source / RETRIEVAL_INDEX_FILE, tmp / RETRIEVAL_INDEX_FILE)
    if (source / GENERATION_CONFIG).is_file():  # its stop ids, for --backend llamacpp on this folder
        shutil.copy2(source / GENERATION_CONFIG, tmp / GENERATION_CONFIG)
    stops = [loaded.tokenizer.convert_ids_to_tokens(i) for i in folder_stop_ids(source, loaded.tokenizer)]
    window = _context_window(source, loaded.tokenizer)
    atomic_write_text(tmp / MODELFILE, modelfile_text(loaded, name, stops, window))
    from radllama.models.export import MANIFEST_FILE

    atomic_write_json(tmp / MANIFEST_FILE, {
        "kind": "gguf", "quant": quant, "gguf": {"file": name, "sha256": file_digest(tmp / name)},
        "base": str(model_dir), "adapter": str(adapter_dir) if adapter_dir else None,
        "source": model_fingerprint(model_dir, adapter_dir),
        "converter": "llama.cpp convert_hf_to_gguf.py + llama_model_quantize",
        "versions": versions("llama-cpp-python", "torch", "transformers"),
    })  # fmt: skip
    return _finish(tmp, out_dir)


def _context_window(folder: Path, tokenizer: Any) -> int:
    import json

    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    return int(config.get("max_position_embeddings") or tokenizer.model_max_length)
