#!/usr/bin/env bash
# The GPU run, as sent to the GPU machine (H100) with `.whl` (datasets, pydantic and their missing
# dependencies as wheels) and `.device` (all-MiniLM-L6-v2 saved in fp16 to fit the 64 MiB transfer, loaded
# back as fp32 master weights; the SMS parquet) carried. Writes results under $OUT.
set -uo pipefail
OUT=${OUT:-/tmp/out}
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
rm -rf /tmp/d /tmp/runs
python3 benchmarks/train/make_version.py --src .device/sms.parquet --out /tmp/d --dataset sms_spam --version v1
PARTS=${PARTS:-"train bench"}
if [[ " $PARTS " == *" train "* ]]; then
# 1) the full training path on the GPU (defaults: bf16, TF32, batch 128, loader workers, pinned memory)
python3 benchmarks/train/train_once.py --data-dir /tmp/d --dataset sms_spam --runs-dir /tmp/runs \
  --set model='".device/minilm"' --set max_length=64 "$@" 2>&1 | grep -v "^{'loss" | tee "$OUT/train_gpu.log"
run=$(ls -d /tmp/runs/sms_spam/v1/*/ | head -1)
cp "$run/metrics.json" "$OUT/gpu_metrics.json"; cp "$run/README.md" "$OUT/gpu_card.md"; cp "$run/confusion_matrix.png" "$OUT/gpu_cm.png"
python3 -c "
import sys; sys.path.insert(0, '.')
from transformers import pipeline
clf = pipeline('text-classification', model='$run', device=0)
print('pipeline() on GPU:', clf(['WINNER! claim your free prize, call now', 'see you at lunch']))
from train.run import score_run
_, m = score_run('$run', 'v1', data_dir='/tmp/d')
print('score_run on GPU: accuracy', m['test']['accuracy'], 'macro-F1', m['test']['macro_f1'])" 2>&1 | tail -2 | tee -a "$OUT/train_gpu.log"
cp "$run/test_predictions.parquet" "$OUT/gpu_test_predictions.parquet" 2>/dev/null
fi
if [[ " $PARTS " == *" bench "* ]]; then
# 2) ours vs a plain Trainer baseline on the same data and model, after an untimed warm-up of each arm;
#    at max_length 64 (the training config) and 256 (where fixed padding costs most)
for L in 64 256; do
  python3 benchmarks/train/bench.py --data-dir /tmp/d --dataset sms_spam --model .device/minilm --epochs 3 \
    --lr 1e-4 --max-length $L --eval-steps 4 --warmup-steps 20 --out "$OUT/bench_gpu_len$L.json" 2>&1 \
    | grep '^{"arm' | tee -a "$OUT/bench_gpu.log"
done
fi
if [[ " $PARTS " == *" ablate "* ]]; then
# 3) which part of our path costs or pays on this overhead-bound model: each feature switched off in turn
python3 benchmarks/train/bench.py --data-dir /tmp/d --dataset sms_spam --model .device/minilm --epochs 3 \
  --lr 1e-4 --max-length 64 --eval-steps 4 --warmup-steps 20 --arms ours,ours+fp32,ours+w0,ours+random,baseline \
  --out "$OUT/ablate_gpu.json" 2>&1 | grep '^{"arm' | tee -a "$OUT/ablate_gpu.log"
fi
