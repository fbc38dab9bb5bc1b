#!/usr/bin/env bash
# The GPU table of docs/performance.md: real-size MusicGen small/medium/large, Stable Audio 3 Small and a Medium-sized
# DiT, ACE-Step 1.5 turbo, random weights (nothing downloaded), one GPU, well under 8 minutes (bench/gpu_rows.py).
#
# The GPU image has torch and transformers but not diffusers; carry its wheel, made on a machine with pip:
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform any -d .whl diffusers==0.42.1
# then run, on the GPU machine, from the repository's root (the device tool: carry .whl):
#   bash bench/gpu.sh            # prints the table and writes $OUT/gpu.md (or ./gpu.md)
# Without the wheel the diffusion rows say they were not run; the MusicGen rows still are.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
PYTHONUNBUFFERED=1 timeout 470 python3 bench/gpu_rows.py --device cuda --out "${OUT:-.}/gpu.md" "$@"
