#!/usr/bin/env bash
# Which supervision map helps a detector? (docs/evaluators.md)
#
#   scripts/experiment_maps.sh [WORK] [extra args for scripts/experiment_maps.py, e.g. --seeds 0,1,2 --iters 30]
#
# 1. a synth FF++ tree (10 originals, 4 manipulations, c23 + c40, true masks), seed 31;
# 2. shards of 128 px faces, 8 frames per video, with every supervision map
#    (diff@0.1, ssim, mscc, hull, focus with the bundled checkpoint, official = the true masks)
#    and the noise residual `noise` (σ by compression; the two-stream model's noise target);
# 3. efb4-fpn with tf_efficientnet_lite0 + lite0 ImageNet weights, trained with each supervision
#    (none, diff@0.1, ssim, mscc, hull, focus, official, mean:official) x seeds, on CPU;
#    tested on held-out identities (c23), c23 -> c40, and a held-out manipulation.
# Every step resumes: rerunning skips what is done. Results: WORK/table.md.
# DATA_ONLY=1 stops after step 2 (the data dir other experiments share).
set -euo pipefail
WORK=${1:-experiment_maps}
shift || true
FFMASK=${FFMASK:-ffmask}
PY=${PYTHON:-python}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

[ -f "$WORK/tree/ground_truth.json" ] || $FFMASK synth "$WORK/tree" --seed 31 --identities 10 --frames 24 --jobs 1
for c in c23 c40; do
  $FFMASK annotate ff++ "$WORK/tree" --method diff@0.1,ssim,mscc,hull,focus,official,noise --compression $c \
    --frames 8 --size 128 --videos-per-shard 2 --out "$WORK/$c"
done
[ -z "${DATA_ONLY:-}" ] || exit 0
$PY "$(dirname "$0")/experiment_maps.py" "$WORK" "$@"
