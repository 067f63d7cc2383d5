#!/usr/bin/env bash
# The outcome table on a GPU machine (one H100/H200), in under 8 minutes: every arm × 3 seeds for TREC and
# SMS at 10 % flips, then — while time is left — raw / pipeline / fix at 5 % and 20 % flips.
# Prepared HERE by device_prepare.sh (.device/outcome: published versions, truth, fp16 model, wheels), and
# run THERE from the repository root with `.device/outcome` carried:
#     bash benchmarks/outcome/device_run.sh          # results: $OUT/outcome_gpu.tar.gz and the log
# Same budget as the CPU table (1 epoch, lr 2e-4, batch 32, max_length 64, fp32, seeds 1 2 3); the base
# model is the same all-MiniLM-L6-v2, but stored in fp16 (rounded weights; loaded as fp32), so GPU and CPU
# figures are not seed-for-seed identical. Runs go 4 at a time (tiny model: the card is mostly idle).
set -uo pipefail
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
T0=$(date +%s)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
  .device/outcome/whl/*.whl || { echo "wheel install failed"; exit 1; }
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -c "import pyarrow, datasets, pydantic, transformers, torch; print('pyarrow', pyarrow.__version__, 'datasets', \
datasets.__version__, 'transformers', transformers.__version__, 'torch', torch.__version__)" 2>&1 | tee -a "$OUT/gpu.txt" \
  || { echo "imports failed: see above"; exit 1; }
python3 -m pipeline.cli train --help >/dev/null || { echo "sftpipe train does not import here"; exit 1; }

rm -rf /tmp/ow && cp -r .device/outcome/work /tmp/ow
MODEL=$PWD/.device/outcome/minilm
COMMON=(--train-only --work /tmp/ow --model "$MODEL" --jobs 4 --seeds 1 2 3)
python3 benchmarks/outcome/run.py "${COMMON[@]}" --datasets trec sms --flip-rates 0.1 \
  --arms raw pipeline clean pipeline-s98 proto-fix proto-fix-nodrop 2>&1 | tee "$OUT/outcome_gpu.log"
left=$(( 420 - ($(date +%s) - T0) ))
if (( left > 60 )); then
  # other flip rates, as far as time allows (results are cached per run, so a cut-off run loses only itself)
  timeout "$left" python3 benchmarks/outcome/run.py "${COMMON[@]}" --datasets trec sms --flip-rates 0.05 0.2 \
    --arms raw pipeline clean proto-fix 2>&1 | tee -a "$OUT/outcome_gpu.log"
fi
tar czf "$OUT/outcome_gpu.tar.gz" -C /tmp/ow reports results
echo "done in $(( $(date +%s) - T0 )) s"
