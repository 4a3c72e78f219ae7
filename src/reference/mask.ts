/**
 * The mask rule of every loss and metric, in the twins: a position is selected iff its mask value
 * is not 0 (PyTorch's `mask.bool()`); a mask selects and never weights, so 2, 0.5 and -1 select
 * like 1. The kernels apply the same rule (`maskSelects` in `shaders/common.wgsl`).
 */
export function isSelected(maskValue: number): boolean {
  return maskValue !== 0;
}

/** How many values of `mask` select (see {@link isSelected}). */
export function selectedCount(mask: ArrayLike<number>): number {
  let n = 0;
  for (let i = 0; i < mask.length; i++) if (isSelected(mask[i])) n++;
  return n;
}
