/**
 * Live line charts over training steps (uPlot), sized to their container, with optional dashed
 * baselines (the values before training) to judge a short run against.
 */
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';

const PALETTE = ['#1f2937', '#2563eb', '#dc2626', '#059669', '#d97706', '#7c3aed', '#db2777', '#0891b2', '#65a30d'];

/** Options of {@link LineChart}. */
export interface LineChartOptions {
  /** A fixed y range (e.g. [0, 1] for rates); default: fitted to the data. */
  yRange?: [number, number];
  /** Digits the legend shows. */
  digits?: number;
  /** Values are shares in [0, 1]: the legend and the axis show them as percentages, as the metric tiles do. */
  percent?: boolean;
  /** Draw a dot at every point (for sparse series, such as metrics taken every K steps). */
  points?: boolean;
  /** Index into the palette of the first series (so that small multiples differ in colour). */
  colorOffset?: number;
  height?: number;
}

/**
 * A chart of several series against the step. Series are given on {@link reset} (the loss
 * components depend on the factory, known only once the first step reports them).
 */
export class LineChart {
  private plot: uPlot | null = null;
  private data: number[][] = [];
  private labels: string[] = [];
  private baselines: (number | null)[] = [];
  private pending = false;
  private readonly resize: ResizeObserver;

  constructor(
    private readonly container: HTMLElement,
    private readonly options: LineChartOptions = {},
  ) {
    // Only a width change resizes: the plot sets the container's height itself.
    let lastWidth = 0;
    this.resize = new ResizeObserver(() => {
      const width = this.width();
      if (width === lastWidth) return;
      lastWidth = width;
      this.plot?.setSize({ width, height: this.options.height ?? 260 });
    });
    this.resize.observe(container);
  }

  /** Series labels so far (empty before the first {@link reset}). */
  get series(): readonly string[] {
    return this.labels;
  }

  /** Points plotted per series. */
  get length(): number {
    return this.data[0]?.length ?? 0;
  }

  /** Starts over with these series, no points and no baselines. */
  reset(labels: string[]): void {
    this.plot?.destroy();
    this.labels = [...labels];
    this.baselines = [];
    delete this.container.dataset.baselines;
    this.data = [[], ...labels.map(() => [])];
    const digits = this.options.digits ?? 4;
    const percent = this.options.percent ?? false;
    const show = (v: number) => (percent ? `${(100 * v).toFixed(digits)}%` : v.toFixed(digits));
    const opts: uPlot.Options = {
      width: this.width(),
      height: this.options.height ?? 260,
      scales: { x: { time: false }, y: this.options.yRange ? { range: this.options.yRange } : { auto: true } },
      axes: [{ label: 'step' }, percent ? { size: 60, values: (_u, ticks) => ticks.map((t) => `${Math.round(100 * t)}%`) } : { size: 60 }],
      legend: { live: true },
      cursor: { drag: { x: true, y: false } },
      hooks: { draw: [(u) => this.drawBaselines(u)] },
      series: [
        { label: 'step', value: (_u, v) => (v == null ? '–' : String(v)) },
        ...labels.map((label, i) => ({
          label,
          stroke: this.color(i),
          width: i === 0 && label === 'loss' ? 2.5 : 1.5,
          spanGaps: true,
          points: { show: this.options.points ?? false, size: 6 },
          value: (_u: uPlot, v: number | null) => (v == null ? '–' : show(v)),
        })),
      ],
    };
    this.plot = new uPlot(opts, this.data as uPlot.AlignedData, this.container);
  }

  /** Adds one point per series at `x` (null leaves a gap); redraws at the next frame. */
  push(x: number, values: (number | null)[]): void {
    if (!this.plot) return;
    this.data[0].push(x);
    this.labels.forEach((_, i) => {
      this.data[i + 1].push(values[i] ?? (null as unknown as number));
    });
    this.redrawSoon();
  }

  /**
   * Draws a dashed horizontal line per series at these values (null: none), in the series'
   * colour, until the next {@link reset}. Where each was drawn (canvas pixels) is written to the
   * container's `data-baselines`, for the end-to-end test to find it on the canvas.
   */
  setBaselines(values: (number | null)[]): void {
    this.baselines = this.labels.map((_, i) => values[i] ?? null);
    this.redrawSoon();
  }

