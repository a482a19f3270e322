#!/usr/bin/env bash
# The CUDA checks, as one script for a short lease of a GPU machine.
#
#     bash benchmarks/cuda_checks.sh OUT_DIR [TRAIN_BASE_SECONDS]
#
# Runs the suite's CUDA tests, then, each on the GPU and on this machine's CPU in the same
# run: sampling throughput of the Shapes model and of a tiny random diffusers pipeline
# (float32, float16, bfloat16), the Shapes training preset's throughput (benchmarks/
# overhead.py), Noise PPO at real sizes in bfloat16 (benchmarks/real_sizes.py: SD-Turbo at
# 512 px, SDXL-Turbo and FLUX.1-schnell at full depth at 1024, random weights), and the
# default `noiseppo shapes train-base` for at most TRAIN_BASE_SECONDS (default 240). Every
# part runs even if an earlier one fails; the logs go to OUT_DIR. Expects the project
# importable (pip install --no-deps . where the machine already has torch, diffusers and
# transformers). The last line printed is one JSON object with the figures.
set -u
if [[ ${1:-} == -h || ${1:-} == --help ]]; then  # not a folder named --help
    echo "usage: bash benchmarks/cuda_checks.sh OUT_DIR [TRAIN_BASE_SECONDS]"
    awk 'NR > 1 && !/^#/ {exit} NR > 1 {sub(/^# ?/, ""); print}' "$0"
    exit 0
fi
out=${1:?usage: cuda_checks.sh OUT_DIR [TRAIN_BASE_SECONDS]}
train_seconds=${2:-240}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
py=${PYTHON:-python3}
status() { echo "== $1: exit $2" | tee -a "$out/status.txt"; }

{
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    $py -c "import torch, diffusers, transformers; print(torch.__version__, diffusers.__version__, transformers.__version__)"
    nproc
} 2>&1 | tee "$out/status.txt"

$py -m pytest -q -rs -k cuda tests/test_backend_shapes.py tests/test_diffusers_backend.py tests/test_train_base.py \
    2>&1 | tee "$out/pytest.log"
status pytest "${PIPESTATUS[0]}"

for spec in "cpu float32" "cuda float32" "cuda float16" "cuda bfloat16"; do
    set -- $spec
    $py benchmarks/sampling.py --device "$1" --dtype "$2" --repeats 5 2>&1 | tee -a "$out/bench.log" | tail -1 >>"$out/sampling.jsonl"
    status "shapes sampling $spec" "${PIPESTATUS[0]}"
done

# A tiny random SD pipeline (the test suite's), saved with save_pretrained and loaded by path.
$py -c "import sys; sys.path.insert(0, '.'); from pathlib import Path; from tests.tiny_models import tiny_sd_pipeline; \
print(tiny_sd_pipeline(Path('/tmp/tiny-sd')))" >>"$out/bench.log" 2>&1
for spec in "cpu float32" "cuda float32" "cuda float16" "cuda bfloat16"; do
    set -- $spec
    $py benchmarks/sampling.py --backend diffusers --model /tmp/tiny-sd/pipeline --prompts animals \
        --scheduler default --device "$1" --dtype "$2" --repeats 5 2>&1 | tee -a "$out/bench.log" | tail -1 >>"$out/sampling.jsonl"
    status "diffusers sampling $spec" "${PIPESTATUS[0]}"
done

$py benchmarks/overhead.py --device cpu --repeats 3 2>&1 | tee -a "$out/bench.log" | tail -1 >>"$out/overhead.jsonl"
status "overhead cpu" "${PIPESTATUS[0]}"
$py benchmarks/overhead.py --device cuda --repeats 10 2>&1 | tee -a "$out/bench.log" | tail -1 >>"$out/overhead.jsonl"
status "overhead cuda" "${PIPESTATUS[0]}"

# Real sizes (issue 27): random weights in the real architectures at full size, bfloat16, 2 prompts x 4
# samples per iteration, each model saved, measured and deleted in turn (disk); FLUX.1-schnell at full depth.
for spec in "sd-turbo 512 1" "sdxl-turbo 1024 1" "flux-schnell 1024 4"; do
    set -- $spec
    $py benchmarks/real_sizes.py --models "$1" --resolution "$2" --steps "$3" --device cuda --dtype bfloat16 \
        --prompts-per-iteration 2 --samples-per-prompt 4 --repeats 3 --full-depth --clean --work /tmp/real-sizes \
        2>&1 | tee -a "$out/bench.log" | tail -1 >>"$out/real_sizes.jsonl"
    status "real sizes $1 cuda bfloat16" "${PIPESTATUS[0]}"
done

start=$(date +%s)
timeout "$train_seconds" noiseppo shapes train-base --out /tmp/base-cuda --device cuda >"$out/train_base.log" 2>&1
status "train-base cuda (timeout ${train_seconds}s)" $?
echo "train-base wall: $(($(date +%s) - start)) s" | tee -a "$out/status.txt"
cp /tmp/base-cuda/metrics.jsonl "$out/train_base_metrics.jsonl" 2>/dev/null
[ -d /tmp/base-cuda/model ] && tar -C /tmp/base-cuda -cf "$out/train_base_model.tar" model

$py - "$out" <<'EOF'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
def rows(name):
    p = out / name
    return [json.loads(l) for l in p.read_text().splitlines() if l.startswith("{")] if p.exists() else []
metrics = rows("train_base_metrics.jsonl")
print(json.dumps({
    "sampling": rows("sampling.jsonl"),
    "overhead": rows("overhead.jsonl"),
    "real_sizes": rows("real_sizes.jsonl"),
    "train_base_steps": metrics[-1]["step"] if metrics else 0,
    "train_base_elapsed_s": metrics[-1]["elapsed_s"] if metrics else None,
    "train_base_evals": [{k: r[k] for k in ("step", "eval_correct")} for r in metrics if "eval_correct" in r],
}))
EOF
