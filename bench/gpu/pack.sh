#!/usr/bin/env bash
# `npm run bench:gpu`: prepares, here, everything the GPU benchmark needs on a bare NVIDIA machine
# (no network, no Node, no Vulkan loader) into .carry/sgt-gpu (ignored by git; it travels with the
# working tree, at most 64 MiB in all), then prints the command to run there.
#
#   npm run bench:gpu                          # pack only
#   npm run bench:gpu -- --rehearse lavapipe   # pack, then run the device script here, small sizes
#   npm run bench:gpu -- --rehearse swiftshader
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
REHEARSE=
while [ $# -gt 0 ]; do
  case $1 in
    --rehearse) REHEARSE=${2:?--rehearse needs lavapipe or swiftshader}; shift 2 ;;
    *) echo "bench:gpu: unknown option $1 (--rehearse lavapipe|swiftshader)" >&2; exit 2 ;;
  esac
done
git check-ignore -q "$CARRY/x" || { echo "bench:gpu: .carry/ is not ignored by git" >&2; exit 1; }

echo "== harness: ../shared/peers -> .cache/peers (npm ci once)"
node bench/peers.mjs prepare
echo "== bundle: .carry/sgt-gpu/app (bench/gpu/vite.config.ts)"
npx vite build --config bench/gpu/vite.config.ts --logLevel warn
rm -rf "$CARRY/peers" && mkdir -p "$CARRY/peers"
cp -r .cache/peers/bench.mjs .cache/peers/package.json .cache/peers/lib .cache/peers/runners .cache/peers/device "$CARRY/peers/"
echo "== Node, trimmed node_modules, Vulkan loader debs: the harness's device/pack.sh -> .carry/sgt-gpu/deps"
CARRY_DIR=$CARRY/deps bash .cache/peers/device/pack.sh | tail -3
git -C "$ROOT" rev-parse HEAD >"$CARRY/COMMIT"
git -C "$ROOT" status --porcelain | grep -v '^??' | head -20 >"$CARRY/DIRTY" || true
du -sh "$CARRY"/* | sed 's/^/   /'
echo "== on the device (from the repo root, .carry travelling with the tree, a 480 s limit):"
echo "   bash bench/gpu/run-on-device.sh          # results: \$OUT (else docs/measurements/)"

if [ -n "$REHEARSE" ]; then
  echo "== rehearsal here on $REHEARSE (small sizes, --smoke): the carried Node, node_modules and Vulkan loader"
  OUT=${OUT:-$(mktemp -d)} bash bench/gpu/run-on-device.sh --adapter "$REHEARSE" --smoke
fi
