/**
 * Trains a small MLP (2 -> 64 -> 64 -> 2, relu) on two interleaved spirals (or two moons) on the
 * GPU with the autograd engine: full batch, softmax cross-entropy through `logSoftmax`, SGD with
 * momentum written with the ops (no optimizer kernel).
 *
 *   npm run mlp                       # spirals, defaults below
 *   npm run mlp -- --data moons --act tanh --steps 300 --log 50 --lr 0.3 --momentum 0.9 --n 256 --seed 1
 *
 * Only the public API of `src/index.ts` is used. Each step runs inside `scope()` (every
 * intermediate is freed at its end) and is submitted with `ctx.flush()`; the loss and accuracy
 * are computed on the GPU and read back together (one `readAll`) once per logging step.
 */
/*
 * Cost note (lavapipe): logSoftmax forward + backward on [N, 2] is most of a step, because the
 * row kernels run one 256-thread workgroup per row; the matmuls and elementwise ops are cheap.
 */
import {
  add,
  backward,
  init,
  keep,
  liveBufferCount,
  logSoftmax,
  matmul,
  max,
  mul,
  noGrad,
  readAll,
  relu,
  scale,
  scope,
  sub,
  sum,
  tanh,
  tensor,
  where,
  type Tensor,
} from '../src/index';
import { makeDataset, randn, type Dataset } from './datasets';
import { seededRandom } from '../src/text/data';

interface Args {
  data: 'spirals' | 'moons';
  act: 'relu' | 'tanh';
  n: number;
  hidden: number;
  steps: number;
  log: number;
  lr: number;
  momentum: number;
  seed: number;
  maxSeconds: number;
  target: number;
}

function parseArgs(argv: string[]): Args {
  const a: Args = {
    data: 'spirals',
    act: 'relu',
    n: 256,
    hidden: 64,
    steps: 400,
    log: 25,
    lr: 0.3,
    momentum: 0.9,
    seed: 1,
    maxSeconds: 90,
    target: 0,
  };
  for (let i = 0; i < argv.length; i++) {
    const key = argv[i].replace(/^--/, '');
    const value = argv[i + 1];
    const need = (): string => {
      if (value === undefined) throw new Error(`--${key} needs a value`);
      i++;
      return value;
    };
    switch (key) {
      case 'data': {
        const v = need();
        if (v !== 'spirals' && v !== 'moons') throw new Error(`--data must be spirals or moons, got ${v}`);
        a.data = v;
        break;
      }
      case 'act': {
        const v = need();
        if (v !== 'relu' && v !== 'tanh') throw new Error(`--act must be relu or tanh, got ${v}`);
        a.act = v;
        break;
      }
      case 'n':
        a.n = parseInt(need(), 10);
        break;
      case 'hidden':
        a.hidden = parseInt(need(), 10);
        break;
      case 'steps':
        a.steps = parseInt(need(), 10);
        break;
      case 'log':
        a.log = parseInt(need(), 10);
        break;
      case 'lr':
        a.lr = parseFloat(need());
        break;
      case 'momentum':
        a.momentum = parseFloat(need());
        break;
      case 'seed':
        a.seed = parseInt(need(), 10);
        break;
      case 'max-seconds':
        a.maxSeconds = parseFloat(need());
        break;
      case 'target':
        a.target = parseFloat(need());
        break;
      case 'help':
        console.log(
          'options: --data spirals|moons --act relu|tanh --n <points per class> --hidden <width> --steps <n> --log <every> ' +
            '--lr <rate> --momentum <mu> --seed <s> --max-seconds <t> --target <stop at this accuracy, 0..1>',
        );
        process.exit(0);
        break;
      default:
        throw new Error(`unknown option ${argv[i]} (try --help)`);
    }
  }
  return a;
}

/** One trainable tensor and its momentum buffer; both are swapped for new tensors every step. */
interface Param {
  name: string;
  value: Tensor;
  velocity: Tensor;
}

function param(name: string, data: Float32Array, shape: number[]): Param {
  return {
    name,
    value: tensor(data, shape, { requiresGrad: true }),
    velocity: tensor(new Float32Array(data.length), shape),
  };
}