  /** Removes the plot and stops following the container's size. */
  destroy(): void {
    this.resize.disconnect();
    this.plot?.destroy();
    this.plot = null;
  }

  /** Redraws with the data and baselines at the next frame (once, however many changes come before it). */
  private redrawSoon(): void {
    if (this.pending || !this.plot) return;
    this.pending = true;
    requestAnimationFrame(() => {
      this.pending = false;
      // setData rebuilds the paths (the data arrays grew in place) and redraws, baselines included.
      this.plot?.setData(this.data as uPlot.AlignedData);
      // The legend shows the latest values until the pointer picks another step.
      if (this.data[0].length) this.plot?.setLegend({ idx: this.data[0].length - 1 });
    });
  }

  private width(): number {
    return Math.max(240, this.container.clientWidth);
  }

  private color(i: number): string {
    return PALETTE[(i + (this.options.colorOffset ?? 0)) % PALETTE.length];
  }

  /** uPlot's draw hook: the baselines over the plotted series (the canvas is in device pixels). */
  private drawBaselines(u: uPlot): void {
    const drawn: { label: string; value: number; y: number; left: number; width: number; color: string }[] = [];
    const { left, top, width, height } = u.bbox;
    const dpr = window.devicePixelRatio || 1;
    const ctx = u.ctx;
    this.baselines.forEach((value, i) => {
      if (value === null || !Number.isFinite(value)) return;
      const y = Math.round(u.valToPos(value, 'y', true));
      if (y < top || y > top + height) return;
      const color = this.color(i);
      ctx.save();
      ctx.strokeStyle = color;
      ctx.lineWidth = Math.max(1, Math.round(1.5 * dpr));
      ctx.setLineDash([6 * dpr, 4 * dpr]);
      ctx.beginPath();
      ctx.moveTo(left, y);
      ctx.lineTo(left + width, y);
      ctx.stroke();
      ctx.restore();
      drawn.push({ label: this.labels[i], value, y, left: Math.round(left), width: Math.round(width), color });
    });
    if (drawn.length) this.container.dataset.baselines = JSON.stringify(drawn);
    else delete this.container.dataset.baselines;
  }
}

/** "distillationCrossEntropyLoss" -> "Distillation cross entropy loss". */
function words(key: string): string {
  const s = key.replace(/([a-z0-9])([A-Z])/g, '$1 $2').toLowerCase();
  return s.charAt(0).toUpperCase() + s.slice(1);
}

/**
 * One small chart per loss component (and one for the total), each on its own y scale: the
 * components differ by orders of magnitude (a mutual-information estimate in the thousands next
 * to a cosine distance below 1), which one shared axis would flatten.
 */
export class LossCharts {
  private charts = new Map<string, LineChart>();

  constructor(private readonly grid: HTMLElement) {}

  /** The component keys being plotted, total first. */
  get keys(): string[] {
    return [...this.charts.keys()];
  }

  /** Starts over with a chart per key. */
  reset(keys: string[]): void {
    for (const c of this.charts.values()) c.destroy();
    this.charts.clear();
    this.grid.replaceChildren();
    for (const [i, key] of keys.entries()) {
      const figure = document.createElement('figure');
      const caption = document.createElement('figcaption');
      const code = document.createElement('code');
      code.textContent = key;
      caption.append(key === 'loss' ? 'Total loss (the weighted sum) ' : `${words(key)} `, code);
      const box = document.createElement('div');
      box.className = 'chart chart-small';
      box.dataset.testid = `chart-loss-${key}`;
      figure.append(caption, box);
      this.grid.append(figure);
      const chart = new LineChart(box, { height: 170, digits: 4, colorOffset: i });
      chart.reset([key]);
      this.charts.set(key, chart);
    }
  }

  /** Adds the step's value to every chart. */
  push(step: number, components: Record<string, number>): void {
    for (const [key, chart] of this.charts) chart.push(step, [components[key] ?? null]);
  }

  /** A dashed baseline on every chart at its component's value (the values before training). */
  setBaselines(components: Record<string, number>): void {
    for (const [key, chart] of this.charts) chart.setBaselines([components[key] ?? null]);
  }
}
