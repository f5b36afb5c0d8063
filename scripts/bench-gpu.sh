#!/usr/bin/env bash
# The GPU benchmarks of docs/performance.md in one command, after scripts/test-gpu.sh has built
# build-gpu: the LM step at batch 1, 8 and 32 at a fresh and a full context, and Mimi streaming
# encode + decode, each as one JSON line under ${1:-bench-out}/.
#   MOSHI_BENCH_STEPS=N   measured LM steps per run (default 30)
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-bench-out}
mkdir -p "$out"
bin=build-gpu/moshi-rt
[ -x "$bin" ] || { echo "FAIL: $bin not built (run scripts/test-gpu.sh first)"; exit 1; }
steps=${MOSHI_BENCH_STEPS:-30}
status=0
echo "== bench lm (synthetic:moshi-7b, bf16, batch 1,8,32, fresh and full context)"
"$bin" bench lm --device cuda --model synthetic:moshi-7b --dtype bf16 --batch 1,8,32 --context fresh,full \
  --steps "$steps" --json >"$out/bench-lm.json" || status=1
cat "$out/bench-lm.json"
echo "== bench mimi (synthetic, batch 1)"
"$bin" bench mimi --device cuda --mimi synthetic --frames 100 --json >"$out/bench-mimi.json" || status=1
cat "$out/bench-mimi.json"
exit $status
