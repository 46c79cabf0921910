#!/usr/bin/env bash
# The engine benchmark on an NVIDIA GPU, in one prepared run (under 5 minutes).
#
#     bench/gpu.sh OUT_DIR
#
# Creates .venv if needed (CUDA needs a CUDA build of torch: set TORCH_SPEC, e.g.
# TORCH_SPEC="torch==2.13.0" from an index that has CUDA wheels), prepares the default model,
# then runs bench/llm.py on CUDA (bf16, SDPA attention, the same batching loop) and writes
# OUT_DIR/results.json and OUT_DIR/bench.log.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:?usage: bench/gpu.sh OUT_DIR}"
mkdir -p "$out"
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
  .venv/bin/pip install --quiet --upgrade pip
  .venv/bin/pip install --quiet -e .
fi
.venv/bin/python - <<'PY'
import torch, sys
if not torch.cuda.is_available():
    sys.exit("bench/gpu.sh: torch sees no CUDA device (torch %s); install a CUDA build" % torch.__version__)
print("GPU:", torch.cuda.get_device_name(0), "torch", torch.__version__)
PY
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
timeout 280 .venv/bin/python bench/llm.py --engines transformers --device cuda --quantization none \
  --prompts 16 --new-tokens 128 --levels 1,4,8,16 --json-out "$out" 2>&1 | tee "$out/bench.log"
