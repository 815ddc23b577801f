#!/usr/bin/env bash
# Every benchmark on one GPU in one go (meant to take under 5 minutes on an H200): ours vs
# the peers as ratios (PyTorch training, foolbox and torchattacks PGD, torchattacks
# AutoAttack, MiniSom, Monte Carlo, a Python loop, float32 vs bfloat16), and each run's
# peak device memory.
#
# Install once, on a machine with internet (the script itself installs nothing):
#   pip install -e '.[bench]' && pip install --no-deps torchattacks
#   pip install -U 'jax[cuda12]'   # on the GPU machine: JAX's CUDA build (or jax[cuda13])
# A GPU machine without internet: download those wheels elsewhere and set WHEELS=DIR; the
# script then installs them with `pip install --no-index --no-deps` (nothing from the net).
#
# Usage, from the checkout root:
#   bash benchmarks/device.sh [--quick] [--only=NAME,...] [LOGDIR]
# --quick (or QUICK=1): tiny sizes, to check the script end to end on a CPU (about 7
# minutes on a busy 2-core machine); the figures then mean nothing. LOGDIR (default
# /tmp/bench_device) keeps each benchmark's full output, NAME.log. --only runs the named
# ones (train, pgd, autoattack, som, analytic, propagate, weights, precision).
# PYTHON picks the interpreter (default python3). The PyTorch peers (train, pgd, autoattack)
# run on the GPU when PyTorch sees one (each script's --torch-device, default cuda if
# torch.cuda.is_available(), else cpu; the header says which); MiniSom (numpy) and the
# authors' PyTorch moments code (analytic, float64) run on the CPU.
set -uo pipefail

quick=${QUICK:-0}
only=
logdir=/tmp/bench_device
for arg in "$@"; do
  case $arg in
    --quick) quick=1 ;;
    --only=*) only=,${arg#--only=}, ;;
    -h|--help) awk 'NR > 1 && !/^#/ {exit} NR > 1 {print}' "$0"; exit 0 ;;
    -*) echo "unknown option $arg" >&2; exit 2 ;;
    *) logdir=$arg ;;
  esac
done
cd "$(dirname "$0")/.."
py=${PYTHON:-python3}
mkdir -p "$logdir"
work=$logdir/work  # the analytic benchmarks' trained models
export PYTHONUNBUFFERED=1

if [[ -n ${WHEELS:-} ]]; then
  "$py" -m pip install -q --no-index --no-deps "$WHEELS"/*.whl || exit 1
  "$py" -m pip install -q --no-index --no-deps --no-build-isolation -e . || exit 1
fi

# Where each side runs: JAX's first device, and the device the PyTorch peers take by
# default (the scripts' --torch-device: cuda when PyTorch sees a GPU).
"$py" -c '
import importlib.util
from benchmarks.peers import describe_torch_device, torch_device
torch = describe_torch_device(torch_device()) if importlib.util.find_spec("torch") else "none (torch not installed)"
try:
    import jax
    where = f"{jax.devices()[0].platform} ({jax.devices()[0].device_kind}, {jax.device_count()} devices)"
except Exception as err:  # a header line, not a check
    where = f"not importable ({err})"
print(f"== jax on {where}; torch peers on {torch}")
' 2>/dev/null || echo "== devices: could not be determined (see the logs)"

# name | script | full-size flags (GPU) | --quick flags | seconds allowed (full) | summary lines
benches=(
  "train|train_bench.py|--images 10000 --batch 128 --epochs 3|--images 1280 --batch 128 --epochs 1|35|torch device:|^(ours|plain|torch) |vs torch ="
  "pgd|attacks_bench.py|--images 1000 --steps 40 --repeats 3|--images 100 --steps 10 --repeats 1|35|^torch device:|^(ours|foolbox|torchattacks) \\("
  "autoattack|autoattack_bench.py|--images 1000 --steps 100|--images 64 --steps 10 --epochs 1|70|^torch device:|^ours|^torchattacks|^agreement"
  "som|som_bench.py|--repeats 2|--cases small --repeats 1|40|^(small|large) "
  "analytic|analytic_bench.py|--repeats 3 --pair-rounds 2 --workdir $work|--model mlp --hidden 64 --epochs 1 --images 4 --samples 1000 --chunk 500 --ref-images 2 --ref-samples 4000 --repeats 1 --pair-rounds 1 --no-dense --workdir $work|30|^\\| (Monte|exact \\(tiled\\)|series|diagonal|zero_mean|batch)|^paired"
  "propagate|propagate_bench.py|--workdir $work|--models mlp --mlp-hidden 32 --sigmas 0.1 --images 2 --samples 1000 --ref-samples 4000 --workdir $work|30|^\\| (lenet5|mlp)"
  "weights|weights_bench.py|--trials 10 --epochs 5 --repeats 3|--trials 1 --epochs 1 --repeats 1|25|x$"
  "precision|precision_bench.py|--epochs 8 --seeds 0,1,2|--epochs 1 --seeds 0,1 --steps 2 --timing-rounds 1|30|^(float32|bfloat16)|paired|ms  \\(first"
)

start=$SECONDS
failed=()
for entry in "${benches[@]}"; do
  IFS='|' read -r name script full small limit pattern <<<"$entry"
  [[ -z $only || $only == *",$name,"* ]] || continue
  flags=$full
  if [[ $quick == 1 ]]; then flags=$small; limit=900; fi
  echo "== $name: python benchmarks/$script $flags"
  t0=$SECONDS
  # shellcheck disable=SC2086  # the flags are words
  timeout --signal=INT --kill-after=10 "$limit" \
    "$py" benchmarks/device_memory.py "benchmarks/$script" $flags >"$logdir/$name.log" 2>&1
  rc=$?
  echo "   $((SECONDS - t0)) s, exit $rc$([[ $rc == 124 ]] && echo " (over its $limit s)")"
  [[ $rc == 0 ]] || failed+=("$name")
done

echo
echo "== summary ($((SECONDS - start)) s in all; full logs in $logdir)"
for entry in "${benches[@]}"; do
  IFS='|' read -r name script _ _ _ pattern <<<"$entry"
  [[ -z $only || $only == *",$name,"* ]] || continue
  echo "-- $name ($script)"
  grep -E "$pattern" "$logdir/$name.log" | sed 's/^/   /'
  grep -E "skipped|not installed|Error|error:" "$logdir/$name.log" | tail -n 3 | sed 's/^/   ! /'
  grep -E "^peak memory:" "$logdir/$name.log" | sed 's/^peak memory: [^:]*: /   peak memory: /'
done
if (( ${#failed[@]} )); then
  echo "FAILED: ${failed[*]}"
  exit 1
fi
