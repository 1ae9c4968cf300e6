#!/usr/bin/env bash
# The GPU check as the lent H200 runs it (README "GPU check"): the carried wheels (.whl, from
# scripts/gpu_wheels.sh) into $WORK/site, the CUDA-only tests, then each step of `gpu_check.py run` in its own
# process under its own time limit, so that one slow step cannot eat the others' time. Everything lands in
# $OUT, merged by `gpu_check.py merge`: OUT/figures.json, OUT/chain_views.png, OUT/field.part*, OUT/log.txt.
#   bash scripts/gpu_device.sh                  # on the device, with .whl and .gpu carried
#   OUT=/tmp/x bash scripts/gpu_device.sh --tiny --prepared P   # the same sequence at tiny size on a CPU
# Time limits (seconds) by step: NERF_S, DIFFUSION_S, CHAIN_S; the total stays under the device's 10 minutes.
# Scratch folders go under WORK (default /tmp).
set -uo pipefail
cd "$(dirname "$0")/.."
: "${OUT:?OUT must name the folder for the figures}"
WORK=${WORK:-/tmp}
mkdir -p "$OUT"
exec > >(tee -a "$OUT/log.txt") 2>&1
if ls .whl/*.whl > /dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$WORK/site" .whl/*.whl || { echo "gpu_device: wheel install failed"; exit 2; }
  export PYTHONPATH="$WORK/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
PYTHON=${PYTHON:-python3}
extra=("$@")
[ ${#extra[@]} -eq 0 ] && extra=(--prepared .gpu)
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv 2>/dev/null
"$PYTHON" -c "import torch, diffusers, transformers; print('torch', torch.__version__, 'diffusers', diffusers.__version__, 'transformers', transformers.__version__, 'cuda', torch.cuda.is_available())"
status=0
if "$PYTHON" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "== CUDA-only tests $(date +%T)"
  timeout -k 5 45 "$PYTHON" -m pytest -q -p no:cacheprovider -m gpu tests/splat/test_splat_rasterize.py || status=1
fi
for pair in "nerf:${NERF_S:-130}" "diffusion:${DIFFUSION_S:-180}" "chain:${CHAIN_S:-230}"; do
  step=${pair%%:*} limit=${pair#*:}
  echo "== $step (limit ${limit} s) $(date +%T)"
  timeout -k 5 "$limit" "$PYTHON" scripts/gpu_check.py run --only "$step" --out "$OUT/$step" \
    --work "$WORK/gpu-work-$step" "${extra[@]}" || { echo "== $step: exit $?"; status=1; }
done
"$PYTHON" scripts/gpu_check.py merge "$OUT" || status=1
echo "== done $(date +%T), status $status"
exit $status
