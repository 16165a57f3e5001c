/* Metric values and units as the CLI prints them: `nas pareto` shows top1 as a percentage
   (97.50%, Python's {:.2%}) and other floats with 4 significant digits ({:.4g}); MACs and
   parameter counts as M/G as `nas supernet` does (2.35M). A metric's unit is read from its
   name, as every cost model names them: latency_ms, peak_sram_kb, flash_kb. */

const PERCENT = new Set(["top1"]); // nas.config.ACCURACY: the CLI's one percentage
const COUNTS = { macs: "MACs", params: "params" };
const SUFFIX_UNITS = { _ms: "ms", _us: "µs", _kb: "kB", _mb: "MB", _mj: "mJ", _w: "W" };

/** "stm32f746.latency_ms" -> "latency_ms": the device's prefix off. */
const base = (metric) => String(metric).split(".").pop();

/** The unit of a metric, or "" (top1: "%", macs: "MACs", x_ms: "ms", x_kb: "kB"). */
export function unitOf(metric) {
  const name = base(metric);
  if (PERCENT.has(name)) return "%";
  if (COUNTS[name]) return COUNTS[name];
  const suffix = Object.keys(SUFFIX_UNITS).find((s) => name.endsWith(s));
  return suffix ? SUFFIX_UNITS[suffix] : "";
}

/** An axis title: the metric as --where names it, and its unit. */
export function metricTitle(metric) {
  const unit = unitOf(metric);
  return unit ? `${metric} (${unit})` : metric;
}

function countText(value, decimals) {
  const abs = Math.abs(value);
  for (const [unit, suffix] of [[1e9, "G"], [1e6, "M"], [1e3, "k"]]) {
    if (abs >= unit) return `${(value / unit).toFixed(decimals ?? 2)}${suffix}`;
  }
  return String(Math.round(value));
}

/** One value of a metric as the CLI prints it, with its unit: "97.50%", "2.35M MACs",
    "12.34 ms". null/undefined: "—". */
export function fmtMetric(metric, value) {
  if (value === null || value === undefined || Number.isNaN(value)) return "—";
  if (typeof value !== "number") return String(value);
  const name = base(metric);
  if (PERCENT.has(name)) return `${(value * 100).toFixed(2)}%`;
  if (COUNTS[name]) return `${countText(value)} ${COUNTS[name]}`;
  const unit = unitOf(metric);
  const text = Number.isInteger(value) ? String(value) : String(+value.toPrecision(4));
  return unit ? `${text} ${unit}` : text;
}

/** A tick label of an axis of `metric` whose ticks are `step` apart: short, without the unit
    (the axis title has it), as many decimals as the step needs. */
export function fmtTick(metric, value, step) {
  const name = base(metric);
  // as many decimals as the step has: 2.5 -> 1, 0.05 -> 2, 20 -> 0
  const decimals = (scaled) => {
    for (let d = 0; d < 12; d++) if (Math.abs(scaled * 10 ** d - Math.round(scaled * 10 ** d)) < 1e-6) return d;
    return 12;
  };
  if (PERCENT.has(name)) return `${(value * 100).toFixed(decimals(step * 100))}%`;
  if (COUNTS[name]) {
    const size = Math.max(Math.abs(value), Math.abs(step));
    const [unit, suffix] = [[1e9, "G"], [1e6, "M"], [1e3, "k"]].find(([u]) => size >= u) || [1, ""];
    return `${(value / unit).toFixed(decimals(step / unit))}${suffix}`;
  }
  return String(+value.toFixed(decimals(step)));
}

/** Whether the CLI prints `metric` as a percentage (top1). */
export const isPercent = (metric) => PERCENT.has(base(metric));

/** A value with its prediction interval where the candidate row has one (`bounds`, at
    `coverage`): "1.93 (90%: 1.71–2.2)"; `format` prints each number. */
export function withInterval(c, metric, value, format) {
  const bound = c?.bounds?.[metric];
  if (!bound || c.coverage == null) return format(value);
  return `${format(value)} (${Math.round(c.coverage * 100)}%: ${format(bound.low)}–${format(bound.high)})`;
}
