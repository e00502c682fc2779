/* Keys page: create a key through POST /v1/keys (its secret shown this once, with a copy button) and revoke
   one through POST /v1/keys/{id}/revoke after an inline confirmation. */
"use strict";
(function () {
  const { api, el, t, showError, clearErrors } = Tailor;
  const table = document.getElementById("keys");
  const ownKey = table.dataset.own;
  const revokeStatus = document.getElementById("revoke-status");

  function keyRow(key) {
    const row = el("tr", { "data-key-id": key.id, "data-key-name": key.name },
      el("td", {}, key.name), el("td", {}, el("code", {}, key.prefix + "…")), el("td", {}, key.scopes.join(", ")),
      el("td", {}, Tailor.timeNode(key.created_at)), el("td", {}, el("span", { class: "muted" }, "—")),
      el("td", {}, key.expires_at ? Tailor.timeNode(key.expires_at) : t("js.keys.never")),
      el("td", { "data-cell": "status" }, el("span", { class: "status status-succeeded" }, t("js.keys.active"))),
      el("td", { "data-cell": "action" }, revokeButton(key.name)));
    return row;
  }

  function revokeButton(name) {
    return el("button", { type: "button", class: "secondary revoke", "aria-label": t("js.keys.revoke_named", { name }) },
              t("js.keys.revoke"));
  }

  /* Ask in the row itself: "Revoke <name>?" with Revoke / Cancel (the own key's question says it signs out). */
  function confirmRevoke(row) {
    const cell = row.querySelector('[data-cell="action"]');
    const own = row.dataset.keyId === ownKey;
    const question = t(own ? "js.keys.confirm_own" : "js.keys.confirm", { name: row.dataset.keyName });
    const yes = el("button", { type: "button", class: "danger", onclick: function () { revoke(row, yes); } },
                   t("js.keys.revoke_confirm"));
    const no = el("button", { type: "button", class: "secondary", onclick: function () {
      cell.replaceChildren(revokeButton(row.dataset.keyName)); cell.querySelector("button").focus();
    } }, t("js.keys.cancel"));
    cell.replaceChildren(el("div", { class: "confirm", role: "group" }, el("span", {}, question), yes, no));
    no.focus();
  }

  async function revoke(row, button) {
    button.disabled = true;
    revokeStatus.hidden = true;
    try {
      const key = await api("POST", "/v1/keys/" + encodeURIComponent(row.dataset.keyId) + "/revoke");
      row.querySelector('[data-cell="status"]').replaceChildren(
        el("span", { class: "status status-failed" }, t("js.keys.revoked")), " ", Tailor.timeNode(key.revoked_at));
      row.querySelector('[data-cell="action"]').replaceChildren();
      revokeStatus.textContent = t(key.id === ownKey ? "js.keys.revoked_own" : "js.keys.revoked_done", { name: key.name });
      revokeStatus.className = key.id === ownKey ? "notice" : "ok";
      revokeStatus.hidden = false;
    } catch (failure) {
      button.disabled = false;
      revokeStatus.textContent = failure.message; revokeStatus.className = "error"; revokeStatus.hidden = false;
    }
  }

  table.addEventListener("click", function (event) {
    const button = event.target.closest("button.revoke");
    if (button) confirmRevoke(button.closest("tr"));
  });

  const form = document.getElementById("create-key");
  const secretBox = document.getElementById("new-secret");
  const secretField = document.getElementById("secret-value");
  form.addEventListener("submit", async function (event) {
    event.preventDefault();
    clearErrors(form);
    const name = form.elements.name.value.trim();
    const scopes = Array.from(form.querySelectorAll('input[name="scopes"]:checked')).map(function (box) { return box.value; });
    if (!name) { showError(form, { message: t("js.keys.name_missing"), param: "name" }); return; }
    if (!scopes.length) { showError(form, { message: t("js.keys.scopes_missing"), param: "scopes" }); return; }
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    try {
      const days = form.elements.expires_in_days.value;
      const key = await api("POST", "/v1/keys", days ? { name, scopes, expires_in_days: Number(days) } : { name, scopes });
      secretField.value = key.secret;
      secretBox.hidden = false;
      secretField.focus(); secretField.select();
      table.tBodies[0].append(keyRow(key));
      form.reset();
    } catch (failure) {
      showError(form, { message: failure.message, param: (failure.param || "").split(".")[0] });
    } finally {
      button.disabled = false;
    }
  });

  document.getElementById("copy-secret").addEventListener("click", async function () {
    const status = document.getElementById("copy-status");
    try {
      await navigator.clipboard.writeText(secretField.value);
      status.textContent = t("js.keys.copied");
    } catch (_) {
      secretField.focus(); secretField.select();
      status.textContent = t("js.keys.copy_by_hand");
    }
  });
})();
