/**
 * Sharded checkpoints (`model.safetensors.index.json` + `model-0000k-of-0000n.safetensors`): the
 * tiny-llama3 fixture's two shards read as a list and through the index, and every bad layout a
 * named error that leaves nothing allocated on the GPU.
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { gpu } from '../gpu';
import { liveBufferCount } from '../../src/index';
import { loadCausalLM } from '../../src/models/causalLM';
import { parseSafetensors, type SafetensorsFile } from '../../src/models/safetensors';
import { writeSafetensors } from '../../src/models/safetensorsWriter';
import {
  SAFETENSORS_INDEX_NAME,
  mergeSafetensorsShards,
  parseSafetensorsIndex,
  readWeights,
  type ShardedWeights,
  type WeightsSource,
} from '../../src/models/shards';
import { FIXTURES_DIR } from '../helpers/fixtures';

const DIR = resolve(FIXTURES_DIR, 'tiny-llama3');
const SHARD1 = 'model-00001-of-00002.safetensors';
const SHARD2 = 'model-00002-of-00002.safetensors';

function fixture() {
  const config = JSON.parse(readFileSync(resolve(DIR, 'config.json'), 'utf8')) as Record<string, unknown>;
  const indexText = readFileSync(resolve(DIR, SAFETENSORS_INDEX_NAME), 'utf8');
  const shard1 = new Uint8Array(readFileSync(resolve(DIR, SHARD1)));
  const shard2 = new Uint8Array(readFileSync(resolve(DIR, SHARD2)));
  return { config, indexText, index: JSON.parse(indexText) as { weight_map: Record<string, string> }, shard1, shard2 };
}

/** A safetensors file holding some tensors of `file`, copied under their names. */
function subset(file: SafetensorsFile, names: string[]): Uint8Array<ArrayBuffer> {
  const out: Record<string, { dtype: 'BF16'; shape: number[]; data: Uint16Array }> = {};
  for (const name of names) {
    const e = file.tensors.get(name)!;
    out[name] = { dtype: 'BF16', shape: e.shape, data: new Uint16Array(e.bytes.slice().buffer) };
  }
  return writeSafetensors(out) as Uint8Array<ArrayBuffer>;
}

describe('reading a sharded checkpoint', () => {
  it('the index names both shards, and a list or the index give the same tensors', async () => {
    const { indexText, shard1, shard2 } = fixture();
    const index = parseSafetensorsIndex(indexText);
    expect(index.shards).toEqual([SHARD1, SHARD2]);
    expect(index.weightMap.get('model.norm.weight')).toBe(SHARD2);
    expect(index.metadata.total_size).toBe(104928);
    const a = await readWeights({ index: indexText, shards: { [SHARD2]: shard2, [SHARD1]: shard1 } });
    const b = await readWeights([shard2, shard1]);
    const c = await readWeights({
      index: JSON.parse(indexText),
      shards: new Map<string, WeightsSource>([
        [SHARD1, new Blob([shard1])],
        [SHARD2, shard2],
      ]),
    });
    const one = parseSafetensors(shard1);
    const two = parseSafetensors(shard2);
    expect(a.tensors.size).toBe(one.tensors.size + two.tensors.size);
    expect(a.tensors.size).toBe(index.weightMap.size);
    for (const f of [b, c]) {
      expect([...f.tensors.keys()].sort()).toEqual([...a.tensors.keys()].sort());
      for (const [name, e] of f.tensors) expect(e.bytes).toEqual(a.tensors.get(name)!.bytes);
    }
    expect(a.shards).toEqual([SHARD1, SHARD2]);
    expect(b.shards).toEqual(['shard 1 of 2', 'shard 2 of 2']);
  });

  it('names shards after their File names and counts progress over all of them', async () => {
    const { shard1, shard2 } = fixture();
    const progress: [number, number | null][] = [];
    const file = await readWeights([new File([shard1], SHARD1), new File([shard2], SHARD2)], {
      onProgress: (loaded, total) => progress.push([loaded, total]),
    });
    expect(file.shards).toEqual([SHARD1, SHARD2]);
    const total = shard1.byteLength + shard2.byteLength;
    expect(progress.every(([, t]) => t === total)).toBe(true);
    expect(progress.at(-1)).toEqual([total, total]);
    // A broken shard is named.
    await expect(readWeights([new File([shard1], SHARD1), new File([shard2.slice(0, 50)], SHARD2)])).rejects.toThrow(
      new RegExp(`safetensors: .*${SHARD2}`),
    );
    await expect(readWeights([shard1, shard2.slice(0, 4)])).rejects.toThrow(/safetensors: .*\(in shard 'shard 2 of 2'\)/);
  });

  it('rejects a bad index by name', async () => {
    const { shard1 } = fixture();
    expect(() => parseSafetensorsIndex('{')).toThrow(/weights: model.safetensors.index.json is not valid JSON/);
    expect(() => parseSafetensorsIndex({ metadata: {} })).toThrow(/model.safetensors.index.json has no 'weight_map' object/);
    expect(() => parseSafetensorsIndex({ weight_map: { a: 3 } })).toThrow(/maps 'a' to 3; expected a shard file name/);
    expect(() => mergeSafetensorsShards([])).toThrow('weights: no shards were given');
    await expect(readWeights([shard1, shard1])).rejects.toThrow(/is in two shards: 'shard 1 of 2' and 'shard 2 of 2'/);
  });
});

