#!/usr/bin/env bash
# Before/after of a kernel change, each side timed in the same run on the same adapter: the peers
# harness with two sgt columns (`sgt-baseline` = BASE's build, `sgt` = AFTER's build) beside TF.js,
# jax-js and the plain WGSL copy, and the training step of both builds alternated (B, A, B, A).
#
#   bash bench/before-after.sh BASE [AFTER] [--adapters lavapipe,swiftshader] [--out-prefix DIR/perf]
#
# BASE and AFTER are commits (AFTER: HEAD); each is checked out with `git worktree add` under
# ${TMPDIR:-/tmp} (this checkout's working tree is not touched) and built there with this checkout's
# node_modules. The step bench is this checkout's bench/step-throughput.ts + step-main.ts, copied into
# both trees, on the fixed synthetic config (both sides train the same model) and on models/default
# (each side's own). Writes <prefix>-peers-<adapter>.json, <prefix>-step-<adapter>-{base,after}-<i>.json
# and <prefix>-<adapter>.uptime (the load before and after each part). Environment: STEP_REPEATS (2:
# B, A, B, A), STEP_ARGS (extra step-main options, e.g. '--model synthetic --steps 5'), SKIP_PEERS=1,
# PEERS_RUNNERS (the columns before the two sgt ones; default webgpu-raw,tfjs,jax-jit).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
BASE=${1:?usage: bash bench/before-after.sh BASE [AFTER] [--adapters lavapipe,swiftshader] [--out-prefix PREFIX]}
shift
AFTER=HEAD
if [ $# -gt 0 ] && [ "${1#--}" = "$1" ]; then AFTER=$1; shift; fi
ADAPTERS=lavapipe,swiftshader
PREFIX=$ROOT/docs/measurements/perf-after
STEP_REPEATS=${STEP_REPEATS:-2}
while [ $# -gt 0 ]; do
  case $1 in
    --adapters) ADAPTERS=$2; shift 2 ;;
    --out-prefix) PREFIX=$(realpath -m "$2"); shift 2 ;;
    *) echo "before-after: unknown option $1" >&2; exit 2 ;;
  esac
done
mkdir -p "$(dirname "$PREFIX")"

tree() { # tree COMMIT NAME: a built worktree of COMMIT at $TMP/NAME
  local dir=${TMPDIR:-/tmp}/sgt-$2
  if [ -d "$dir" ] && [ "$(git -C "$dir" rev-parse HEAD)" = "$(git rev-parse "$1^{commit}")" ] && [ -f "$dir/dist/index.js" ]; then echo "$dir"; return; fi
  [ -d "$dir" ] && git worktree remove --force "$dir"
  git worktree add --detach "$dir" "$1" >/dev/null
  ln -s "$ROOT/node_modules" "$dir/node_modules"
  (cd "$dir" && npm run build >/dev/null 2>&1) || { echo "before-after: npm run build failed in $dir" >&2; exit 1; }
  echo "$dir"
}
BASE_DIR=$(tree "$BASE" base)
AFTER_DIR=$(tree "$AFTER" after)
cp bench/step-throughput.ts bench/step-main.ts "$BASE_DIR/bench/"
cp bench/step-throughput.ts bench/step-main.ts "$AFTER_DIR/bench/"
echo "before-after: base $(git -C "$BASE_DIR" rev-parse --short HEAD) in $BASE_DIR, after $(git -C "$AFTER_DIR" rev-parse --short HEAD) in $AFTER_DIR"

for A in ${ADAPTERS//,/ }; do
  case $A in
    lavapipe) ICD=$(ls /usr/share/vulkan/icd.d/lvp_icd*.json | head -1); EXTRA=() ;;
    swiftshader) ICD=/usr/lib/chromium/vk_swiftshader_icd.json; EXTRA=(--warmup 1 --runs 5 --min-time-ms 0 --child-timeout 900) ;;
    *) echo "before-after: adapter $A (lavapipe | swiftshader)" >&2; exit 2 ;;
  esac
  LOAD=$PREFIX-$A.uptime
  echo "peers $(date -u +%FT%TZ) $(uptime)" >"$LOAD"
  node bench/peers.mjs prepare
  [ "${SKIP_PEERS:-0}" = 1 ] || (cd .cache/peers && SGT_DIST=$AFTER_DIR/dist/index.js SGT_BASELINE_DIST=$BASE_DIR/dist/index.js node bench.mjs --adapter "$A" --icd "$ICD" "${EXTRA[@]}" \
    --runners "${PEERS_RUNNERS:-webgpu-raw,tfjs,jax-jit},$ROOT/bench/sgt-baseline.mjs,./runners/sgt.mjs" --out "$PREFIX-peers-$A.json" >/dev/null) || true
  echo "peers done $(date -u +%FT%TZ) $(uptime)" >>"$LOAD"
  for i in $(seq 1 "$STEP_REPEATS"); do
    for side in base after; do
      dir=$BASE_DIR
      [ $side = after ] && dir=$AFTER_DIR
      (cd "$dir" && VK_ICD_FILENAMES=$ICD node scripts/run.mjs bench/step-main.ts ${STEP_ARGS:-} --json "$PREFIX-step-$A-$side-$i.json" 2>/dev/null | grep -v '^$' | tail -n +2) || true
      echo "step $side $i done $(date -u +%FT%TZ) $(uptime)" >>"$LOAD"
    done
  done
  [ -f "$PREFIX-peers-$A.json" ] && node bench/peers.mjs show "$PREFIX-peers-$A.json"
  node bench/step-compare.mjs --base "$PREFIX-step-$A-base-"*.json --after "$PREFIX-step-$A-after-"*.json
done
