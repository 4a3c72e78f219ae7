/**
 * The privacy-utility frontier as an SVG (no dependency): two panels sharing the x axis, the
 * next-token accuracy drop in points (utility lost); on the left the NN-FR by cosine, on the right
 * the learned linear attack's token-recovery rate (privacy). One curve per factory, its points in
 * the order of the swept privacy weight; the target region (NN-FR >= 0.93 at < 1 point of drop)
 * shaded on the left, the attack's recovery on clean embeddings dashed on the right.
 */

/** One measured point of the sweep, as the chart reads it. */
export interface FrontierPoint {
  factory: string;
  /** The swept knob's value (labels the marker's tooltip). */
  knob: number;
  accuracyDropPoints: number;
  nnfr: number;
  attackRecovery: number | null;
}

const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e'];
const W = 980;
const H = 420;
const PANEL = { left: 64, top: 46, width: 380, height: 300, gap: 110 };

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/** Round tick values covering [lo, hi]. */
function ticks(lo: number, hi: number, count = 5): number[] {
  const raw = (hi - lo) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? 10 * mag;
  const out: number[] = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + 1e-9; v += step) out.push(Number(v.toFixed(10)));
  return out;
}

/**
 * The chart's SVG text.
 *
 * @param points - the measured points (any order; grouped by factory, each curve sorted by knob).
 * @param cleanRecovery - the attack's recovery rate on clean embeddings (a dashed line), or null.
 * @param title - the caption above the panels.
 */
export function frontierSvg(points: readonly FrontierPoint[], cleanRecovery: number | null, title: string): string {
  const factories = [...new Set(points.map((p) => p.factory))];
  const drops = points.map((p) => p.accuracyDropPoints);
  const xMin = Math.min(0, ...drops);
  const xMax = Math.max(2, ...drops) * 1.05;
  const x = (v: number, panel: number) => PANEL.left + panel * (PANEL.width + PANEL.gap) + ((v - xMin) / (xMax - xMin)) * PANEL.width;
  const y = (v: number) => PANEL.top + (1 - v) * PANEL.height;
  const parts: string[] = [];
  parts.push(`<rect width="${W}" height="${H}" fill="white"/>`);
  parts.push(`<text x="${W / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold">${esc(title)}</text>`);
  const panels = [
    { label: 'NN-FR (cosine): share of tokens not recovered', value: (p: FrontierPoint) => p.nnfr },
    { label: 'learned linear attack: share of tokens recovered', value: (p: FrontierPoint) => p.attackRecovery },
  ];
  panels.forEach((panel, i) => {
    const x0 = PANEL.left + i * (PANEL.width + PANEL.gap);
    if (i === 0) {
      // The target: NN-FR >= 0.93 with under 1 point of accuracy drop.
      parts.push(
        `<rect x="${x(Math.max(xMin, 0), 0)}" y="${y(1)}" width="${x(1, 0) - x(Math.max(xMin, 0), 0)}" height="${y(0.93) - y(1)}" fill="#2ca02c" fill-opacity="0.15"/>`,
      );
      parts.push(`<text x="${x(0.05, 0) + 2}" y="${y(0.93) - 4}" font-size="10" fill="#1a6e1a">target</text>`);
    }
    if (i === 1 && cleanRecovery !== null) {
      parts.push(
        `<line x1="${x0}" x2="${x0 + PANEL.width}" y1="${y(cleanRecovery)}" y2="${y(cleanRecovery)}" stroke="#555" stroke-dasharray="5,4"/>`,
      );
      parts.push(
        `<text x="${x0 + PANEL.width - 4}" y="${y(cleanRecovery) + 13}" text-anchor="end" font-size="10" fill="#555">clean embeddings ${(100 * cleanRecovery).toFixed(1)}%</text>`,
      );
    }
    parts.push(`<rect x="${x0}" y="${PANEL.top}" width="${PANEL.width}" height="${PANEL.height}" fill="none" stroke="#333"/>`);
    for (const t of ticks(0, 1)) {
      parts.push(`<line x1="${x0 - 4}" x2="${x0}" y1="${y(t)}" y2="${y(t)}" stroke="#333"/>`);
      parts.push(`<text x="${x0 - 7}" y="${y(t) + 4}" text-anchor="end" font-size="11">${Math.round(100 * t)}%</text>`);
    }
    for (const t of ticks(xMin, xMax)) {
      parts.push(
        `<line x1="${x(t, i)}" x2="${x(t, i)}" y1="${PANEL.top + PANEL.height}" y2="${PANEL.top + PANEL.height + 4}" stroke="#333"/>`,
      );
      parts.push(`<text x="${x(t, i)}" y="${PANEL.top + PANEL.height + 17}" text-anchor="middle" font-size="11">${t}</text>`);
    }
    parts.push(
      `<text x="${x0 + PANEL.width / 2}" y="${PANEL.top + PANEL.height + 34}" text-anchor="middle" font-size="12">next-token accuracy drop (points)</text>`,
    );
    parts.push(`<text x="${x0 + PANEL.width / 2}" y="${PANEL.top - 8}" text-anchor="middle" font-size="12">${esc(panel.label)}</text>`);
    factories.forEach((f, k) => {
      const color = COLORS[k % COLORS.length];
      const curve = points
        .filter((p) => p.factory === f && panel.value(p) !== null)
        .sort((a, b) => a.knob - b.knob)
        .map((p) => ({ p, px: x(p.accuracyDropPoints, i), py: y(panel.value(p) as number) }));
      if (curve.length > 1)
        parts.push(
          `<polyline fill="none" stroke="${color}" stroke-width="1.8" points="${curve.map((c) => `${c.px.toFixed(1)},${c.py.toFixed(1)}`).join(' ')}"/>`,
        );
      for (const c of curve) {
        parts.push(
          `<circle cx="${c.px.toFixed(1)}" cy="${c.py.toFixed(1)}" r="3.5" fill="${color}"><title>${esc(f)} knob ${c.p.knob}: drop ${c.p.accuracyDropPoints.toFixed(2)} pt, ${(100 * (panel.value(c.p) as number)).toFixed(1)}%</title></circle>`,
        );
      }
    });
  });
  // The legend, under the panels.
  factories.forEach((f, k) => {
    const lx = PANEL.left + k * 230;
    const ly = H - 14;
    parts.push(`<rect x="${lx}" y="${ly - 9}" width="12" height="12" fill="${COLORS[k % COLORS.length]}"/>`);
    parts.push(`<text x="${lx + 17}" y="${ly + 1}" font-size="12">${esc(f)}</text>`);
  });
  return `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" font-family="sans-serif">\n${parts.join('\n')}\n</svg>\n`;
}
