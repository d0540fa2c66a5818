// 对比损失曲线: the training and validation loss of several jobs on one chart each, by
// step, one colour per job in the order of the table above (static/js/charts.js).
// The data comes with the page; while a job runs, the page asks for it again.
(function () {
  "use strict";

  const Charts = window.JingtiaoCharts;
  const config = JSON.parse(document.getElementById("compare-config").textContent);
  const words = config.labels;
  const root = document.querySelector("[data-testid=compare]");
  const stateLine = root.querySelector("[data-testid=monitor-state]");
  const spec = { format: Charts.number };

  // One series per job with values of `field`, on the union of their steps.
  function build(data, field) {
    const tables = [];
    const series = [];
    data.jobs.forEach((job, index) => {
      if (!Charts.hasValues(job[field])) return;
      const steps = [];
      const values = [];
      job.step.forEach((step, at) => {
        if (job[field][at] == null) return;
        steps.push(step);
        values.push(job[field][at]);
      });
      tables.push([steps, values]);
      series.push({ label: job.label, index });
    });
    if (!tables.length) return { x: "step", data: [[]], series: [] };
    return { x: "step", data: uPlot.join(tables), series };
  }

  const slots = {};
  for (const field of ["loss", "eval_loss"]) {
    slots[field] = Charts.slot(root.querySelector(`[data-chart="${field}"]`), spec, words);
  }

  function show(data) {
    for (const [field, slot] of Object.entries(slots)) slot.show(build(data, field));
    const now = new Date().toLocaleTimeString();
    stateLine.textContent = data.running ? Charts.say(words.live, { time: now }) : "";
    root.dataset.state = data.running ? "live" : "ended";
  }

  async function refresh() {
    const address = new URL(config.url, window.location.href);
    address.searchParams.set("format", "json");
    try {
      const response = await fetch(address, { headers: { Accept: "application/json" } });
      if (!response.ok) throw new Error(response.statusText);
      const data = await response.json();
      show(data);
      if (data.running) setTimeout(refresh, config.poll_ms);
    } catch (error) {
      stateLine.textContent = Charts.say(words.failed, { error: error.message });
      setTimeout(refresh, config.poll_ms * 2);
    }
  }

  window.addEventListener("resize", () => {
    for (const slot of Object.values(slots)) slot.resize();
  });

  show(config.data);
  if (config.data.running) setTimeout(refresh, config.poll_ms);
})();
