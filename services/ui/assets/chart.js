// A small stacked bar chart in plain SVG: requests per time bucket, split
// into successes, client errors and server errors. No library.

const SVG = 'http://www.w3.org/2000/svg';

export const SERIES = [
  { key: 'success', label: 'Successful', className: 'bar-success' },
  { key: 'client_error', label: 'Client errors (4xx)', className: 'bar-client' },
  { key: 'server_error', label: 'Server errors (5xx)', className: 'bar-server' },
];

function el(name, attrs = {}, children = []) {
  const node = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  for (const c of children) node.append(c);
  return node;
}

// 0, 1, 2, 5, 10, 20, 50 … : a round top for the y axis.
function niceMax(value) {
  if (value <= 4) return 4;
  const pow = 10 ** Math.floor(Math.log10(value));
  for (const m of [1, 2, 2.5, 5, 10]) {
    if (m * pow >= value) return m * pow;
  }
  return 10 * pow;
}

/**
 * Renders the chart into `container`, sized to its width.
 * buckets: [{start: Date, end: Date, total, success, client_error, server_error}]
 * options: {bucket: 'hour'|'day', describe(bucket) → label, tick(bucket) → short label}
 */
export function renderChart(container, buckets, options) {
  const width = Math.max(280, Math.floor(container.clientWidth || 720));
  const height = 220;
  const pad = { top: 12, right: 8, bottom: 28, left: 40 };
  const plotW = width - pad.left - pad.right;
  const plotH = height - pad.top - pad.bottom;
  const max = niceMax(Math.max(0, ...buckets.map((b) => b.total)));
  const total = buckets.reduce((n, b) => n + b.total, 0);
  const errors = buckets.reduce((n, b) => n + b.client_error + b.server_error, 0);

  const svg = el('svg', {
    class: 'chart-svg',
    width,
    height,
    viewBox: `0 0 ${width} ${height}`,
    role: 'img',
    'aria-label': options.summary(total, errors),
  });
  svg.append(el('title', {}, [options.summary(total, errors)]));

  // Horizontal grid lines and y labels.
  const grid = el('g', { class: 'chart-grid' });
  for (const f of [0, 0.25, 0.5, 0.75, 1]) {
    const y = pad.top + plotH - f * plotH;
    grid.append(el('line', { x1: pad.left, x2: width - pad.right, y1: y, y2: y }));
    const label = el('text', { x: pad.left - 8, y: y + 4, 'text-anchor': 'end' }, [
      String(Math.round(max * f)),
    ]);
    grid.append(label);
  }
  svg.append(grid);

  const n = Math.max(1, buckets.length);
  const slot = plotW / n;
  const barW = Math.max(1, Math.min(36, slot * 0.72));
  const bars = el('g', { class: 'chart-bars' });
  buckets.forEach((b, i) => {
    const x = pad.left + i * slot + (slot - barW) / 2;
    let y = pad.top + plotH;
    const group = el('g', { class: 'chart-bucket' });
    group.append(el('title', {}, [options.describe(b)]));
    // A full-height transparent target so the tooltip is easy to reach.
    group.append(el('rect', { class: 'bar-hit', x: pad.left + i * slot, y: pad.top, width: slot, height: plotH }));
    for (const s of SERIES) {
      const v = b[s.key] || 0;
      if (v <= 0) continue;
      const h = (v / max) * plotH;
      y -= h;
      group.append(el('rect', { class: s.className, x, y, width: barW, height: Math.max(h, 1) }));
    }
    bars.append(group);
  });
  svg.append(bars);

  // A few x labels, evenly spaced.
  const ticks = el('g', { class: 'chart-ticks' });
  const every = Math.max(1, Math.ceil(n / Math.max(2, Math.floor(plotW / 90))));
  buckets.forEach((b, i) => {
    if (i % every !== 0) return;
    const x = pad.left + i * slot + slot / 2;
    ticks.append(el('text', { x, y: height - 8, 'text-anchor': 'middle' }, [options.tick(b)]));
  });
  ticks.append(el('line', {
    class: 'chart-axis', x1: pad.left, x2: width - pad.right, y1: pad.top + plotH, y2: pad.top + plotH,
  }));
  svg.append(ticks);
  if (total === 0) {
    svg.append(el('text', {
      class: 'chart-empty', x: pad.left + plotW / 2, y: pad.top + plotH / 2, 'text-anchor': 'middle',
    }, ['No requests in this period']));
  }

  container.replaceChildren(svg);
  return { total, errors };
}
