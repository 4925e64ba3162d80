#!/bin/sh
# The measured figures of bench/README.md, end to end on the embedded Fashion-MNIST:
# train a natural and a PGD-AT small CNN on the full 60k training split (preset fmnist-quick,
# 5 epochs), then the attack benchmark and the layer diagnosis on them.
# Usage: sh bench/fmnist_pipeline.sh [OUT]   (default bench/out)
set -eu
OUT=${1:-bench/out}
PY=.venv/bin/python
mkdir -p "$OUT"
for method in natural pgd-at; do
    if [ ! -f "$OUT/runs/$method/result.json" ]; then
        rm -rf "$OUT/runs/$method"
        /usr/bin/time -f "train $method: %e s" $PY -m robustlayers.cli.main train \
            --preset fmnist-quick --method "$method" --set train_size=null \
            --out "$OUT/runs/$method" --runs-root "$OUT/runs" --quiet
    fi
done
$PY bench/attacks_fmnist.py --run "$OUT/runs/pgd-at" --n-examples 1000 \
    --attacks fgsm,pgd-20,pgd-100,aa-custom --out "$OUT/attacks_fmnist.json"
$PY bench/diagnose_fmnist.py "$OUT/runs/natural" "$OUT/runs/pgd-at" --out "$OUT/diagnose_fmnist"
$PY bench/attacks_fmnist.py --run "$OUT/runs/pgd-at" --n-examples 1000 \
    --attacks aa-standard --out "$OUT/attacks_fmnist_standard.json"
