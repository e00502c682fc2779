/* Trust pages: a version's bias report run through POST /v1/models/{model}/evaluations (the page then shows the
   report stored with the version), and the release gate's thresholds set through PUT /v1/release_gate. */
"use strict";
(function () {
  const { api, t, showError, clearErrors } = Tailor;

  function setUpBias(form) {
    const status = document.getElementById("bias-status");
    form.elements.file.addEventListener("change", function () {  // another file: its own columns and labels
      const url = new URL(location.href);
      url.searchParams.set("file", form.elements.file.value);
      location.assign(url.toString());
    });
    form.addEventListener("submit", async function (event) {
      event.preventDefault();
      clearErrors(form);
      const body = { file: form.elements.file.value, slice_column: form.elements.slice_column.value || null,
                     positive_label: form.elements.positive_label.value || null,
                     counterfactual: form.elements.counterfactual.checked };
      const button = form.querySelector("button[type=submit]");
      button.disabled = true; status.textContent = t("js.trust.evaluating");
      try {
        await api("POST", "/v1/models/" + encodeURIComponent(form.dataset.model) + "/evaluations", body);
        location.reload();
      } catch (failure) {
        status.textContent = "";
        showError(form, failure);
        button.disabled = false;
      }
    });
  }

  function setUpGate(form) {
    const status = document.getElementById("gate-status");
    form.addEventListener("submit", async function (event) {
      event.preventDefault();
      clearErrors(form);
      const body = { require_fairness: form.elements.require_fairness.checked };
      for (const name of ["min_accuracy", "min_macro_f1", "max_slice_gap", "max_flip_rate"]) {
        const text = form.elements[name].value.trim();
        body[name] = text === "" ? null : (Number.isNaN(Number(text)) ? text : Number(text));  // the API names a bad one
      }
      const button = form.querySelector("button[type=submit]");
      button.disabled = true; status.textContent = "";
      try {
        await api("PUT", "/v1/release_gate", body);
        location.reload();
      } catch (failure) {
        showError(form, failure);
        button.disabled = false;
      }
    });
  }

  const bias = document.getElementById("bias-form");
  if (bias) setUpBias(bias);
  const gate = document.getElementById("gate-form");
  if (gate) setUpGate(gate);
})();
