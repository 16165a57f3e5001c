#!/usr/bin/env bash
# `make demo`: the main job end to end on the bundled defaults.
# At this stage of the project: the search spaces (list, sample, describe).
set -euo pipefail
cd "$(dirname "$0")/.."
NAS=.venv/bin/nas
mkdir -p runs/demo

echo "== search-space presets"
$NAS space list

echo "== three random archs of the MNIST space (seed 0)"
$NAS space sample --space mnist-mbv3 --n 3 --seed 0 | tee runs/demo/archs.jsonl

echo "== the first of them, layer by layer"
$NAS space describe --space mnist-mbv3 --arch "$(head -n 1 runs/demo/archs.jsonl)"

echo "== MobileNetV2-1.0 is an arch of the MCU space (3.50M params, 300.8M MACs)"
$NAS space describe --space mcu-mbv2 \
  --arch '{"ks":[3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3],"e":[6,6,6,6,6,6,6,6,6,6,6,6,6,6,6,6,6,6,6,6,6],"d":[2,3,4,3,3,1],"w":1.0,"r":224}' \
  | tail -n 2
