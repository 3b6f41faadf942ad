#!/usr/bin/env bash
# The GPU check in one go: the CUDA-marked tests, `make bench` on cuda, then a wider test subset
# that trains on the GPU. For a machine that has torch/lightning but maybe not hydra/omegaconf and
# no internet: WHEELS=<folder of hydra-core, omegaconf, antlr4-python3-runtime, recbole wheels>.
#   bash benchmarks/gpu_check.sh [OUT_DIR]      # logs, bench.json and bench.md go to OUT_DIR
set -u
out=${1:-outputs/gpu_check}
mkdir -p "$out"
log="$out/gpu_check.log"
say() { echo "== $* ($(date +%T))" | tee -a "$log"; }
if ! python -c "import hydra, omegaconf" 2>/dev/null; then
  : "${WHEELS:?hydra/omegaconf are missing: set WHEELS to a folder holding their wheels}"
  python -m pip install -q --no-index --no-deps --find-links "$WHEELS" \
    hydra-core omegaconf antlr4-python3-runtime recbole >>"$log" 2>&1 \
    || python -m pip install -q --break-system-packages --no-index --no-deps --find-links "$WHEELS" \
    hydra-core omegaconf antlr4-python3-runtime recbole >>"$log" 2>&1
fi
export PYTHONPATH="$PWD/src:$PWD:${PYTHONPATH:-}"
if ! python -c "import torch; assert torch.cuda.is_available()" 2>/dev/null; then
  echo "gpu_check: torch sees no CUDA device; nothing to check" | tee -a "$log"; exit 1
fi
python -c "import torch; print('device:', torch.cuda.get_device_name(), 'torch', torch.__version__)" | tee -a "$log"
say "CUDA tests"
python -m pytest -q -p no:cacheprovider -m cuda -rA tests/test_gpu.py tests/test_serve.py 2>&1 | tail -8 | tee -a "$log"
say "bench on cuda"
python -m deepm3.bench device=cuda output="$out/bench.json" >>"$log" 2>&1 && cat "$out/bench.md"
say "tests that train on the GPU"
python -m pytest -q -p no:cacheprovider tests/test_ode.py tests/test_ode_fastpath.py tests/test_baselines.py 2>&1 | tail -3 | tee -a "$log"
say "done"
