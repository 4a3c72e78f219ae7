#!/usr/bin/env bash
# The GPU benchmark, run on the device machine from the repo root with .carry/sgt-gpu (made here by
# `npm run bench:gpu`, bench/gpu/pack.sh) travelling with the working tree. Needs no Node, npm,
# network or Vulkan loader there: all come from the carry. Runs, in about 5 minutes on an H100:
#
#   1. the peers harness at --size real, columns webgpu-raw, tfjs, jax-jit and sgt (this project's
#      bundle): CE [2048 x 49152] and [512 x 49152] fwd and fwd+bwd, cosine [2048 x 576] fwd and
#      fwd+bwd, matmul 4096^3, add and copy 64M (the anchors' sizes, ../shared/design/ANCHORS.md);
#   2. the SGT step of the SmolLM2-135M shape (V 49152, d 576, 30 blocks, BF16 generated weights) at
#      B 8 x T 256, crossEntropyDistillation (PyTorch eager f32 on an H100: 98 ms);
#   3. the step of the fixed synthetic config (bench/step-throughput.ts) for all four factories, B 4 x T 64.
#
#   bash bench/gpu/run-on-device.sh [--adapter default|lavapipe|swiftshader] [--icd FILE] [--smoke]
#
# --adapter default (the default) is the system's Vulkan driver with NVIDIA's ICD where it exists;
# lavapipe / swiftshader rehearse the script here (README). --smoke: small sizes, one timed run each
# (checks that everything runs; times nothing). Writes into $OUT when set (the device tool's folder),
# else docs/measurements/: <tag>-peers.json (peers-bench/1), <tag>-step-*.json (sgt-step-bench/1),
# <tag>-summary.md (the tables) and <tag>-run.log, <tag> = gpu-<adapter>-<UTC time>[-smoke].
# Time limits (seconds): PEERS_TIMEOUT (default 270), STEP_TIMEOUT (150), SYNTH_TIMEOUT (60); with --smoke
# 900, 400 and 200 (on a loaded 2-core machine a rehearsal takes 10-15 minutes).
set -uo pipefail
T0=$(date +%s)
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
CARRY=$ROOT/.carry/sgt-gpu
WORK=${SGT_GPU_WORK:-${TMPDIR:-/tmp}/sgt-gpu}
ADAPTER=default ICD= SMOKE=0
while [ $# -gt 0 ]; do
  case $1 in
    --adapter) ADAPTER=$2; shift 2 ;;
    --icd) ICD=$2; shift 2 ;;
    --smoke) SMOKE=1; shift ;;
    *) echo "run-on-device.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
RESULTS=${OUT:-$ROOT/docs/measurements}
if [ $SMOKE = 1 ]; then : "${PEERS_TIMEOUT:=900}" "${STEP_TIMEOUT:=400}" "${SYNTH_TIMEOUT:=200}"; fi
TAG=gpu-$ADAPTER-$(date -u +%Y%m%dT%H%MZ)$([ $SMOKE = 1 ] && echo -smoke)
mkdir -p "$RESULTS"
exec > >(tee "$RESULTS/$TAG-run.log") 2>&1
TEE_PID=$!
trap 'exec 1>&- 2>&-; wait $TEE_PID' EXIT
step() { echo "== [$(($(date +%s) - T0)) s] $*"; }
die() { echo "run-on-device.sh: $*"; exit 3; }

step "host $(hostname) $(uname -srm); commit $(cat "$CARRY/COMMIT" 2>/dev/null); adapter $ADAPTER; results $RESULTS/$TAG-*"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
[ -d "$CARRY/app" ] && [ -d "$CARRY/deps" ] || die "no $CARRY: run 'npm run bench:gpu' here first and let .carry travel"

# 1. Node, the harness with the trimmed node_modules, the bundle (sharing them for `webgpu`)
rm -rf "$WORK" && mkdir -p "$WORK/bin" "$WORK/sysroot" || die "cannot make $WORK"
xz -dc "$CARRY/deps/node.xz" >"$WORK/bin/node" 2>/dev/null ||
  python3 -c 'import lzma,shutil,sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2],"wb"))' "$CARRY/deps/node.xz" "$WORK/bin/node" ||
  die "cannot unpack node"
chmod +x "$WORK/bin/node" && export PATH=$WORK/bin:$PATH
cp -r "$CARRY/peers" "$WORK/peers" && cp -r "$CARRY/app" "$WORK/app" && cp "$ROOT/package.json" "$WORK/package.json"
if command -v xz >/dev/null; then tar -C "$WORK/peers" -xJf "$CARRY/deps/node_modules.tar.xz"; else
  python3 -c 'import tarfile,sys; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' "$CARRY/deps/node_modules.tar.xz" "$WORK/peers"; fi || die "cannot unpack node_modules"
ln -s "$WORK/peers/node_modules" "$WORK/app/node_modules"
step "node $(node --version); harness and bundle in $WORK"

