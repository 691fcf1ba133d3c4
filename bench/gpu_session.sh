#!/usr/bin/env bash
# The GPU checks of the scale-out issue in one command, for a session lent a GPU (device tool).
#
# Here, on the CPU machine, once per session (the GPU image has torch but not these packages,
# and the real clips in ../shared/data do not travel):
#   bash bench/gpu_session.sh --prepare
# Then one device call (about 6-8 minutes; everything it prints also lands in $OUT/*.txt):
#   run(command="bash bench/gpu_session.sh", carry=[".whl", ".gpu_data"], timeout_s=560)
# Copy the tables into bench/RESULTS.md with the device line printed at the top.
set -uo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = "--prepare" ]; then
  grep -qx '/.gpu_data/' .git/info/exclude 2>/dev/null || echo '/.gpu_data/' >> .git/info/exclude
  mkdir -p .whl .gpu_data
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d .whl \
    open-clip-torch==3.3.0 ftfy wcwidth av==18.1.0
  cp -r "${HPNET_TEST_DATA:-../shared/data}/hmdb51_mini" .gpu_data/
  du -sh .whl .gpu_data
  exit 0
fi

OUT="${OUT:-/tmp/hpnet-gpu}"
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH="/tmp/site:$PWD" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 YOLO_OFFLINE=1
export PYTHONWARNINGS=ignore HPNET_TEST_DATA="$PWD/.gpu_data"

step() {  # name, then the command
  local name="$1"
  shift
  echo "=== $name: $*"
  timeout 150 "$@" 2>&1 | tee "$OUT/$name.txt"
}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/device.txt"
python3 -c 'import torch; print("torch", torch.__version__, torch.cuda.get_device_name())' \
  | tee -a "$OUT/device.txt"
base=(--size base --patch 16 --frames 16 --img 224 --device cuda --steps 10 --warmup 3)
step train_step_b8 python3 bench/train_step.py "${base[@]}" --batch 8
step train_step_b16 python3 bench/train_step.py "${base[@]}" --batch 16
step train_step_b16_compile python3 bench/train_step.py "${base[@]}" --batch 16 --compile
# The loader's clips/s per worker count, to hold against the step's clips/s above (PyAV: the GPU
# image has neither torchcodec nor a system FFmpeg for it).
step loader python3 bench/decode.py --data .gpu_data/hmdb51_mini --repeats 3 --loader-passes 20 --workers 0,4,8,12
# The CUDA-only tests that CI (no GPU) skips.
step gpu_tests python3 -m pytest -q -m gpu -p no:cacheprovider tests
