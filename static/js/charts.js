// The charts every page draws with uPlot (the monitoring tab, the loss-curve
// comparison): number and byte formats, scales that behave around one sample, time
// ticks in the page's language, whole-number steps, and a figure that redraws its
// chart in place. Each figure holds a `.plot` and an `.empty` note; what an axis
// shows is also written on the figure (data-x-ticks, data-y-ticks), since uPlot
// draws on a canvas where no reader or test can see it.
window.JingtiaoCharts = (function () {
  "use strict";

  const palette = ["#2f6fed", "#e8684a", "#5ab06b", "#9b59b6", "#f2b632", "#1abc9c", "#7f8c8d", "#c0392b"];
  const say = (template, values) =>
    template.replace(/%\((\w+)\)s/g, (match, name) => (name in values ? values[name] : match));

  // A number of bytes as [value, unit]: 604000000 -> [576.0..., "MiB"].
  function inUnits(value) {
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let unit = 0;
    while (Math.abs(value) >= 1024 && unit < units.length - 1) {
      value /= 1024;
      unit += 1;
    }
    return [value, units[unit]];
  }
  function bytes(value) {
    if (value == null) return "—";
    const [scaled, unit] = inUnits(value);
    return `${scaled.toFixed(scaled >= 100 || unit === "B" ? 0 : 1)} ${unit}`;
  }
  // Byte ticks with as many decimals as it takes to tell them apart ("576.2 MiB" and
  // "576.4 MiB", never "576 MiB" twice).
  function byteTicks(ticks) {
    for (let digits = 1; digits <= 4; digits += 1) {
      const shown = ticks.map((value) => bytesWith(value, digits));
      if (new Set(shown).size === shown.length) return shown;
    }
    return ticks.map((value) => bytesWith(value, 4));
  }
  function bytesWith(value, digits) {
    if (value == null) return "—";
    const [scaled, unit] = inUnits(value);
    return `${Number(scaled.toFixed(unit === "B" ? 0 : digits))} ${unit}`;
  }
  const number = (value) => (value == null ? "—" : Number(value.toPrecision(4)).toString());
  const percent = (value) => (value == null ? "—" : `${value.toFixed(0)}%`);
  const perSecond = (value) => (value == null ? "—" : `${bytes(value)}/s`);

  const hasValues = (column) => column.some((value) => value != null);

  // A scale around a single value (one sample, a constant) gets `pad` on each side,
  // instead of uPlot's guess (years around one timestamp). Values (`relative`) widen
  // by a tenth of themselves; steps and times by `pad` alone: a tenth of a timestamp
  // is five years.
  const widen = (pad, { nice = false, relative = false } = {}) => (u, min, max) => {
    if (min == null || max == null) return [0, 1];
    if (min !== max) return nice ? uPlot.rangeNum(min, max, 0.1, true) : [min, max];
    const around = (relative && Math.abs(min) * 0.1) || pad;
    return [min - around, max + around];
  };
  // The x scale from the data itself: uPlot widens a single moment by a year or more
  // before it asks, so that case is taken from the data, `pad` on each side.
  const widenX = (pad) => (u, min, max) => {
    const xs = u.data[0] || [];
    if (xs.length && xs[0] === xs[xs.length - 1]) return [xs[0] - pad, xs[0] + pad];
    return widen(pad)(u, min, max);
  };
  // Times on the axis in the page's language: the hour and minute, with the day when
  // the chart spans more than one, with the second when it spans a few minutes.
  const language = document.documentElement.lang || undefined;
  const clock = new Intl.DateTimeFormat(language, { hour: "2-digit", minute: "2-digit" });
  const seconds = new Intl.DateTimeFormat(language, {
    hour: "2-digit",
    minute: "2-digit",
    second: "2-digit",
  });
  const dated = new Intl.DateTimeFormat(language, {
    month: "numeric",
    day: "numeric",
    hour: "2-digit",
    minute: "2-digit",
  });
  function timeTicks(u, ticks) {
    const span = (u.scales.x.max || 0) - (u.scales.x.min || 0);
    // a chart of a few minutes would repeat its minute on every tick: seconds then
    const format = span > 86400 ? dated : span > 600 ? clock : seconds;
    return ticks.map((tick) => format.format(new Date(tick * 1000)));
  }
  // Steps are whole numbers: no tick at 1.2 or 1.4.
  const STEP_INCREMENTS = [];
  for (let decade = 1; decade <= 1e9; decade *= 10) STEP_INCREMENTS.push(decade, 2 * decade, 5 * decade);
  function options(figure, built, spec, words) {
    const format = spec.format;
    const width = Math.max(240, figure.querySelector(".plot").clientWidth || 480);
    const byStep = built.x === "step";
    // What each axis shows is also kept on the figure (data-x-ticks, data-y-ticks):
    // uPlot draws it on a canvas, where no reader or test can see it.
    const shown = (axis, labels) => {
      figure.dataset[axis] = labels.join("|");
      return labels;
    };
    const xAxis = byStep
      ? {
          incrs: STEP_INCREMENTS,
          values: (u, ticks) => shown("xTicks", ticks.map(String)),
        }
      : { values: (u, ticks) => shown("xTicks", timeTicks(u, ticks)) };
    return {
      width,
      height: 200,
      scales: {
        x: { time: !byStep, range: widenX(byStep ? 1 : 60) },
        y: { range: widen(1, { nice: true, relative: true }) },
      },
      legend: { live: true },
      cursor: { drag: { x: true, y: false } },
      series: [
        { label: byStep ? words.step : words.time, value: byStep ? (u, v) => (v == null ? "—" : v) : undefined },
        ...built.series.map((one, index) => ({
          label: one.label,
          // a series may keep its colour (a compared job without validation loss)
          stroke: palette[(one.index ?? index) % palette.length],
          width: 1.5,
          spanGaps: true,
          points: { show: built.data[0].length < 40 },
          value: (u, v) => format(v),
        })),
      ],
      axes: [
        xAxis,
        {
          size: 84,
          values: (u, ticks) => shown("yTicks", spec.ticks ? spec.ticks(ticks) : ticks.map(format)),
        },
      ],
    };
  }


  // One figure's chart: `show(built)` draws `built` ({x, data, series}), redrawing in
  // place while the series stay the same, or shows the figure's empty note.
  function slot(figure, spec, words) {
    let held = null;
    const plotBox = figure.querySelector(".plot");
    return {
      show(built) {
        const empty = !built.series.length || !built.data[0].length;
        figure.querySelector(".empty").hidden = !empty;
        plotBox.hidden = empty;
        figure.dataset.points = empty ? "0" : String(built.data[0].length);
        figure.dataset.series = built.series.map((one) => one.label).join("|");
        if (empty) {
          if (held) held.plot.destroy();
          held = null;
          return;
        }
        const shape = built.series.map((one) => one.label).join("|");
        if (held && held.shape === shape) {
          held.plot.setData(built.data);
          return;
        }
        if (held) held.plot.destroy();
        held = { plot: new uPlot(options(figure, built, spec, words), built.data, plotBox), shape };
      },
      resize() {
        if (held) held.plot.setSize({ width: Math.max(240, plotBox.clientWidth), height: 200 });
      },
    };
  }

  return { palette, say, bytes, byteTicks, number, percent, perSecond, hasValues, slot };
})();
