#!/usr/bin/env bash
# `make demo`: the main job end to end on the bundled data (5,000 real MNIST digits):
# train a supernet, fit its accuracy predictor, search for an MCU, a GPU and this CPU at
# once, print the top of the Pareto front (the whole front goes to a CSV), and export the
# best feasible subnet for the MCU.
# Re-running reuses what is already in runs/ (training resumes or is skipped).
# `--quick` (`make demo-quick`): the same steps on a shorter training schedule and 300
# predictor archs instead of 1,000, in runs/mnist-supernet-quick and runs/demo-quick.
set -euo pipefail
cd "$(dirname "$0")/.."
NAS=.venv/bin/nas
PY=.venv/bin/python
if [ "${1:-}" = "--quick" ]; then
  TRAIN_CONFIG=experiments/mnist_supernet_quick.yaml RUN=runs/mnist-supernet-quick
  DEMO=runs/demo-quick PREDICTOR_ARCHS=300 HELD_OUT=60
else
  TRAIN_CONFIG=experiments/mnist_supernet.yaml RUN=runs/mnist-supernet
  DEMO=runs/demo PREDICTOR_ARCHS=1000 HELD_OUT=200
fi
mkdir -p "$DEMO"
# the search config names the default run's files: point a copy at this run's
sed "s#runs/mnist-supernet/#$RUN/#" experiments/search_mnist.yaml > "$DEMO/search.yaml"

echo "== 1. train the supernet by progressive shrinking ($TRAIN_CONFIG)"
$NAS supernet train "$TRAIN_CONFIG" --resume
$NAS supernet eval --checkpoint "$RUN" --arch largest --arch smallest --random 3 --seed 0

# one single-thread Ray actor per core (up to 8) measures them: on a small CPU, processes
# scale where a second intra-op thread barely helps; on one core, this process measures
CORES=$(nproc)
WORKERS=$(( CORES > 8 ? 8 : (CORES > 1 ? CORES : 0) ))
echo "== 2. fit the accuracy predictor on $PREDICTOR_ARCHS subnets measured with the supernet"
echo "      (by $WORKERS single-thread Ray actors; 0: in this process)"
# --force: a rerun refits over the predictor.pt of the last run (fit refuses to replace one
# without it, as searches record its SHA-256); the measurements in $RUN are reused, so the
# refit takes seconds, and this demo launches a new search each run rather than resuming one
$NAS predictor fit --checkpoint "$RUN" --n "$PREDICTOR_ARCHS" --held-out "$HELD_OUT" \
  --workers "$WORKERS" --force

echo "== 3. search stm32f746 + h100-sxm + local-cpu at once ($DEMO/search.yaml)"
$NAS hardware list
$NAS search launch "$DEMO/search.yaml" --json | tee "$DEMO/search.json"
SEARCH=$($PY -c 'import json,sys; print(json.load(open(sys.argv[1]))["search_id"])' "$DEMO/search.json")

echo "== 4. the Pareto front (all objectives), and the front for the MCU alone: the top 10"
echo "      rows of each (a front holds hundreds), the whole front as CSV"
$NAS pareto "$SEARCH" --format csv > "$DEMO/front.csv"
$NAS pareto "$SEARCH" --plot "$DEMO/front.png" --top 10
echo "the whole front: $(( $(wc -l < "$DEMO/front.csv") - 1 )) candidates in $DEMO/front.csv"
$NAS pareto "$SEARCH" --target stm32f746 --format json > "$DEMO/front-mcu.json"
$NAS pareto "$SEARCH" --target stm32f746 --where 'peak_sram_kb<=6' --top 10

echo "== 5. export the most accurate feasible subnet for the MCU: TorchScript, torch.export,"
echo "      ONNX, a state_dict, and what the targets run: int8 ONNX (the MCU), fp16 ONNX (the H100)"
BEST=$($PY -c 'import json,sys; print(json.load(open(sys.argv[1]))["front"][0]["candidate"])' "$DEMO/front-mcu.json")
$NAS export "$SEARCH" "$BEST" --out "$DEMO/export" --force
echo "model card: $DEMO/export/model_card.json   front plot: $DEMO/front.png"
echo "== 5b. quantization-aware fine-tuning, where post-training int8 lost more than 0.5 points"
$NAS finetune "$SEARCH" "$BEST" --epochs 2 --out "$DEMO/finetune"

echo "== 6. the same search in the web explorer"
echo "serve it with:   $NAS serve --db sqlite:///runs/nas.db"
echo "then open:       http://127.0.0.1:8000/#/searches/$SEARCH"
