#!/usr/bin/env bash
# `make demo-gan`: the Anycost GAN job end to end on the bundled digits: train the elastic
# generator, measure its sub-generators, search for the best domain FID under an MCU's and a
# GPU's limits, print the front, and export the best feasible sub-generator.
# Re-running reuses what is already in runs/ (training resumes or is skipped).
set -euo pipefail
cd "$(dirname "$0")/.."
NAS=.venv/bin/nas
PY=.venv/bin/python
RUN=runs/mnist-gan
mkdir -p runs/demo-gan

echo "== 1. train the Anycost generator (about 17 minutes on 2 cores)"
$NAS gan train experiments/mnist_gan.yaml --resume
$NAS gan eval -c "$RUN"

echo "== 2. search stm32h743 + h100-sxm for the lowest domain FID (experiments/search_gan.yaml)"
$NAS search launch experiments/search_gan.yaml --json | tee runs/demo-gan/search.json
SEARCH=$($PY -c 'import json; print(json.load(open("runs/demo-gan/search.json"))["search_id"])')

echo "== 3. the Pareto front: domain FID against MCU latency"
$NAS pareto "$SEARCH" --plot runs/demo-gan/front.png --format json > runs/demo-gan/front.json
$NAS pareto "$SEARCH"

echo "== 4. export the best feasible sub-generator (TorchScript + ONNX, latent -> image)"
BEST=$($PY -c 'import json; print(json.load(open("runs/demo-gan/front.json"))["front"][0]["candidate"])')
$NAS export "$SEARCH" "$BEST" --format torchscript,onnx --out runs/demo-gan/export
echo "model card: runs/demo-gan/export/model_card.json  samples: runs/demo-gan/export/samples.png"
