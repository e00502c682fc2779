/* Data page: drag-and-drop or pick a file, refuse one over the size limit before sending, upload it to
   POST /v1/files with a progress bar, show the API's error beside the file field, open its report. */
"use strict";
(function () {
  const form = document.getElementById("upload");
  if (!form) return;  // a key without the train scope
  const input = document.getElementById("file");
  const drop = document.getElementById("drop");
  const box = document.getElementById("progress-box");
  const bar = document.getElementById("progress");
  const note = document.getElementById("progress-text");
  const button = document.getElementById("upload-button");
  const maxBytes = Number(form.dataset.maxBytes);
  const maxMb = form.dataset.maxMb;
  const SUFFIXES = [".csv", ".tsv", ".jsonl", ".json", ".txt"];
  let chosen = null;

  function refuse(message) { Tailor.showError(form, { param: "file", message: message }); }

  /* The browser's own checks, the API's in miniature: a known suffix and the size limit. */
  function acceptable(file) {
    const name = file.name.toLowerCase();
    if (name.includes(".") && !SUFFIXES.some(function (s) { return name.endsWith(s); })) {
      refuse(Tailor.t("js.data.wrong_type", { name: file.name })); return false;
    }
    if (file.size > maxBytes) {
      refuse(Tailor.t("js.data.too_big", { name: file.name, size: (file.size / 1048576).toFixed(2), mb: maxMb }));
      return false;
    }
    return true;
  }

  function choose(file) {
    Tailor.clearErrors(form);
    chosen = file && acceptable(file) ? file : null;
    note.textContent = chosen ? Tailor.t("js.data.selected", { name: chosen.name }) : "";
    box.hidden = !chosen; bar.value = 0;
  }

  input.addEventListener("change", function () { choose(input.files[0]); });
  ["dragenter", "dragover"].forEach(function (type) {
    drop.addEventListener(type, function (e) { e.preventDefault(); drop.classList.add("over"); });
  });
  ["dragleave", "drop"].forEach(function (type) {
    drop.addEventListener(type, function (e) { e.preventDefault(); drop.classList.remove("over"); });
  });
  drop.addEventListener("drop", function (e) {
    const file = e.dataTransfer && e.dataTransfer.files[0];
    if (file) choose(file);
  });

  form.addEventListener("submit", async function (e) {
    e.preventDefault();
    Tailor.clearErrors(form);
    if (!chosen) { refuse(Tailor.t("js.data.no_file")); return; }
    const body = new FormData();
    body.append("purpose", "fine-tune");
    body.append("file", chosen, chosen.name);
    button.disabled = true; box.hidden = false; bar.value = 0;
    try {
      const created = await Tailor.upload("/v1/files", body, function (sent, total) {
        const percent = Math.floor(100 * sent / total);
        bar.value = percent;
        note.textContent = sent < total ? Tailor.t("js.data.sending", { percent: percent }) : Tailor.t("js.data.checking");
      });
      location.assign("/console/data/" + encodeURIComponent(created.id));
    } catch (failure) {
      box.hidden = true;
      // Every refusal of the upload is about the file (its column, line or size), so it shows beside it.
      Tailor.showError(form, { param: failure.param === "purpose" ? "purpose" : "file", message: failure.message });
    } finally {
      button.disabled = false;
    }
  });
})();
