#!/usr/bin/env bash
# The generative training benchmark on a GPU machine (H100 / H200), NOT yet run: no GPU was lent when it was
# written. Meant to finish in about 5 minutes; results under $OUT.
#
# What the GPU box needs, as for device_run.sh (it has torch and transformers, no network):
#   .whl/      wheels of what it lacks (datasets, pydantic and their missing dependencies); rouge-score and
#              sacrebleu too for the `train` part (it scores generated answers), e.g. on this machine:
#              pip download -d .whl --only-binary=:all: rouge-score sacrebleu absl-py nltk portalocker tabulate
#   .device/minilm/   all-MiniLM-L6-v2 (the bundled default's folder; device_run.sh carried an fp16 copy to fit
#              the 64 MiB transfer: training loads it back as fp32 master weights)
# and the repository itself (data/samples/alpaca_en/ is tracked: the version is built from it here).
#
#   bench   benchmarks/train/gen_bench.py: our path against a plain Trainer (every example padded to max_length,
#           random order, fp32, no packing), same model, examples, seed, batch and steps, each arm in its own
#           process after 5 untimed steps: input tokens/s, peak GPU memory, last loss. Arms: the 110M
#           config-built decoder (Llama shape, MiniLM tokenizer) as ours / ours+packing / ours+checkpointing /
#           baseline, and the bert2bert default as ours / baseline. Batch 16, max_length 512, 40 timed steps.
#   train   the full `sftpipe train` path (train_once.py) on the 110M decoder: bf16, TF32, batch size found
#           by auto_find_batch_size, 60 steps, scoring (left-padded greedy generation on the GPU) on 32 rows;
#           then pipeline("text-generation", model=RUN_DIR, device=0) answers a question.
#
#   PARTS="bench train" bash benchmarks/train/device_gen_bench.sh      (the default; PARTS=bench for the pair)
set -uo pipefail
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
fi
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
MINILM=${MINILM:-.device/minilm}
python3 -c "import torch, transformers, datasets, pydantic; print('torch', torch.__version__, 'transformers',
transformers.__version__, 'cuda', torch.cuda.is_available())" 2>&1 | tee "$OUT/versions.txt" || exit 1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
uptime | tee "$OUT/load.txt"
[[ -f "$MINILM/config.json" ]] || { echo "no MiniLM folder at $MINILM (see this script's header)"; exit 1; }

rm -rf /tmp/gd /tmp/gruns /tmp/sftpipe-gen-bench
python3 benchmarks/train/make_gen_version.py --out /tmp/gd --dataset alpaca_en --version v1 | tee "$OUT/version.txt"
PARTS=${PARTS:-"bench train"}
if [[ " $PARTS " == *" bench "* ]]; then
  timeout 300 python3 benchmarks/train/gen_bench.py --data-dir /tmp/gd --dataset alpaca_en --minilm "$MINILM" \
    --batch-size 16 --max-length 512 --steps 40 --warmup-steps 5 --work /tmp/sftpipe-gen-bench \
    --out "$OUT/gen_bench_gpu.json" 2>&1 | grep -v "^Writing model" | tee "$OUT/gen_bench_gpu.log"
fi
if [[ " $PARTS " == *" train "* ]]; then
  DECODER=/tmp/sftpipe-gen-bench/decoder-110m
  [[ -f $DECODER/config.json ]] || python3 -c "
import sys; sys.path.insert(0, 'benchmarks/train')
from pathlib import Path; from gen_bench import build_decoder, DECODER
print(build_decoder(Path('$DECODER'), '$MINILM', DECODER), 'parameters')"
  timeout 180 python3 benchmarks/train/train_once.py --data-dir /tmp/gd --dataset alpaca_en --runs-dir /tmp/gruns \
    --set model="\"$DECODER\"" --set max_steps=60 --set max_length=512 --set max_eval_samples=32 \
    --set max_new_tokens=64 --set early_stopping_patience=null --set learning_rate=3e-4 2>&1 \
    | grep -v "^{'loss" | tee "$OUT/train_gpu.log"
  run=$(ls -d /tmp/gruns/alpaca_en/v1/*/ 2>/dev/null | head -1)
  if [[ -n $run ]]; then
    cp "$run/metrics.json" "$OUT/gen_gpu_metrics.json"; cp "$run/README.md" "$OUT/gen_gpu_card.md"
    cp "$run/test_predictions.parquet" "$OUT/gen_gpu_test_predictions.parquet"
    python3 -c "
from transformers import pipeline
chat = pipeline('text-generation', model='$run', device=0)
out = chat([{'role': 'user', 'content': 'Give three tips for staying healthy.'}], max_new_tokens=32, do_sample=False)
print('pipeline() on GPU:', repr(out[0]['generated_text'][-1]['content']))" 2>&1 | tail -1 | tee -a "$OUT/train_gpu.log"
  fi
fi
