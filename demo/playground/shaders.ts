/**
 * The WGSL source of every kernel family, imported raw (Vite `?raw`) from `shaders/`: the text the
 * library compiles, shown (and, for some families, edited) in the playground.
 */
import attention from '../../shaders/attention.wgsl?raw';
import catalyst from '../../shaders/catalyst.wgsl?raw';
import cosine from '../../shaders/cosine.wgsl?raw';
import crossEntropy from '../../shaders/crossEntropy.wgsl?raw';
import elementwise from '../../shaders/elementwise.wgsl?raw';
import gather from '../../shaders/gather.wgsl?raw';
import matmul from '../../shaders/matmul.wgsl?raw';
import medianNorm from '../../shaders/medianNorm.wgsl?raw';
import mutualInformation from '../../shaders/mutualInformation.wgsl?raw';
import norm from '../../shaders/norm.wgsl?raw';
import reduce from '../../shaders/reduce.wgsl?raw';
import rope from '../../shaders/rope.wgsl?raw';
import softmax from '../../shaders/softmax.wgsl?raw';
import stdLogRatio from '../../shaders/stdLogRatio.wgsl?raw';

/** File name (in `shaders/`) to WGSL source. */
export const SHADERS = {
  'attention.wgsl': attention,
  'catalyst.wgsl': catalyst,
  'cosine.wgsl': cosine,
  'crossEntropy.wgsl': crossEntropy,
  'elementwise.wgsl': elementwise,
  'gather.wgsl': gather,
  'matmul.wgsl': matmul,
  'medianNorm.wgsl': medianNorm,
  'mutualInformation.wgsl': mutualInformation,
  'norm.wgsl': norm,
  'reduce.wgsl': reduce,
  'rope.wgsl': rope,
  'softmax.wgsl': softmax,
  'stdLogRatio.wgsl': stdLogRatio,
} as const;

/** The name of a WGSL file in `shaders/`. */
export type ShaderFile = keyof typeof SHADERS;
