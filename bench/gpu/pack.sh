#!/usr/bin/env bash
# `npm run bench:gpu`: prepares, here, everything the GPU benchmark needs on a bare NVIDIA machine
# (no network, no Node, no Vulkan loader) into .carry/sgt-gpu (ignored by git; it travels with the
# working tree, at most 64 MiB in all), then prints the command to run there.
#
#   npm run bench:gpu                          # pack only
#   npm run bench:gpu -- --rehearse lavapipe   # pack, then run the device script here, small sizes
#   npm run bench:gpu -- --rehearse swiftshader
#   npm run bench:gpu -- --commit HEAD         # bundle a clean worktree of a commit, not this working tree
# deps/ (below) is kept when Node and the harness's lockfile are the same (--repack-deps redoes it:
# ~2 minutes on an idle 2-core machine, 25 on a loaded one).
#
# .carry/sgt-gpu holds:
#   app/          this project bundled for Node (bench/gpu/vite.config.ts): sgt.mjs (the library, the
#                 peers' sgt column) and step.mjs (bench/step-main.ts), dependencies inlined but `webgpu`
#   peers/        the shared peers harness (../shared/peers: bench.mjs, lib, runners, device)
#   deps/         the harness's device/pack.sh output: node.xz (this Node), node_modules.tar.xz (the
#                 trimmed TF.js / jax-js / webgpu with dawn.node for linux-x64), debs/ (libvulkan1,
#                 libglvnd0 ...), MANIFEST.txt
# The device command is bench/gpu/run-on-device.sh (README, "Performance").
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
CARRY=$ROOT/.carry/sgt-gpu
REHEARSE= COMMIT= REPACK=
while [ $# -gt 0 ]; do
  case $1 in
    --rehearse) REHEARSE=${2:?--rehearse needs lavapipe or swiftshader}; shift 2 ;;
    --repack-deps) REPACK=1; shift ;;
    --commit) COMMIT=$(git rev-parse "${2:?--commit needs a revision}^{commit}"); shift 2 ;;
    *) echo "bench:gpu: unknown option $1 (--rehearse lavapipe|swiftshader, --commit REV)" >&2; exit 2 ;;
  esac
done
git check-ignore -q "$CARRY/x" || { echo "bench:gpu: .carry/ is not ignored by git" >&2; exit 1; }

echo "== harness: ../shared/peers -> .cache/peers (npm ci once)"
node bench/peers.mjs prepare
SRC=$ROOT
if [ -n "$COMMIT" ]; then # a clean worktree of the commit, this checkout's node_modules and step bench
  SRC=${TMPDIR:-/tmp}/sgt-gpu-pack
  [ -d "$SRC" ] && git worktree remove --force "$SRC"
  git worktree add --detach "$SRC" "$COMMIT" >/dev/null
  ln -s "$ROOT/node_modules" "$SRC/node_modules"
  mkdir -p "$SRC/bench/gpu"
  cp bench/step-throughput.ts bench/step-main.ts "$SRC/bench/"
  cp bench/gpu/vite.config.ts "$SRC/bench/gpu/" # so its shader plugin is the commit's (its shaders, its layout registry)
fi
echo "== bundle: .carry/sgt-gpu/app from $([ -n "$COMMIT" ] && echo "commit $COMMIT" || echo 'the working tree') (bench/gpu/vite.config.ts)"
SGT_GPU_APP_OUT=$CARRY/app npx vite build --config "$SRC/bench/gpu/vite.config.ts" --logLevel warn
LVP=$(ls /usr/share/vulkan/icd.d/lvp_icd*.json 2>/dev/null | head -1)
if [ -n "$LVP" ]; then # the bundle must run before it travels: one tiny step on lavapipe
  echo "== check: one step of the bundle's step bench on lavapipe (synthetic config, B 1 x T 4)"
  VK_ICD_FILENAMES=$LVP NODEVICE_SELECT=1 node "$CARRY/app/step.mjs" --model synthetic --batch 1 --seq 4 --steps 1 \
    --factories distillation 2>&1 | grep -v 'artificially reduced' | tail -2 || { echo "bench:gpu: the bundle does not run" >&2; exit 1; }
fi
rm -rf "$CARRY/peers" && mkdir -p "$CARRY/peers"
cp -r .cache/peers/bench.mjs .cache/peers/package.json .cache/peers/lib .cache/peers/runners .cache/peers/device "$CARRY/peers/"
echo "== Node, trimmed node_modules, Vulkan loader debs: the harness's device/pack.sh -> .carry/sgt-gpu/deps"
STAMP="$(node --version) $(sha256sum <.cache/peers/package-lock.json | cut -c1-16)"
if [ -z "$REPACK" ] && [ -f "$CARRY/deps/MANIFEST.txt" ] && [ "$(cat "$CARRY/deps.stamp" 2>/dev/null)" = "$STAMP" ]; then
  echo "   kept (same Node, same lockfile; --repack-deps to redo)"
else
  CARRY_DIR=$CARRY/deps bash .cache/peers/device/pack.sh | tail -3
  echo "$STAMP" >"$CARRY/deps.stamp"
fi
git -C "$SRC" rev-parse HEAD >"$CARRY/COMMIT"
git -C "$SRC" status --porcelain | grep -v '^??' | grep -v "$([ -n "$COMMIT" ] && echo ' bench/\(gpu/vite.config\|step-\)' || echo '^$')" |
  head -20 >"$CARRY/DIRTY" || true # uncommitted changes bundled (with --commit, the bench files pack.sh copied in are expected)
[ -s "$CARRY/DIRTY" ] && echo "   (the bundle holds uncommitted changes of the working tree: see .carry/sgt-gpu/DIRTY; --commit REV packs a clean commit)"
du -sh "$CARRY"/* | sed 's/^/   /'
echo "== on the device (from the repo root, .carry travelling with the tree, a 480 s limit):"
echo "   bash bench/gpu/run-on-device.sh          # results: \$OUT (else docs/measurements/)"

if [ -n "$REHEARSE" ]; then
  echo "== rehearsal here on $REHEARSE (small sizes, --smoke): the carried Node, node_modules and Vulkan loader"
  OUT=${OUT:-$(mktemp -d)} bash bench/gpu/run-on-device.sh --adapter "$REHEARSE" --smoke
fi
