/* The jobs pages. The list polls GET /v1/fine_tuning/jobs while a job on it can change by itself and updates
   its rows; a job's page polls the job, its events and checkpoints until it ends, draws its curves from the
   metrics events, and sends cancel / pause / resume to the /v1 routes. The server renders the first state. */
"use strict";
(function () {
  const JOBS = "/v1/fine_tuning/jobs";
  const POLL_MS = 2000;

  function config(id) {
    const node = document.getElementById(id);
    return node ? JSON.parse(node.textContent) : null;
  }

  /* A number as the server shows it (pages/jobs.py: number). */
  function number(value) {
    return typeof value === "number" ? String(Math.round(value * 1e4) / 1e4) : String(value);
  }

  function word(table, key) { return table[key] || key; }

  function methodOf(job) {
    return (job.result && job.result.method) || (job.method.tailor && job.method.tailor.method) || "auto";
  }

  function modelLink(job) {
    if (!job.fine_tuned_model) return "";
    const name = (job.result && job.result.name) || job.fine_tuned_model;
    return Tailor.el("a", { href: "/console/models/" + encodeURIComponent(name) }, job.fine_tuned_model);
  }

  function setBadge(node, status, labels) {
    node.className = "status status-" + status;
    node.textContent = word(labels.status, status);
  }

  /* --- /console/jobs ---------------------------------------------------------------------------------- */

  const CELLS = ["id", "model", "task", "method", "status", "created", "finished", "result"];

  function listPage(cfg) {
    const table = document.getElementById("jobs");
    if (!table) return;
    const body = table.tBodies[0];
    const labels = cfg.labels;

    function fill(row, job) {
      const badge = Tailor.el("span", {});
      setBadge(badge, job.status, labels);
      const content = {
        id: Tailor.el("a", { href: "/console/jobs/" + encodeURIComponent(job.id) }, job.id), model: job.model,
        task: word(labels.task, job.task), method: word(labels.method, methodOf(job)), status: badge,
        created: Tailor.timeNode(job.created_at), finished: Tailor.timeNode(job.finished_at), result: modelLink(job),
      };
      for (const name of CELLS) row.querySelector('[data-cell="' + name + '"]').replaceChildren(content[name]);
      row.dataset.status = job.status;
    }

    function changing() {
      return Array.from(body.rows).some(function (row) { return cfg.changing.includes(row.dataset.status); });
    }

    if (!changing()) return;
    Tailor.every(POLL_MS, async function () {
      const query = new URLSearchParams({ limit: cfg.limit });
      if (cfg.after) query.set("after", cfg.after);
      const listing = await Tailor.api("GET", JOBS + "?" + query);
      for (const job of listing.data.slice().reverse()) {
        let row = body.querySelector('tr[data-job-id="' + CSS.escape(job.id) + '"]');
        if (!row) {
          if (cfg.after) continue;  // only the newest page gains the jobs created since
          row = Tailor.el("tr", { "data-job-id": job.id },
                          CELLS.map(function (c) { return Tailor.el("td", { "data-cell": c }); }));
          body.prepend(row);
        }
        if (row.dataset.status !== job.status) fill(row, job);
      }
      return changing();
    });
  }

  /* --- /console/jobs/{id} ----------------------------------------------------------------------------- */

  function jobPage(cfg) {
    const labels = cfg.labels;
    let job = cfg.job;
    const base = JOBS + "/" + encodeURIComponent(job.id);
    const events = document.getElementById("events");
    const known = new Set(Array.from(events.children).map(function (li) { return li.dataset.eventId; }));

    function draw() {
      for (const chart of cfg.charts) {
        TailorChart.line(document.querySelector('[data-chart="' + CSS.escape(chart.id) + '"]'), chart);
      }
    }

    /* A metrics event's values join their curves (pages/jobs.py: charts): a later one at a step replaces. */
    function addPoints(event) {
      const data = event.data || {};
      if (event.type !== "metrics" || !Number.isInteger(data.step)) return;
      for (const chart of cfg.charts) {
        for (const series of chart.series) {
          if (!(series.key in data)) continue;
          const at = series.points.findIndex(function (p) { return p[0] === data.step; });
          if (at >= 0) series.points[at] = [data.step, data[series.key]];
          else {
            series.points.push([data.step, data[series.key]]);
            series.points.sort(function (a, b) { return a[0] - b[0]; });
          }
        }
      }
    }

    function addEvent(event) {
      known.add(event.id);
      const kind = "event level-" + event.level + " type-" + event.type;
      events.prepend(Tailor.el("li", { "data-event-id": event.id, class: kind }, Tailor.timeNode(event.created_at), " ",
                               Tailor.el("span", { class: "message" }, event.message)));
      addPoints(event);
    }

    /* The events newer than those shown: the API lists newest first, so read pages until a known one. */
    async function newEvents() {
      const fresh = [];
      let after = null;
      for (let pages = 0; pages < 20; pages++) {
        const query = new URLSearchParams({ limit: 100 });
        if (after) query.set("after", after);
        const listing = await Tailor.api("GET", base + "/events?" + query);
        const seen = listing.data.findIndex(function (e) { return known.has(e.id); });
        fresh.push(...(seen >= 0 ? listing.data.slice(0, seen) : listing.data));
        if (seen >= 0 || !listing.has_more || !listing.data.length) break;
        after = listing.data[listing.data.length - 1].id;
      }
      if (!fresh.length) return;
      fresh.reverse().forEach(addEvent);
      document.getElementById("events-none").hidden = true;
      draw();
    }

    /* A checkpoint's metrics in the server's order (pages/jobs.py: metrics_of). */
    function rank(key) {
      const at = cfg.metrics.indexOf(key);
      return at < 0 ? cfg.metrics.length : at;
    }

    async function checkpoints() {
      const listing = await Tailor.api("GET", base + "/checkpoints?limit=100");
      const table = document.getElementById("checkpoints");
      const body = table.tBodies[0];
      if (listing.data.length === body.rows.length) return;
      body.replaceChildren(...listing.data.map(function (c) {
        const metrics = Object.entries(c.metrics).filter(function (m) { return m[0] !== "step"; })
          .sort(function (a, b) { return rank(a[0]) - rank(b[0]) || (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0); })
          .map(function (m) {
            return Tailor.el("span", { class: "metric" }, word(labels.metric, m[0]) + " " + number(m[1]));
          });
        return Tailor.el("tr", {}, Tailor.el("td", { class: "num" }, c.step_number),
                         Tailor.el("td", {}, Tailor.el("code", {}, c.fine_tuned_model_checkpoint)),
                         Tailor.el("td", {}, metrics), Tailor.el("td", {}, Tailor.timeNode(c.created_at)));
      }));
      table.hidden = false;
      document.getElementById("checkpoints-none").hidden = true;
    }

    const actions = document.getElementById("job-actions");

    function showStatus(next) {
      const ended = next.status !== job.status && cfg.final.includes(next.status);
      job = next;
      setBadge(document.getElementById("job-status"), job.status, labels);
      if (actions) {
        actions.querySelectorAll("button[data-action]").forEach(function (button) {
          button.hidden = !(cfg.actions[button.dataset.action] || []).includes(job.status);
        });
      }
      // The job's outcome (its model, scores or error) is rendered by the server: show the page anew.
      if (ended) location.reload();
    }

    if (actions) {
      actions.addEventListener("click", async function (e) {
        const button = e.target.closest("button[data-action]");
        if (!button) return;
        const buttons = actions.querySelectorAll("button");
        Tailor.clearErrors(actions);
        buttons.forEach(function (b) { b.disabled = true; });
        try {
          const next = await Tailor.api("POST", base + "/" + button.dataset.action);
          await newEvents();
          showStatus(next);
        } catch (failure) {
          if (!(failure instanceof Tailor.ApiFailure)) throw failure;
          Tailor.showError(actions, failure);  // e.g. 409: the job's status changed meanwhile
        } finally {
          buttons.forEach(function (b) { b.disabled = false; });
        }
      });
    }

    document.getElementById("show-metrics").addEventListener("change", function (e) {
      events.classList.toggle("hide-metrics", !e.target.checked);
    });

    draw();
    if (cfg.final.includes(job.status)) return;
    Tailor.every(POLL_MS, async function () {
      const next = await Tailor.api("GET", base);
      await newEvents();
      await checkpoints();
      showStatus(next);
      return !cfg.final.includes(next.status);
    });
  }

  const list = config("jobs-config");
  if (list) listPage(list);
  const one = config("job-config");
  if (one) jobPage(one);
})();
