/* Models pages: the release buttons (alias set, canary, shadow, promote, rollback, abort, remove) through the
   /v1 alias routes, and the paired comparison of two versions through POST /v1/models/compare. */
"use strict";
(function () {
  const { api, el, t, showError, clearErrors } = Tailor;

  /* The request a release button makes: [method, path suffix, body]. */
  function releaseCall(action, form) {
    const reason = form.elements.reason.value.trim() || null;
    const version = form.elements.version ? Number(form.elements.version.value) : null;
    /* an admin's override of the release gate, on the changes the gate checks */
    const override = Boolean(form.elements.override && form.elements.override.checked);
    switch (action) {
      case "set": return ["PUT", "", { version, reason, override }];
      case "canary": {
        const percent = form.elements.share.value.trim();
        return ["POST", "/canary", { version, share: percent === "" ? null : Number(percent) / 100, reason,
                                     override }];
      }
      case "shadow": return ["POST", "/shadow", { version, reason }];
      case "promote": return ["POST", "/promote", { reason, override }];
      case "rollback": return ["POST", "/rollback", { reason }];
      case "abort": return ["POST", "/abort", { reason }];
      case "unset": return ["DELETE", reason ? "?reason=" + encodeURIComponent(reason) : "", undefined];
    }
    throw new Error("unknown action " + action);
  }

  function setUpRelease(box) {
    const model = box.dataset.model;
    box.querySelectorAll("form.release").forEach(function (form) {
      form.addEventListener("submit", async function (event) {
        event.preventDefault();
        clearErrors(form);
        const action = (event.submitter && event.submitter.value) || "set";
        const alias = form.dataset.alias || form.elements.alias.value.trim();
        if (!alias) {
          showError(form, { message: t("js.models.alias_missing"), param: "alias" });
          return;
        }
        const [method, suffix, body] = releaseCall(action, form);
        const path = "/v1/models/" + encodeURIComponent(model) + "/aliases/" + encodeURIComponent(alias) + suffix;
        const buttons = form.querySelectorAll("button");
        buttons.forEach(function (b) { b.disabled = true; });
        try {
          await api(method, path, body);
          location.reload();
        } catch (failure) {
          showError(form, failure);
          const override = form.querySelector(".override");  // present for an admin only
          if (override && failure.code === "release_gate_failed") override.hidden = false;
          buttons.forEach(function (b) { b.disabled = false; });
        }
      });
    });
  }

  function fmt(value) { return value === null || value === undefined ? "—" : Number(value).toFixed(4); }
  function signed(value) { return value === null || value === undefined ? "—" : (value >= 0 ? "+" : "") + Number(value).toFixed(4); }

  function verdict(code) { return t("js.models.verdict." + code); }

  function sectionOf(section, result) {
    const title = section.source === "file" ? t("js.models.on_file", { file: section.data || "" })
                                            : t("js.models.on_feedback");
    if (!section.rows) return el("section", {}, el("h3", {}, title), el("p", {}, t("js.models.no_rows")));
    const headline = el("table", {},
      el("thead", {}, el("tr", {}, el("th", { scope: "col" }, t("js.models.metric")),
                          el("th", { scope: "col", class: "num" }, "A: " + result.a.model),
                          el("th", { scope: "col", class: "num" }, "B: " + result.b.model),
                          el("th", { scope: "col", class: "num" }, t("js.models.b_minus_a")))),
      el("tbody", {}, ["accuracy", "macro_f1"].map(function (key) {
        return el("tr", {}, el("th", { scope: "row" }, t("js.models.metric." + key)),
                  el("td", { class: "num" }, fmt(section.a[key])), el("td", { class: "num" }, fmt(section.b[key])),
                  el("td", { class: "num" }, signed(section.difference[key])));
      })));
    const interval = section.macro_f1_test.interval;
    const tests = el("ul", {},
      el("li", {}, t("js.models.mcnemar", { p: section.accuracy_test.p_value === null ? "—" : section.accuracy_test.p_value.toPrecision(3),
                                             verdict: verdict(section.accuracy_test.verdict) })),
      el("li", {}, t("js.models.bootstrap", { low: interval ? signed(interval[0]) : "—", high: interval ? signed(interval[1]) : "—",
                                               verdict: verdict(section.macro_f1_test.verdict) })),
      el("li", {}, t("js.models.disagreements", { rows: section.disagreements.rows, b: section.disagreements.b_right_a_wrong,
                                                   a: section.disagreements.a_right_b_wrong })));
    const perClass = el("table", {},
      el("thead", {}, el("tr", {}, el("th", { scope: "col" }, t("js.models.label")),
                          el("th", { scope: "col", class: "num" }, t("js.models.support")),
                          el("th", { scope: "col", class: "num" }, "F1 A"), el("th", { scope: "col", class: "num" }, "F1 B"),
                          el("th", { scope: "col", class: "num" }, t("js.models.b_minus_a")))),
      el("tbody", {}, section.per_class.map(function (row) {
        return el("tr", {}, el("th", { scope: "row" }, row.label), el("td", { class: "num" }, row.support),
                  el("td", { class: "num" }, fmt(row.a.f1)), el("td", { class: "num" }, fmt(row.b.f1)),
                  el("td", { class: "num" }, signed(row.f1_difference)));
      })));
    return el("section", {}, el("h3", {}, title),
              el("p", {}, t("js.models.rows", { rows: section.rows, skipped: section.skipped_rows }), " ",
                 el("strong", {}, verdict(section.verdict))),
              headline, tests, el("div", { class: "scroll" }, perClass));
  }

  function setUpPaired(form) {
    const out = document.getElementById("paired-result");
    const status = document.getElementById("paired-status");
    form.addEventListener("submit", async function (event) {
      event.preventDefault();
      clearErrors(form);
      out.replaceChildren();
      const body = { a: form.dataset.a, b: form.dataset.b, file: form.elements.file.value || null,
                     feedback: form.elements.feedback.checked };
      const button = form.querySelector("button[type=submit]");
      button.disabled = true; status.textContent = t("js.models.comparing");
      try {
        const result = await api("POST", "/v1/models/compare", body);
        const sections = [result.file, result.feedback].filter(Boolean);
        out.replaceChildren(...sections.map(function (s) { return sectionOf(s, result); }));
        if (!sections.length) out.append(el("p", {}, t("js.models.no_rows")));
        status.textContent = "";
      } catch (failure) {
        status.textContent = "";
        showError(form, failure);
      } finally {
        button.disabled = false;
      }
    });
  }

  const release = document.querySelector(".release-forms");
  if (release) setUpRelease(release);
  const paired = document.getElementById("paired");
  if (paired) setUpPaired(paired);
})();
