/** The MIT license that package.json names is in the repository and in the npm tarball. */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { expect, it } from 'vitest';

const root = resolve(import.meta.dirname, '../..');

it('LICENSE is the MIT license of the sgt-webgpu authors, as package.json says, and npm pack ships it', () => {
  const pkg = JSON.parse(readFileSync(resolve(root, 'package.json'), 'utf8')) as { license: string; files: string[] };
  expect(pkg.license).toBe('MIT');
  const text = readFileSync(resolve(root, 'LICENSE'), 'utf8');
  expect(text.split('\n').slice(0, 3)).toEqual([
    'MIT License',
    '',
    expect.stringMatching(/^Copyright \(c\) \d{4} the sgt-webgpu authors$/),
  ]);
  expect(text).toContain('THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND');
  expect(pkg.files).toContain('LICENSE');
  const pack = spawnSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: root, encoding: 'utf8', timeout: 60_000 });
  expect(pack.status, pack.stderr).toBe(0);
  const [{ files }] = JSON.parse(pack.stdout) as [{ files: { path: string }[] }];
  expect(files.map((f) => f.path)).toContain('LICENSE');
});
