#!/usr/bin/env bash
# The GPU check in one go: the CUDA-marked tests, `make bench` on cuda, then the model tests with
# their tiny training runs on the GPU (DEEPM3_TEST_ACCELERATOR=gpu; each run checks that its
# checkpoint's weights are on CUDA). For a machine that has torch/lightning but maybe not
# hydra/omegaconf and no internet: WHEELS=<folder of hydra-core, omegaconf, antlr4-python3-runtime,
# recbole wheels>.
#   bash benchmarks/gpu_check.sh [OUT_DIR]      # logs, bench.json and bench.md go to OUT_DIR
# Every stage runs whatever the others did; each writes its whole output to OUT_DIR/<stage>.log
# (plain files, no pipes or process substitution between a command and its exit status), and
# the script exits non-zero if there is no CUDA device or if any stage failed.
# `source benchmarks/gpu_check.sh` defines the functions without running anything (the tests do).
set -euo pipefail

out=outputs/gpu_check
log=$out/gpu_check.log
failed=()

say() { echo "== $* ($(date +%T))" | tee -a "$log"; }

# start_log DIR: where the stage logs and the summary log go.
start_log() {
  out=$1
  log=$out/gpu_check.log
  failed=()
  mkdir -p "$out"
  : >"$log"
}

# run_stage NAME COMMAND [ARG...]: run COMMAND with its output in $out/NAME.log, show its tail,
# record its exit status in the summary log and remember a failure. Never stops the script.
run_stage() {
  local name=$1 status=0
  shift
  say "$name"
  "$@" >"$out/$name.log" 2>&1 || status=$?
  tail -n 8 "$out/$name.log" | tee -a "$log"
  echo "-- $name: exit status $status" | tee -a "$log"
  if [ "$status" -ne 0 ]; then
    failed+=("$name")
  fi
  return 0
}

# finish: exit 1 naming the failed stages, else 0.
finish() {
  if [ "${#failed[@]}" -gt 0 ]; then
    say "FAILED: ${failed[*]} (logs in $out)"
    exit 1
  fi
  say "all stages passed"
  exit 0
}

# (a function run in `||` context has errexit off: chain with && so a failed bench is the status)
bench_on_cuda() {
  python -m deepm3.bench device=cuda output="$out/bench.json" && cat "$out/bench.md"
}

main() {
  start_log "${1:-outputs/gpu_check}"
  if ! python -c "import hydra, omegaconf" 2>/dev/null; then
    : "${WHEELS:?hydra/omegaconf are missing: set WHEELS to a folder holding their wheels}"
    python -m pip install -q --no-index --no-deps --find-links "$WHEELS" \
      hydra-core omegaconf antlr4-python3-runtime recbole >>"$log" 2>&1 \
      || python -m pip install -q --break-system-packages --no-index --no-deps --find-links "$WHEELS" \
      hydra-core omegaconf antlr4-python3-runtime recbole >>"$log" 2>&1
  fi
  export PYTHONPATH="$PWD/src:$PWD:${PYTHONPATH:-}"
  if ! python -c "import torch; assert torch.cuda.is_available()" 2>/dev/null; then
    echo "gpu_check: torch sees no CUDA device; nothing to check" | tee -a "$log"
    exit 1
  fi
  python -c "import torch; print('device:', torch.cuda.get_device_name(), 'torch', torch.__version__)" | tee -a "$log"
  run_stage cuda_tests python -m pytest -q -p no:cacheprovider -m cuda -rA tests/test_gpu.py tests/test_cuda_graphs.py tests/test_serve.py
  run_stage bench_cuda bench_on_cuda
  run_stage gpu_training env DEEPM3_TEST_ACCELERATOR=gpu python -m pytest -q -p no:cacheprovider -rs \
    tests/test_ode.py tests/test_ode_fastpath.py tests/test_baselines.py tests/test_baseline_references.py
  finish
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  main "$@"
fi
