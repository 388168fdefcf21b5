#!/usr/bin/env bash
# A short smoke run on one Python, in a throwaway venv with a cold radllama cache: install, `radllama --help`,
# a tiny random model exported to GGUF (llama.cpp's converter fetched and unpacked) and answered by both backends.
#   PYTHON=/root/.pyenv/versions/3.11.7/bin/python bash scripts/smoke.sh   # 6 min 46 s on 2 busy cores, pip cache warm
# torch==2.13.0 needs a CPU wheel for that Python: this project's machines have one for 3.11 only (PyPI's
# Linux torch wheels are CUDA builds that pull gigabytes of NVIDIA libraries).
set -euo pipefail
cd "$(dirname "$0")/.."
tmp="$(mktemp -d "${TMPDIR:-/tmp}/radllama-smoke.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
"${PYTHON:-python3}" -m venv "$tmp/venv"
py="$tmp/venv/bin/python" radllama="$tmp/venv/bin/radllama"
echo "smoke: Python $("$py" -c 'import platform; print(platform.python_version())') ($(readlink -f "$py"))"
CMAKE_ARGS="${CMAKE_ARGS:--DLLAVA_BUILD=OFF}" "$py" -m pip install -q --disable-pip-version-check \
  torch==2.13.0 -e ".[llamacpp]"
export RADLLAMA_CACHE="$tmp/cache"
"$radllama" --help >/dev/null
"$py" -c 'import sys; from radllama.train.tiny import build_tiny_model; build_tiny_model("llama", sys.argv[1])' \
  "$tmp/tiny" 2>/dev/null
"$radllama" export --model "$tmp/tiny" --out "$tmp/gguf" --format gguf --quant q8_0 2>/dev/null
ask() { "$radllama" generate --model "$1" --backend "$2" --max-new-tokens 8 \
  --findings "The heart is normal in size. The lungs are clear." 2>/dev/null | tail -n 1; }
a="$(ask "$tmp/tiny" transformers)" b="$(ask "$tmp/gguf" llamacpp)"
echo "smoke: transformers answered ${a@Q}, llama.cpp (q8_0 GGUF) ${b@Q}"
[ -n "$b" ] || { echo "smoke: no answer from the GGUF export" >&2; exit 1; }
echo "smoke: ok"
