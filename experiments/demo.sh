#!/usr/bin/env bash
# `make demo`: the main job end to end on the bundled data (5,000 real MNIST digits):
# train a supernet, fit its accuracy predictor, search for an MCU, a GPU and this CPU at
# once, print the Pareto front, and export the best feasible subnet for the MCU.
# Re-running reuses what is already in runs/ (training resumes or is skipped).
set -euo pipefail
cd "$(dirname "$0")/.."
NAS=.venv/bin/nas
PY=.venv/bin/python
RUN=runs/mnist-supernet
mkdir -p runs/demo

echo "== 1. train the default supernet by progressive shrinking (about 9 minutes on 2 cores)"
$NAS supernet train experiments/mnist_supernet.yaml --resume
$NAS supernet eval --checkpoint "$RUN" --arch largest --arch smallest --random 3 --seed 0

echo "== 2. fit the accuracy predictor on 1,000 subnets measured with the supernet"
$NAS predictor fit --checkpoint "$RUN" --n 1000 --held-out 200

echo "== 3. search stm32f746 + h100-sxm + local-cpu at once (experiments/search_mnist.yaml)"
$NAS hardware list
$NAS search launch experiments/search_mnist.yaml --json | tee runs/demo/search.json
SEARCH=$($PY -c 'import json,sys; print(json.load(open("runs/demo/search.json"))["search_id"])')

echo "== 4. the Pareto front (all objectives), and the front for the MCU alone"
$NAS pareto "$SEARCH" --plot runs/demo/front.png
$NAS pareto "$SEARCH" --target stm32f746 --format json > runs/demo/front-mcu.json
$NAS pareto "$SEARCH" --target stm32f746 --where 'peak_sram_kb<=6'

echo "== 5. export the most accurate feasible subnet for the MCU: TorchScript, torch.export,"
echo "      ONNX, a state_dict, and what the targets run: int8 ONNX (the MCU), fp16 ONNX (the H100)"
BEST=$($PY -c 'import json; print(json.load(open("runs/demo/front-mcu.json"))["front"][0]["candidate"])')
$NAS export "$SEARCH" "$BEST" --out runs/demo/export --force
echo "model card: runs/demo/export/model_card.json   front plot: runs/demo/front.png"
echo "== 5b. quantization-aware fine-tuning, where post-training int8 lost more than 0.5 points"
$NAS finetune "$SEARCH" "$BEST" --epochs 2 --out runs/demo/finetune

echo "== 6. the same search in the web explorer"
echo "serve it with:   $NAS serve --db sqlite:///runs/nas.db"
echo "then open:       http://127.0.0.1:8000/#/searches/$SEARCH"
