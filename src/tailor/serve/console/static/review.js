/* Review page: one queued answer at a time; a label is POST /v1/feedback, U undoes it (DELETE
   /v1/feedback/{id}), S skips; "Retrain with these" starts a retrain job from the feedback. */
"use strict";
(function () {
  const root = document.getElementById("review");
  if (!root) return;
  const t = Tailor.t;
  const source = document.getElementById("review-queue");
  const items = source ? JSON.parse(source.textContent) : [];
  const history = [];  // {index, kind: "label" | "skip", id}
  let index = 0, given = 0, busy = false;

  const $ = function (id) { return document.getElementById(id); };
  const section = document.querySelector(".review-item");
  const buttons = [...root.querySelectorAll("button.label")];

  function count(id, delta) {
    const place = $(id);
    place.dataset.value = String(Number(place.dataset.value) + delta);
    place.textContent = place.dataset.value;
  }

  function show() {
    $("given").textContent = String(given);
    $("left").textContent = String(items.length - index);
    if (!section) return;
    $("undo").disabled = history.length === 0;
    const retrain = $("retrain");
    if (retrain) retrain.disabled = Number($("labels-total").dataset.value) === 0;
    const done = index >= items.length;
    section.querySelectorAll("#item-text, #item-label, #item-score, #item-why, .label-buttons, #skip").forEach(function (node) {
      (node.closest("p") || node).hidden = done;
    });
    $("done").hidden = !done;
    if (done) { $("position").textContent = String(items.length); return; }
    const item = items[index];
    $("position").textContent = String(index + 1);
    $("item-text").textContent = item.input;
    $("item-label").textContent = item.label === null ? t("js.review.abstained") : item.label;
    $("item-score").textContent = (100 * item.score).toFixed(1) + "%";
    $("item-why").textContent = t("js.review.why", { uncertainty: item.uncertainty.toFixed(2), novelty: item.novelty.toFixed(2) });
    buttons.forEach(function (button) { button.classList.toggle("predicted", button.dataset.label === item.label); });
  }

  async function act(step) {
    if (busy) return;
    busy = true;
    Tailor.clearErrors(section);
    try { await step(); } catch (failure) { Tailor.showError(section, failure); }
    finally { busy = false; show(); }
  }

  function label(name) {
    if (index >= items.length) return;
    return act(async function () {
      const item = items[index];
      await Tailor.api("POST", "/v1/feedback", { prediction_id: item.prediction_id, label: name });
      history.push({ index: index, kind: "label", id: item.prediction_id });
      given += 1; count("labels-total", 1); count("labels-new", 1);
      $("status").textContent = t("js.review.labelled", { label: name });
      index += 1;
    });
  }

  function skip() {
    if (index >= items.length) return;
    history.push({ index: index, kind: "skip" });
    index += 1;
    $("status").textContent = t("js.review.skipped");
    show();
  }

  function undo() {
    if (!history.length) return;
    return act(async function () {
      const last = history[history.length - 1];
      if (last.kind === "label") {
        await Tailor.api("DELETE", "/v1/feedback/" + encodeURIComponent(last.id));
        given -= 1; count("labels-total", -1); count("labels-new", -1);
      }
      history.pop();
      index = last.index;
      $("status").textContent = t("js.review.undone");
    });
  }

  buttons.forEach(function (button) { button.addEventListener("click", function () { label(button.dataset.label); }); });
  if (section) {
    $("skip").addEventListener("click", skip);
    $("undo").addEventListener("click", undo);
    document.addEventListener("keydown", function (event) {
      if (event.ctrlKey || event.metaKey || event.altKey || event.isComposing) return;
      if (event.target.closest("input, select, textarea, [contenteditable]")) return;
      const key = event.key.toLowerCase();
      const target = buttons.find(function (b) { return b.dataset.key === key; });
      if (target) { event.preventDefault(); label(target.dataset.label); }
      else if (key === "s") { event.preventDefault(); skip(); }
      else if (key === "u") { event.preventDefault(); undo(); }
    });
  }

  const retrain = $("retrain");
  if (retrain) {
    retrain.addEventListener("click", async function () {
      retrain.disabled = true;
      try {
        const job = await Tailor.api("POST", "/v1/fine_tuning/jobs", {
          model: root.dataset.ref, method: { type: "supervised", tailor: { feedback: true } } });
        location.assign("/console/jobs/" + encodeURIComponent(job.id));
      } catch (failure) {
        Tailor.showError($("retrain-box"), failure);
        retrain.disabled = false;
      }
    });
  }
  show();
})();