/** Glorot normal init: std = sqrt(2 / (fanIn + fanOut)). */
function initWeights(rand: () => number, fanIn: number, fanOut: number): Float32Array {
  const std = Math.sqrt(2 / (fanIn + fanOut));
  const w = new Float32Array(fanIn * fanOut);
  for (let i = 0; i < w.length; i++) w[i] = std * randn(rand);
  return w;
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const ctx = await init();
  const info = ctx.adapter.info;
  console.log(`adapter: ${info.vendor || '?'} / ${info.architecture || '?'} / ${info.description || '?'}`);

  const ds: Dataset = makeDataset(args.data, args.n, args.seed);
  const N = ds.count;
  const C = ds.classes;
  const H = args.hidden;
  console.log(
    `data: ${args.data}, ${N} points, ${C} classes; model 2 -> ${H} -> ${H} -> ${C} (${args.act}), ` +
      `full-batch SGD lr=${args.lr} momentum=${args.momentum}, ${args.steps} steps`,
  );

  // Inputs and targets live for the whole run (made outside any scope).
  const x = tensor(ds.x, [N, 2]);
  const oneHot = new Float32Array(N * C);
  for (let i = 0; i < N; i++) oneHot[i * C + ds.y[i]] = 1;
  const yOneHot = tensor(oneHot, [N, C]);
  const zero = tensor(0, []);
  const one = tensor(1, []);

  const rand = seededRandom(args.seed * 7919 + 17);
  const params: Param[] = [
    param('w1', initWeights(rand, 2, H), [2, H]),
    param('b1', new Float32Array(H), [H]),
    param('w2', initWeights(rand, H, H), [H, H]),
    param('b2', new Float32Array(H), [H]),
    param('w3', initWeights(rand, H, C), [H, C]),
    param('b3', new Float32Array(C), [C]),
  ];
  const p = (name: string): Tensor => params.find((q) => q.name === name)!.value;

  const act = args.act === 'relu' ? relu : tanh;
  const forward = (): Tensor => {
    const h1 = act(add(matmul(x, p('w1')), p('b1')));
    const h2 = act(add(matmul(h1, p('w2')), p('b2')));
    return add(matmul(h2, p('w3')), p('b3'));
  };

  /** One training step: forward, loss, backward, momentum update. Returns [loss, correct] (GPU scalars). */
  const step = (withMetrics: boolean): Tensor[] => {
    const logits = forward();
    // Cross-entropy: -mean over the batch of the log-probability of the true class.
    const logp = logSoftmax(logits);
    const loss = scale(sum(mul(logp, yOneHot)), -1 / N);
    let correct: Tensor | null = null;
    if (withMetrics) {
      correct = noGrad(() => {
        // A point is correct when its true-class logit is the row max (margin >= 0), i.e. when
        // relu(-margin) is zero: where(relu(max - true), 0, 1) counts them.
        const trueLogit = sum(mul(logits, yOneHot), -1);
        const gap = relu(sub(max(logits, -1), trueLogit));
        return sum(where(gap, zero, one));
      });
    }
    backward(loss);
    noGrad(() => {
      for (const q of params) {
        const g = q.value.grad;
        if (!g) throw new Error(`no gradient for ${q.name}`);
        // v <- mu v + g ; w <- w - lr v
        const v = add(scale(q.velocity, args.momentum), g);
        const w = sub(q.value, scale(v, args.lr));
        q.velocity.dispose();
        q.value.dispose(); // also frees q.value.grad
        q.velocity = keep(v);
        q.value = keep(w);
        q.value.requiresGrad = true;
      }
    });
    // Returned tensors survive the scope; the caller reads and frees them.
    return withMetrics ? [loss, correct!] : [];
  };

  const t0 = performance.now();
  let lastAcc = 0;
  let lastLoss = NaN;
  let stepsRun = 0;
  const liveAtStart = liveBufferCount();
  console.log(`live buffers before training: ${liveAtStart}`);
  console.log('| step | loss | train acc | live buffers (step start -> end) | elapsed |');
  console.log('| ---: | ---: | ---: | :---: | ---: |');
  for (let s = 1; s <= args.steps; s++) {
    const logNow = s === 1 || s % args.log === 0 || s === args.steps;
    const before = liveBufferCount();
    const metrics = scope(() => step(logNow));
    // Submit this step's dispatches now, so that the GPU works while the next step is recorded.
    ctx.flush();
    stepsRun = s;
    if (logNow) {
      const [lossArr, correctArr] = await readAll(metrics);
      for (const t of metrics) t.dispose();
      const after = liveBufferCount();
      lastLoss = lossArr[0];
      lastAcc = correctArr[0] / N;
      const secs = (performance.now() - t0) / 1000;
      console.log(`| ${s} | ${lastLoss.toFixed(4)} | ${(100 * lastAcc).toFixed(1)}% | ${before} -> ${after} | ${secs.toFixed(1)} s |`);
      if (!Number.isFinite(lastLoss)) throw new Error('loss is not finite: lower --lr');
      if (args.target > 0 && lastAcc >= args.target) break;
      if (secs > args.maxSeconds) {
        console.log(`stopping: over --max-seconds ${args.maxSeconds}`);
        break;
      }
    }
  }
  await ctx.sync();
  const secs = (performance.now() - t0) / 1000;
  console.log(
    `done: ${stepsRun} steps in ${secs.toFixed(1)} s (${((1000 * secs) / stepsRun).toFixed(1)} ms/step), ` +
      `final loss ${lastLoss.toFixed(4)}, train accuracy ${(100 * lastAcc).toFixed(1)}%, ` +
      `live buffers ${liveAtStart} before training, ${liveBufferCount()} after`,
  );
  // scripts/run.mjs exits with 0 unless the script throws.
  if (lastAcc < 0.95) throw new Error(`training accuracy ${(100 * lastAcc).toFixed(1)}% is below 95%`);
}

await main();
