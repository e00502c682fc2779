/* Monitoring page: charts of the model's report (GET /v1/models/{id}/monitoring), fetched again every 10 s,
   the monitoring settings form (PUT .../monitoring/config) and "check alerts now" (POST .../alerts/check). */
"use strict";
(function () {
  const root = document.getElementById("monitoring");
  if (!root) return;
  const t = Tailor.t;
  const model = root.dataset.model;
  const chat = root.dataset.task === "chat";
  const reportPath = "/v1/models/" + encodeURIComponent(model) + "/monitoring?hours=" +
    encodeURIComponent(root.dataset.hours) + "&bucket_minutes=" + encodeURIComponent(root.dataset.bucket);

  function seconds(iso) { return Date.parse(iso) / 1000; }

  function clock(x) {
    const date = new Date(x * 1000);
    const hours = Number(root.dataset.hours);
    const options = hours > 48 ? { month: "numeric", day: "numeric", hour: "2-digit" } : { hour: "2-digit", minute: "2-digit" };
    return date.toLocaleString(document.documentElement.lang, options);
  }

  /* One series: [x, y] per bucket where `value(bucket)` is a number (empty buckets leave gaps out). */
  function series(buckets, label, value) {
    const points = [];
    for (const b of buckets) {
      const y = value(b);
      if (y !== null && y !== undefined) points.push([seconds(b.start), y]);
    }
    return { label: label, points: points };
  }

  /* The served series and, as a flat line across the same buckets, the training texts' value of it. */
  function withTraining(served, reference) {
    if (reference === null || reference === undefined || !served.points.length) return [served];
    const points = served.points.map(function (p) { return [p[0], reference]; });
    return [served, { label: t("js.monitoring.series.training"), points: points }];
  }

  function classifierCharts(report) {
    const buckets = report.buckets;
    const labels = [...new Set(buckets.flatMap(function (b) { return Object.keys(b.labels || {}); }))].sort();
    const busy = buckets.filter(function (b) { return b.answers > 0; });
    return {
      requests: { series: [series(buckets, t("js.monitoring.series.requests"), function (b) { return b.requests; }),
                           series(buckets, t("js.monitoring.series.failed"), function (b) { return b.failed; })],
                  yMin: 0, yLabel: t("js.monitoring.unit.per_bucket") },
      latency: { series: [series(buckets, "p50", function (b) { return b.latency_ms_p50; }),
                          series(buckets, "p95", function (b) { return b.latency_ms_p95; })],
                 yMin: 0, yLabel: "ms" },
      labels: { series: labels.map(function (label) {
                  return series(busy, label, function (b) { return b.labels[label] || 0; }); }),
                yMin: 0, yMax: 1, yLabel: t("js.monitoring.unit.share") },
      confidence: { series: [series(buckets, t("js.monitoring.series.confidence"), function (b) { return b.confidence_mean; })],
                    yMin: 0, yMax: 1, yLabel: t("js.monitoring.unit.share") },
      accuracy: { series: [series(buckets, t("js.monitoring.series.estimated"), function (b) { return b.estimated_accuracy; }),
                           series(buckets, t("js.monitoring.series.measured"), function (b) { return b.measured_accuracy; })],
                  yMin: 0, yMax: 1, yLabel: t("js.monitoring.unit.share") },
      input_length: { series: withTraining(series(buckets, t("js.monitoring.series.served"), function (b) { return b.chars_mean; }),
                                           field(report, "drift.length.training_mean_chars")),
                      yMin: 0, yLabel: t("js.monitoring.unit.chars") },
      unknown_tokens: { series: withTraining(series(buckets, t("js.monitoring.series.served"), function (b) { return b.unknown_token_rate; }),
                                             field(report, "drift.unknown_tokens.training_rate")),
                        yMin: 0, yLabel: t("js.monitoring.unit.share") },
    };
  }

  function chatCharts(report) {
    const buckets = report.buckets;
    return {
      requests: { series: [series(buckets, t("js.monitoring.series.requests"), function (b) { return b.requests; })],
                  yMin: 0, yLabel: t("js.monitoring.unit.per_bucket") },
      latency: { series: [series(buckets, "p50", function (b) { return b.latency_ms_p50; })], yMin: 0, yLabel: "ms" },
      tokens: { series: [series(buckets, t("js.monitoring.series.completion_tokens"), function (b) { return b.completion_tokens; })],
                yMin: 0, yLabel: t("js.monitoring.unit.per_bucket") },
      answer_rates: { series: [series(buckets, t("js.monitoring.series.refusals"), function (b) { return b.refusal_rate; }),
                               series(buckets, t("js.monitoring.series.empty"), function (b) { return b.empty_rate; })],
                      yMin: 0, yMax: 1, yLabel: t("js.monitoring.unit.share") },
    };
  }

  function draw(report) {
    const charts = chat ? chatCharts(report) : classifierCharts(report);
    root.querySelectorAll("[data-chart]").forEach(function (place) {
      const spec = charts[place.dataset.chart];
      const title = place.parentElement.querySelector("figcaption").textContent;
      TailorChart.line(place, Object.assign({ title: title, xFormat: clock, empty: t("js.monitoring.no_points") }, spec));
    });
  }

  function field(report, path) {
    return path.split(".").reduce(function (value, key) { return value === null || value === undefined ? value : value[key]; }, report);
  }

  function format(kind, value) {
    if (value === null || value === undefined) return "–";
    const lang = document.documentElement.lang;
    if (kind === "pct") return (100 * value).toFixed(1) + "%";
    if (kind === "ms") return value.toLocaleString(lang, { minimumFractionDigits: 1, maximumFractionDigits: 1 }) + " ms";
    if (kind === "verdict") return t("js.monitoring.verdict." + value);
    if (kind === "int") return value.toLocaleString("en");
    return value.toFixed(3);
  }

  function show(report) {
    root.querySelectorAll("[data-field]").forEach(function (place) {
      place.textContent = format(place.dataset.format, field(report, place.dataset.field));
    });
    const totals = report.totals;
    const quiet = totals.requests === 0 && !totals.errors && !totals.client_errors;
    document.getElementById("quiet").hidden = !quiet;
    document.getElementById("charts").hidden = quiet;
    if (!quiet) draw(report);
  }

  const refreshed = document.getElementById("refreshed");
  async function refresh() {
    try {
      show(await Tailor.api("GET", reportPath));
      refreshed.textContent = t("js.monitoring.refreshed", { time: new Date().toLocaleTimeString(document.documentElement.lang) });
    } catch (failure) {
      refreshed.textContent = failure.message;
    }
  }

  const initial = JSON.parse(document.getElementById("monitoring-report").textContent);
  show(initial);
  const auto = document.getElementById("auto-refresh");
  let first = true;
  Tailor.every(10000, async function () {
    if (first) { first = false; return true; }  // the page came with the report
    if (auto.checked) await refresh();
    return true;
  });
  document.getElementById("refresh").addEventListener("click", refresh);

  const check = document.getElementById("check-alerts");
  if (check) {
    check.addEventListener("click", async function () {
      check.disabled = true;
      try {
        const changed = await Tailor.api("POST", "/v1/models/" + encodeURIComponent(model) + "/alerts/check");
        document.getElementById("check-result").textContent = t("js.monitoring.checked", { n: changed.data.length });
        if (changed.data.length) location.reload();
      } catch (failure) {
        Tailor.showError(document.getElementById("alert-actions"), failure);
      } finally {
        check.disabled = false;
      }
    });
  }

  const form = document.getElementById("monitoring-config");
  const rules = document.getElementById("rules");

  /* Rows are numbered in order, so their fields are named rules[i].metric ... as the API names them in errors. */
  function renumber() {
    rules.querySelectorAll("tr.rule").forEach(function (row, i) {
      row.querySelectorAll("[id], [for], [name], [data-error-for]").forEach(function (node) {
        for (const attr of ["id", "for", "name", "data-error-for"]) {
          const value = node.getAttribute(attr);
          if (value) node.setAttribute(attr, value.replace(/rule-[^-]+-/, "rule-" + i + "-").replace(/rules\[[^\]]+\]/, "rules[" + i + "]"));
        }
      });
    });
  }

  document.getElementById("add-rule").addEventListener("click", function () {
    rules.append(document.getElementById("rule-template").content.cloneNode(true));
    renumber();
    rules.querySelector("tr.rule:last-child select").focus();
  });
  rules.addEventListener("click", function (event) {
    const button = event.target.closest(".remove-rule");
    if (!button) return;
    button.closest("tr").remove();
    renumber();
    document.getElementById("add-rule").focus();
  });

  form.addEventListener("submit", async function (event) {
    event.preventDefault();
    Tailor.clearErrors(form);
    const saved = document.getElementById("saved");
    saved.textContent = "";
    const body = {
      store_inputs: form.elements.store_inputs.checked,
      window_hours: Number(form.elements.window_hours.value),
      webhook_url: form.elements.webhook_url.value.trim() || null,
      rules: [...rules.querySelectorAll("tr.rule")].map(function (row, i) {
        const value = function (name) { return row.querySelector('[name="rules[' + i + '].' + name + '"]').value; };
        return { metric: value("metric"), op: value("op"), threshold: Number(value("threshold")),
                 min_answers: parseInt(value("min_answers"), 10) };
      }),
    };
    try {
      await Tailor.api("PUT", "/v1/models/" + encodeURIComponent(form.dataset.model) + "/monitoring/config", body);
      saved.textContent = t("js.monitoring.saved");
    } catch (failure) {
      Tailor.showError(form, failure);
    }
  });
})();
