// The monitoring tab (F7.1): training curves over steps and each worker's resources
// over time, drawn with uPlot (static/js/charts.js) from /jobs/<id>/metrics/, asked
// again every few seconds while the job runs. Every word shown comes from the page (#monitor-config), so
// the charts speak the page's language.
(function () {
  "use strict";

  const config = JSON.parse(document.getElementById("monitor-config").textContent);
  const words = config.labels;
  const root = document.querySelector("[data-testid=monitoring]");
  const rangeSelect = document.getElementById("monitor-range");
  const stateLine = root.querySelector("[data-testid=monitor-state]");
  let timer = null;
  let inFlight = null;

  const { say, bytes, byteTicks, number, percent, perSecond, hasValues } = window.JingtiaoCharts;

  // --- what each chart draws, from one answer ------------------------------------------
  function training(data, fields) {
    const t = data.training;
    const shown = fields.filter(([field]) => hasValues(t[field] || []));
    return {
      x: "step",
      data: [t.step, ...shown.map(([field]) => t[field])],
      series: shown.map(([field, label]) => ({ label })),
    };
  }

  function perWorker(data, columns, format) {
    const workers = Object.entries(data.resources);
    const tables = [];
    const series = [];
    for (const [name, samples] of workers) {
      for (const [field, label] of columns) {
        if (!hasValues(samples[field])) continue;
        tables.push([samples.time, samples[field]]);
        const who = samples.label || name;
        series.push({ label: label ? `${who} ${label}` : who });
      }
    }
    if (!tables.length) return { x: "time", data: [[]], series: [] };
    return { x: "time", data: uPlot.join(tables), series, format };
  }

  const CHARTS = {
    loss: {
      build: (d) =>
        training(d, [
          ["loss", words.loss],
          ["eval_loss", words.eval_loss],
          ["test_loss", words.test_loss],
        ]),
      format: number,
    },
    learning_rate: { build: (d) => training(d, [["learning_rate", words.learning_rate]]), format: number },
    throughput: { build: (d) => training(d, [["tokens_per_second", words.tokens_per_second]]), format: number },
    cpu: { build: (d) => perWorker(d, [["cpu_percent", ""]]), format: percent },
    memory: { build: (d) => perWorker(d, [["memory_bytes", ""]]), format: bytes, ticks: byteTicks },
    device_util: { build: (d) => perWorker(d, [["device_util", ""]]), format: percent },
    device_memory: {
      build: (d) => perWorker(d, [["device_memory_bytes", ""]]),
      format: bytes,
      ticks: byteTicks,
    },
    network: {
      build: (d) =>
        perWorker(d, [
          ["net_rx_per_s", words.received],
          ["net_tx_per_s", words.sent],
        ]),
      format: perSecond,
      ticks: (ticks) => byteTicks(ticks).map((shown) => `${shown}/s`),
    },
  };

  // The figures this job shows (no tokens/s for an image model).
  const slots = {};
  for (const name of Object.keys(CHARTS)) {
    const figure = root.querySelector(`[data-chart="${name}"]`);
    if (figure) slots[name] = window.JingtiaoCharts.slot(figure, CHARTS[name], words);
  }

  function showProgress(data) {
    const box = root.querySelector("[data-testid=progress]");
    if (!box) return;
    box.hidden = data.progress == null;
    if (data.progress != null) {
      box.querySelector("progress").value = data.progress;
      box.querySelector("[data-testid=progress-text]").textContent = data.progress_text;
    }
  }

  // Text-to-image: the sample images drawn at each evaluation, in step order; an
  // image already shown is kept (no flicker), a new one is added.
  function showSamples(data) {
    const grid = root.querySelector("[data-testid=sample-grid]");
    if (!grid) return;
    grid.parentElement.querySelector(".empty").hidden = (data.samples || []).length > 0;
    const wanted = (data.samples || []).map((one) => one.url);
    for (const shown of [...grid.children]) {
      if (!wanted.includes(shown.dataset.url)) shown.remove();
    }
    data.samples.forEach((one, index) => {
      if (grid.querySelector(`[data-url="${CSS.escape(one.url)}"]`)) return;
      const figure = document.createElement("figure");
      figure.dataset.url = one.url;
      const image = document.createElement("img");
      image.src = one.url;
      image.loading = "lazy";
      const caption = document.createElement("figcaption");
      caption.textContent = one.step == null ? words.sample_final : say(words.sample_step, { step: one.step });
      image.alt = caption.textContent;
      figure.append(image, caption);
      grid.insertBefore(figure, grid.children[index] || null);
    });
  }

  // --- asking ------------------------------------------------------------------------------
  async function refresh() {
    clearTimeout(timer);
    if (inFlight) inFlight.abort();
    inFlight = new AbortController();
    const url = `${config.url}?range=${encodeURIComponent(rangeSelect.value)}`;
    let data;
    try {
      const response = await fetch(url, { signal: inFlight.signal, headers: { Accept: "application/json" } });
      data = await response.json();
      if (!response.ok) throw new Error(data.error || response.statusText);
    } catch (error) {
      if (error.name === "AbortError") return;
      stateLine.textContent = say(words.failed, { error: error.message });
      root.dataset.state = "error";
      timer = setTimeout(refresh, config.poll_ms * 2);
      return;
    }
    for (const [name, slot] of Object.entries(slots)) slot.show(CHARTS[name].build(data));
    showProgress(data);
    showSamples(data);
    // the page's status badge follows the job too (the details tab refreshes itself)
    const badge = document.querySelector(".page-header [data-testid=status]");
    if (badge) {
      badge.textContent = data.status_label;
      badge.className = `badge status-${data.status}`;
    }
    const now = new Date().toLocaleTimeString();
    stateLine.textContent = data.running ? say(words.live, { time: now }) : say(words.ended, { status: data.status_label });
    root.dataset.state = data.running ? "live" : "ended";
    if (data.running) timer = setTimeout(refresh, config.poll_ms);
  }

  rangeSelect.addEventListener("change", () => {
    const address = new URL(window.location.href);
    address.searchParams.set("range", rangeSelect.value);
    window.history.replaceState(null, "", address);
    refresh();
  });

  window.addEventListener("resize", () => {
    for (const slot of Object.values(slots)) slot.resize();
  });

  refresh();
})();
