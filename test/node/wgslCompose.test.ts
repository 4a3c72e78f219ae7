/**
 * WGSL composition (`#include`): line numbers of the including file are kept, included files are
 * appended once and located by name, an unknown include is named; and the real kernel files
 * compose, reflect and compile with the shared prelude.
 */
import { describe, expect, it } from 'vitest';
import { reflectEntryPoint } from '../../src/gpu/wgslReflect';
import { WGSL_INCLUDES, WgslIncludeError, composeWgsl, mapWgslMessage, wgslLocation } from '../../src/gpu/wgslCompose';
import { gpu } from '../gpu';

const LIBRARY = {
  'a.wgsl': 'fn fromA() -> f32 { return 1.0; }\nfn alsoA() -> f32 { return 2.0; }\n',
  'b.wgsl': '#include "a.wgsl"\nfn fromB() -> f32 { return fromA(); }', // no final newline
};

const KERNELS = import.meta.glob('../../shaders/*.wgsl', { query: '?raw', import: 'default', eager: true }) as Record<string, string>;

describe('composeWgsl', () => {
  it('keeps every line of the including file where it was and appends the included file', () => {
    const source = 'const X = 1;\n#include "a.wgsl"\nfn main() { let y = fromA(); }\n';
    const composed = composeWgsl(source, LIBRARY);
    const lines = composed.code.split('\n');
    const original = source.split('\n');
    expect(lines[0]).toBe(original[0]);
    expect(lines[1]).toMatch(/^\/\/ #include "a\.wgsl"/);
    expect(lines[2]).toBe(original[2]);
    expect(lines.slice(3, 5)).toEqual(['fn fromA() -> f32 { return 1.0; }', 'fn alsoA() -> f32 { return 2.0; }']);
    expect(composed.segments).toEqual([
      { file: null, firstLine: 1, lineCount: 3 },
      { file: 'a.wgsl', firstLine: 4, lineCount: 2 },
    ]);
    expect(wgslLocation(composed, 3)).toEqual({ file: null, line: 3 });
    expect(wgslLocation(composed, 5)).toEqual({ file: 'a.wgsl', line: 2 });
  });

  it('includes a file once, however often and from wherever it is included', () => {
    const source = '#include "b.wgsl"\n#include "a.wgsl"\n  #include "a.wgsl"  // again\nfn main() {}';
    const composed = composeWgsl(source, LIBRARY);
    expect(composed.code.match(/fn fromA/g)).toHaveLength(1);
    expect(composed.code.match(/fn fromB/g)).toHaveLength(1);
    expect(composed.code).not.toMatch(/^\s*#include/m);
    // The file without a final newline still starts the next one on a line of its own.
    expect(composed.segments.map((s) => [s.file, s.firstLine, s.lineCount])).toEqual([
      [null, 1, 4],
      ['b.wgsl', 5, 2],
      ['a.wgsl', 7, 2],
    ]);
    expect(composed.code.split('\n')[6]).toBe('fn fromA() -> f32 { return 1.0; }');
  });

  it('names an unknown include, its line and the files there are', () => {
    const source = 'fn f() {}\n#include "nope.wgsl"\n';
    expect(() => composeWgsl(source, LIBRARY)).toThrow(WgslIncludeError);
    expect(() => composeWgsl(source, LIBRARY)).toThrow(/#include "nope\.wgsl" \(line 2\): no such WGSL file \(known: a\.wgsl, b\.wgsl\)/);
    try {
      composeWgsl(source, LIBRARY);
    } catch (e) {
      expect((e as WgslIncludeError).line).toBe(2);
      expect((e as WgslIncludeError).file).toBeNull();
    }
    expect(() => composeWgsl('#include "b.wgsl"\n', { 'b.wgsl': '\n#include "gone.wgsl"' })).toThrow(/"gone\.wgsl" \(line 2 of b\.wgsl\)/);
  });

  it('returns source without includes unchanged', () => {
    const source = 'fn f() {}\n';
    expect(composeWgsl(source, LIBRARY).code).toBe(source);
  });

  it('names the included file in a compiler message about one of its lines', () => {
    const composed = composeWgsl('fn main() {}\n#include "a.wgsl"\n', LIBRARY);
    const message = 'Error while parsing WGSL: :4:3 error: bad\nfn x\n\n:1:1 note: first declared here';
    expect(mapWgslMessage(composed, message)).toBe(
      'Error while parsing WGSL: a.wgsl:2:3 error: bad\nfn x\n\n:1:1 note: first declared here',
    );
  });
});

describe('the shared prelude', () => {
  it('is the one definition of negInf, posInf and the workgroup tree', () => {
    const files = Object.entries(KERNELS).filter(([path]) => !path.endsWith('/common.wgsl'));
    expect(files.length).toBeGreaterThan(10);
    for (const [path, text] of files) {
      expect(text, path).not.toMatch(/fn (negInf|posInf)\b/);
    }
    expect(WGSL_INCLUDES['common.wgsl']).toMatch(/fn negInf\(\)/);
  });

  it('every kernel file composes and reflects', () => {
    for (const [path, text] of Object.entries(KERNELS)) {
      if (path.endsWith('/common.wgsl')) continue;
      const composed = composeWgsl(text);
      expect(composed.code, path).not.toMatch(/^\s*#include/m);
      // Each compute entry point reflects (bindings of the composed module).
      for (const m of text.matchAll(/@compute[^\n]*\n\s*fn (\w+)/g))
        expect(() => reflectEntryPoint(composed.code, m[1]), `${path} ${m[1]}`).not.toThrow();
    }
  });

  it('every kernel file compiles with the prelude, without errors or warnings', async () => {
    const ctx = await gpu();
    for (const [path, text] of Object.entries(KERNELS)) {
      if (path.endsWith('/common.wgsl')) continue;
      const module = ctx.device.createShaderModule({ code: composeWgsl(text).code });
      const info = await module.getCompilationInfo();
      expect(
        info.messages.map((m) => `${m.lineNum}: ${m.message}`),
        path,
      ).toEqual([]);
    }
  });

  it('the pipeline cache compiles the composed module and names the prelude in its errors', async () => {
    const ctx = await gpu();
    const out = new Float32Array(1);
    const buffer = ctx.device.createBuffer({ size: 4, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC });
    const good = `#include "common.wgsl"
const WG: u32 = 64u;
@group(0) @binding(0) var<storage, read_write> result: array<f32>;
@compute @workgroup_size(WG) fn main(@builtin(local_invocation_index) lid: u32) {
  let s = workgroupSum(lid, f32(lid));
  if (lid == 0u) { result[0] = s + negInf(); }
}`;
    await ctx.prepareShader(good);
    ctx.dispatch({ shader: good, entryPoint: 'main', resources: { result: buffer }, workgroups: [1] });
    const [bytes] = await ctx.read([{ buffer, bytes: 4 }]);
    out.set(new Float32Array(bytes));
    expect(out[0]).toBe(-Infinity);
    // Declaring a prelude name again: the redeclaration is the prelude's line, past the file's end.
    const clash = good.replace('const WG: u32 = 64u;', 'const WG: u32 = 64u;\nfn negInf() -> f32 { return 0.0; }');
    let caught: unknown = null;
    try {
      ctx.dispatch({ shader: clash, entryPoint: 'main', resources: { result: buffer }, workgroups: [1] });
      await ctx.sync();
    } catch (e) {
      caught = e;
    }
    const preludeLine = WGSL_INCLUDES['common.wgsl'].split('\n').findIndex((l) => l.startsWith('fn negInf')) + 1;
    expect(String(caught)).toMatch(new RegExp(`common\\.wgsl:${preludeLine}:\\d+ error: redeclaration of 'negInf'`));
    expect(String(caught)).toMatch(/:3:1 note: 'negInf' previously declared here/);
    buffer.destroy();
  });

  it("a compile error in a kernel that includes the prelude is reported at the kernel's own line", async () => {
    const ctx = await gpu();
    const softmax = KERNELS['../../shaders/softmax.wgsl'];
    const lines = softmax.split('\n');
    const target = lines.findIndex((l) => /let logS = log\(s\);/.test(l));
    expect(target).toBeGreaterThan(0);
    lines[target] = lines[target].replace('log(s);', 'log(s) + ;');
    // In an error scope: an uncaptured error would fail the context's next, unrelated, check.
    ctx.device.pushErrorScope('validation');
    const module = ctx.device.createShaderModule({ code: composeWgsl(lines.join('\n')).code });
    const scope = ctx.device.popErrorScope();
    const errors = (await module.getCompilationInfo()).messages.filter((m) => m.type === 'error');
    expect((await scope)?.message).toMatch(/unable to parse/);
    expect(errors.map((m) => m.lineNum)).toEqual([target + 1]);
  });
});