describe('bad sharded checkpoints are named errors, with nothing left allocated', () => {
  it('a shard the index names that was not given', async () => {
    await gpu();
    const { config, indexText, shard1 } = fixture();
    const start = liveBufferCount();
    const weights: ShardedWeights = { index: indexText, shards: { [SHARD1]: shard1, 'model.safetensors': shard1 } };
    await expect(loadCausalLM({ config, weights })).rejects.toThrow(
      `weights: missing shard '${SHARD2}' (10 tensors) named by model.safetensors.index.json; given: '${SHARD1}', 'model.safetensors'`,
    );
    // Checked before any shard is read: an unreadable shard does not come first.
    await expect(readWeights({ index: indexText, shards: { [SHARD1]: 'http://127.0.0.1:9/unreachable' } })).rejects.toThrow(
      `missing shard '${SHARD2}'`,
    );
    expect(liveBufferCount()).toBe(start);
  });

  it('a tensor held by two shards', async () => {
    await gpu();
    const { config, shard1, shard2 } = fixture();
    const start = liveBufferCount();
    const extra = subset(parseSafetensors(shard1), ['model.layers.1.self_attn.v_proj.weight']);
    await expect(loadCausalLM({ config, weights: [shard1, shard2, new File([extra], 'extra.safetensors')] })).rejects.toThrow(
      "weights: tensor 'model.layers.1.self_attn.v_proj.weight' is in two shards: 'shard 1 of 3' and 'extra.safetensors'",
    );
    expect(liveBufferCount()).toBe(start);
  });

  it('a tensor absent from every shard', async () => {
    await gpu();
    const { config, index, shard1, shard2 } = fixture();
    const start = liveBufferCount();
    await expect(loadCausalLM({ config, weights: [new File([shard1], SHARD1)] })).rejects.toThrow(
      new RegExp(`missing 10 tensor\\(s\\) \\(absent from every shard: ${SHARD1}\\): .*model\\.norm\\.weight`),
    );
    // The index and the shards agree, but both lack the final norm.
    const two = parseSafetensors(shard2);
    const trimmed = subset(
      two,
      [...two.tensors.keys()].filter((n) => n !== 'model.norm.weight'),
    );
    const { 'model.norm.weight': _, ...map } = index.weight_map;
    await expect(
      loadCausalLM({ config, weights: { index: { weight_map: map }, shards: { [SHARD1]: shard1, [SHARD2]: trimmed } } }),
    ).rejects.toThrow(`missing 1 tensor(s) (absent from every shard: ${SHARD1}, ${SHARD2}): model.norm.weight`);
    // The index places a tensor in a shard that does not hold it.
    await expect(loadCausalLM({ config, weights: { index, shards: { [SHARD1]: shard1, [SHARD2]: trimmed } } })).rejects.toThrow(
      `weights: model.safetensors.index.json places 'model.norm.weight' in '${SHARD2}', which does not hold it (no shard holds it)`,
    );
    expect(liveBufferCount()).toBe(start);
    // And the whole checkpoint loads, then frees everything.
    const model = await loadCausalLM({ config, weights: { index, shards: { [SHARD1]: shard1, [SHARD2]: shard2 } } });
    expect(liveBufferCount()).toBeGreaterThan(start);
    model.dispose();
    expect(liveBufferCount()).toBe(start);
  });
});