# 2. the Vulkan loader (and libglvnd) in a private folder; the ICD of the adapter asked for
for f in "$CARRY"/deps/debs/*.deb; do dpkg -x "$f" "$WORK/sysroot" || die "dpkg -x $f"; done
LIBS=$WORK/sysroot/usr/lib/x86_64-linux-gnu:$WORK/sysroot/lib/x86_64-linux-gnu
for d in /usr/local/nvidia/lib64 /usr/local/nvidia/lib; do [ -d "$d" ] && LIBS=$LIBS:$d; done
export LD_LIBRARY_PATH=$LIBS${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} NODEVICE_SELECT=1
[ "$(id -u)" = 0 ] && [ -d /usr/local/nvidia ] && ldconfig
if [ -z "$ICD" ]; then
  case $ADAPTER in
    default) for f in /usr/local/nvidia/share/vulkan/icd.d/nvidia*.json /usr/share/vulkan/icd.d/nvidia*.json /etc/vulkan/icd.d/nvidia*.json; do
        [ -f "$f" ] && { ICD=$f; break; }; done ;;
    lavapipe) ICD=$(ls /usr/share/vulkan/icd.d/lvp_icd*.json 2>/dev/null | head -1) ;;
    swiftshader) ICD=/usr/lib/chromium/vk_swiftshader_icd.json ;;
  esac
fi
ICD_ENV=()
[ -n "$ICD" ] && ICD_ENV=(VK_ICD_FILENAMES="$ICD")
step "Vulkan ICD: ${ICD:-none, the loader default}"
(cd "$WORK/peers" && env "${ICD_ENV[@]}" node device/probe.mjs) || die "no WebGPU adapter (VK_LOADER_DEBUG=error,warn,driver to see why)"

# 3. the peers harness with the sgt column
if [ $SMOKE = 1 ]; then SIZE=(--size small --smoke); else SIZE=(--size real --child-timeout 110); fi
PEERS_ARGS=(--adapter "$ADAPTER" "${SIZE[@]}" --runners webgpu-raw,tfjs,jax-jit,./runners/sgt.mjs --out "$RESULTS/$TAG-peers.json")
[ -n "$ICD" ] && PEERS_ARGS+=(--icd "$ICD")
step "peers: node bench.mjs ${PEERS_ARGS[*]} (stopped after ${PEERS_TIMEOUT:-270} s)"
(cd "$WORK/peers" && SGT_DIST=$WORK/app/sgt.mjs timeout -s TERM -k 15 "${PEERS_TIMEOUT:-270}" node bench.mjs "${PEERS_ARGS[@]}")
step "peers exited with $?"

# 4. the training steps
if [ $SMOKE = 1 ]; then
  BIG=(--model smollm2-135m --blocks 1 --batch 1 --seq 8 --steps 1)
  SYNTH=(--model synthetic --batch 2 --seq 8 --steps 1)
else
  BIG=(--model smollm2-135m --batch 8 --seq 256 --steps 3)
  SYNTH=(--model synthetic --batch 4 --seq 64 --steps 3)
fi
step "step: node step.mjs ${BIG[*]} (stopped after ${STEP_TIMEOUT:-150} s)"
env "${ICD_ENV[@]}" timeout -s TERM -k 10 "${STEP_TIMEOUT:-150}" node "$WORK/app/step.mjs" "${BIG[@]}" \
  --factories crossEntropyDistillation --json "$RESULTS/$TAG-step-smollm2.json" | grep -v 'artificially reduced'
step "step exited with ${PIPESTATUS[0]}; synthetic config, four factories (stopped after ${SYNTH_TIMEOUT:-60} s)"
env "${ICD_ENV[@]}" timeout -s TERM -k 10 "${SYNTH_TIMEOUT:-60}" node "$WORK/app/step.mjs" "${SYNTH[@]}" \
  --json "$RESULTS/$TAG-step-synthetic.json" | grep -v 'artificially reduced'
step "synthetic step exited with ${PIPESTATUS[0]}"

# 5. the summary: the ratio table and the step tables
{
  echo "# GPU bench $TAG (commit $(cat "$CARRY/COMMIT" 2>/dev/null))"
  echo
  [ -f "$RESULTS/$TAG-peers.json" ] && node "$ROOT/bench/peers.mjs" show "$RESULTS/$TAG-peers.json"
  for f in "$RESULTS/$TAG"-step-*.json; do
    [ -f "$f" ] && node -e 'const r=JSON.parse(require("fs").readFileSync(process.argv[1],"utf8")); console.log(`\n${process.argv[1].split("/").pop()}: ${r.adapter.description}`); for (const x of r.rows) console.log(`- ${x.model} ${x.factory} B ${x.B} x T ${x.T}: ${x.stepMs.toFixed(1)} ms/step, ${x.tokensPerSecond.toPrecision(3)} tokens/s`)' "$f"
  done
} >"$RESULTS/$TAG-summary.md"
cat "$RESULTS/$TAG-summary.md"
step "done: $(ls "$RESULTS" | grep -c "^$TAG") files in $RESULTS"
