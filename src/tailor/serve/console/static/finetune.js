/* Fine-tune page: keep the base models, methods and defaults in step with the training file's kind (chat
   files train chat bases with LoRA; text/label files train classifiers), show the job's time estimate
   (POST /v1/fine_tuning/jobs/estimate, debounced) as the form changes, and start the job
   (POST /v1/fine_tuning/jobs), its refusal shown beside the field the API names. */
"use strict";
(function () {
  const form = document.getElementById("finetune");
  const catalog = JSON.parse(document.getElementById("finetune-catalog").textContent);
  const field = function (id) { return document.getElementById(id); };
  const training = field("training_file"), validation = field("validation_file"), model = field("model");
  const method = field("method"), estimateBox = field("estimate"), launch = field("launch");
  const disabled = form.querySelector("fieldset").disabled;
  let task = null, timer = null, pending = null;

  function taskOfFile() {
    const option = training.selectedOptions[0];
    return option ? option.dataset.task : "classification";
  }

  function fill(select, items) {
    const keep = select.value;
    select.replaceChildren(...items.map(function (item) { return Tailor.el("option", { value: item.value }, item.text); }));
    if (items.some(function (item) { return item.value === keep; })) select.value = keep;
  }

  /* Bases, methods, validation files, defaults and help texts for the training file's kind. */
  function matchTask() {
    const wanted = taskOfFile();
    for (const option of validation.options) {
      if (!option.value) continue;
      const off = option.dataset.task !== wanted || option.value === training.value;
      option.hidden = off; option.disabled = off;
      if (off && option.selected) validation.value = "";
    }
    if (wanted === task) return;
    task = wanted;
    const spec = catalog[task];
    fill(model, spec.bases.map(function (b) { return { value: b.id, text: b.id }; }));
    fill(method, spec.methods.map(function (m) { return { value: m, text: Tailor.t("js.finetune.method." + m) }; }));
    field("method-help").textContent = Tailor.t("js.finetune.method_help." + task);
    field("lr-help").textContent = Tailor.t("js.finetune.lr_help." + task, spec.defaults.learning_rate);
    field("n_epochs").placeholder = Tailor.t("js.finetune.auto_value", { value: spec.defaults.n_epochs });
    field("batch_size").placeholder = Tailor.t("js.finetune.auto_value", { value: spec.defaults.batch_size });
    describeModel();
  }

  function describeModel() {
    const base = catalog[task].bases.find(function (b) { return b.id === model.value; });
    field("model-help").textContent = base ? base.description : "";
  }

  function number(id, integer) {
    const raw = field(id).value.trim();
    if (!raw) return "auto";
    const value = Number(raw);
    return integer && Number.isInteger(value) ? value : (Number.isFinite(value) ? value : raw);
  }

  /* The job's body, as POST /v1/fine_tuning/jobs takes it (empty fields: the API's defaults). */
  function body() {
    const out = {
      model: model.value, training_file: training.value,
      hyperparameters: { n_epochs: number("n_epochs", true), batch_size: number("batch_size", true),
                         learning_rate_multiplier: number("learning_rate_multiplier", false) },
      method: { type: "supervised", tailor: { method: method.value } },
    };
    if (validation.value) out.validation_file = validation.value;
    const suffix = field("suffix").value.trim();
    if (suffix) out.suffix = suffix;
    return out;
  }

  function duration(seconds) {
    const s = Math.max(0, Math.round(seconds));
    if (s < 60) return Tailor.t("js.finetune.duration_s", { s: s });
    if (s < 3600) return Tailor.t("js.finetune.duration_m", { m: Math.floor(s / 60), s: s % 60 });
    return Tailor.t("js.finetune.duration_h", { h: Math.floor(s / 3600), m: Math.floor(s % 3600 / 60) });
  }

  function showEstimate(found) {
    const chosen = method.value === "auto" ? found.auto_method : found.method;
    const rows = Object.entries(found.estimates).map(function ([name, e]) {
      const train = (e.stages.train || 0) + (e.stages.validation || 0);
      return Tailor.el("tr", { class: name === chosen ? "chosen" : null },
        Tailor.el("th", { scope: "row" }, Tailor.t("js.finetune.method." + name),
                  name === chosen ? " (" + Tailor.t("js.finetune.chosen") + ")" : ""),
        Tailor.el("td", { class: "num" }, duration(e.total_s)),
        Tailor.el("td", { class: "num" }, duration(train)));
    });
    const table = Tailor.el("table", {},
      Tailor.el("thead", {}, Tailor.el("tr", {},
        Tailor.el("th", { scope: "col" }, Tailor.t("js.finetune.col_method")),
        Tailor.el("th", { scope: "col", class: "num" }, Tailor.t("js.finetune.col_total")),
        Tailor.el("th", { scope: "col", class: "num" }, Tailor.t("js.finetune.col_train")))),
      Tailor.el("tbody", {}, rows));
    const notes = [Tailor.el("p", { class: "small" }, Tailor.t("js.finetune.rows", found.rows))];
    if (found.task === "classification") {
      notes.unshift(Tailor.el("p", {}, Tailor.t("js.finetune.auto_choice",
        { method: Tailor.t("js.finetune.method." + found.auto_method), reason: found.auto_reason })));
    }
    notes.push(Tailor.el("p", { class: "muted small" }, Tailor.t("js.finetune.caveat")));
    estimateBox.replaceChildren(table, ...notes);
  }

  async function estimate() {
    if (!training.value || disabled) return;
    if (pending) pending.abort();
    const controller = pending = new AbortController();
    estimateBox.replaceChildren(Tailor.el("p", { class: "muted" }, Tailor.t("js.finetune.estimating")));
    try {
      const found = await Tailor.api("POST", "/v1/fine_tuning/jobs/estimate", body(), { signal: controller.signal });
      if (controller === pending) showEstimate(found);
    } catch (failure) {
      if (failure.name === "AbortError" || controller !== pending) return;
      estimateBox.replaceChildren(Tailor.el("p", { class: "error" },
        Tailor.t("js.finetune.estimate_failed", { message: failure.message })));
    }
  }

  function later() { clearTimeout(timer); timer = setTimeout(estimate, 600); }

  form.addEventListener("change", function (e) {
    if (e.target === training) matchTask();
    if (e.target === model) describeModel();
    later();
  });
  form.addEventListener("input", function (e) { if (e.target.tagName === "INPUT") later(); });

  form.addEventListener("submit", async function (e) {
    e.preventDefault();
    Tailor.clearErrors(form);
    launch.disabled = true;
    const label = launch.textContent;
    launch.textContent = Tailor.t("js.finetune.launching");
    try {
      const job = await Tailor.api("POST", "/v1/fine_tuning/jobs", body());
      location.assign("/console/jobs/" + encodeURIComponent(job.id));
    } catch (failure) {
      Tailor.showError(form, failure);
      launch.disabled = false; launch.textContent = label;
    }
  });

  matchTask();
  if (!disabled) estimate();
})();
