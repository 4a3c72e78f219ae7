/** The privacy-frontier chart (scripts/frontier-chart.ts): one curve per factory and panel, points where their values say. */
import { describe, expect, it } from 'vitest';
import { frontierSvg, type FrontierPoint } from '../../scripts/frontier-chart';

const points: FrontierPoint[] = [
  { factory: 'a', knob: 1, accuracyDropPoints: 0.5, nnfr: 0.2, attackRecovery: 0.9 },
  { factory: 'a', knob: 0.5, accuracyDropPoints: 0, nnfr: 0, attackRecovery: 1 },
  { factory: 'a', knob: 2, accuracyDropPoints: 4, nnfr: 0.95, attackRecovery: null },
  { factory: 'b<c', knob: 0.1, accuracyDropPoints: 1, nnfr: 1, attackRecovery: 0.5 },
];

describe('frontierSvg', () => {
  const svg = frontierSvg(points, 0.99, 'title & more');

  it('draws a curve per factory with two or more points in each panel, and a marker per value', () => {
    // Factory a: 3 points on the left (a polyline), 2 with an attack value on the right (a polyline); b: one point each.
    expect(svg.match(/<polyline /g)).toHaveLength(2);
    expect(svg.match(/<circle /g)).toHaveLength(4 + 3);
    expect(svg).toContain('b&lt;c');
    expect(svg).toContain('title &amp; more');
    expect(svg).not.toMatch(/NaN|undefined/);
  });

  it('sorts each curve by the knob and places values on the axes: x from the drop, y from the rate', () => {
    // Panel 0: x spans [0, 4 * 1.05] over 380 px from 64; y spans [1, 0] over 300 px from 46.
    const left = svg
      .match(/<polyline [^>]*points="([^"]+)"/)![1]
      .split(' ')
      .map((p) => p.split(',').map(Number));
    const x = (v: number) => 64 + (v / 4.2) * 380;
    const y = (v: number) => 46 + (1 - v) * 300;
    expect(left).toEqual(
      [
        [x(0), y(0)],
        [x(0.5), y(0.2)],
        [x(4), y(0.95)],
      ].map(([px, py]) => [Number(px.toFixed(1)), Number(py.toFixed(1))]),
    );
    // The clean-embedding recovery line on the right panel.
    expect(svg).toContain('clean embeddings 99.0%');
  });
});
