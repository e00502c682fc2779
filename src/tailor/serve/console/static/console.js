/* Tailor console: what every page's script shares. Plain JavaScript, no build step, no outside requests.
   Tailor.api() calls the server's own /v1 routes, signed by the session cookie and the page's CSRF token. */
"use strict";
(function () {
  const strings = JSON.parse(document.getElementById("tailor-strings").textContent);

  function t(key, fields) {
    let text = strings[key];
    if (text === undefined) { console.warn("missing string " + key); return key; }
    for (const [name, value] of Object.entries(fields || {})) text = text.split("{" + name + "}").join(String(value));
    return text;
  }

  function csrf() { return document.querySelector('meta[name="csrf-token"]').content; }

  /* An API error: the status and OpenAI-shaped error ({message, type, param, code}) the server answered. */
  class ApiFailure extends Error {
    constructor(status, error) {
      super(error.message || t("js.error.status", { status }));
      this.status = status; this.param = error.param || null; this.code = error.code || null;
    }
  }

  /* Why the API refused the session (its 401's message), as the sign-in page's reason. */
  function reasonOf(message) {
    if (/ was revoked/.test(message)) return "revoked";
    return / expired at /.test(message) ? "key_expired" : "expired";
  }

  function signInAgain(reason) {
    const next = location.pathname + location.search;
    location.assign("/console/sign-in?reason=" + (reason || "expired") + "&next=" + encodeURIComponent(next));
  }

  async function failureOf(response) {
    let error = {};
    try { error = (await response.json()).error || {}; } catch (_) { /* not JSON: keep the status */ }
    if (response.status === 401) signInAgain(reasonOf(error.message || ""));
    return new ApiFailure(response.status, error);
  }

  /* fetch() a /v1 route; JSON bodies are sent as JSON, FormData as multipart. Returns the parsed JSON (or the
     Response itself with {raw: true}, e.g. to read a stream); throws ApiFailure for an error status. */
  async function api(method, path, body, options) {
    const headers = { "X-CSRF-Token": csrf(), "Accept": "application/json" };
    let payload = body;
    if (body !== undefined && !(body instanceof FormData)) {
      headers["Content-Type"] = "application/json"; payload = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(path, { method, headers, body: payload, credentials: "same-origin",
                                      signal: options && options.signal });
    } catch (err) {
      if (err.name === "AbortError") throw err;
      throw new ApiFailure(0, { message: t("js.error.network") });
    }
    if (!response.ok) throw await failureOf(response);
    if (options && options.raw) return response;
    return response.status === 204 ? null : response.json();
  }

  /* POST a FormData with upload progress (fetch() cannot report it): onProgress(sentBytes, totalBytes). */
  function upload(path, formData, onProgress) {
    return new Promise(function (resolve, reject) {
      const xhr = new XMLHttpRequest();
      xhr.open("POST", path);
      xhr.setRequestHeader("X-CSRF-Token", csrf());
      xhr.setRequestHeader("Accept", "application/json");
      xhr.upload.onprogress = function (e) { if (e.lengthComputable && onProgress) onProgress(e.loaded, e.total); };
      xhr.onerror = function () { reject(new ApiFailure(0, { message: t("js.error.network") })); };
      xhr.onload = function () {
        let body = {};
        try { body = JSON.parse(xhr.responseText); } catch (_) { /* keep {} */ }
        if (xhr.status >= 200 && xhr.status < 300) return resolve(body);
        if (xhr.status === 401) signInAgain(reasonOf((body.error || {}).message || ""));
        reject(new ApiFailure(xhr.status, body.error || {}));
      };
      xhr.send(formData);
    });
  }

  /* Show an API error beside the field it names: the element [data-error-for="<param>"] inside `scope`, else
     the scope's [data-error-for=""] (the form's own place for errors). */
  function showError(scope, failure) {
    clearErrors(scope);
    const param = failure.param || "";
    let place = param ? scope.querySelector('[data-error-for="' + CSS.escape(param) + '"]') : null;
    if (!place) place = scope.querySelector('[data-error-for=""]');
    if (!place) { place = el("p", { "data-error-for": "" }); scope.prepend(place); }
    place.textContent = failure.message;
    place.classList.add("error"); place.hidden = false; place.setAttribute("role", "alert");
    const field = param ? scope.querySelector('[name="' + CSS.escape(param) + '"]') : null;
    if (field) { field.setAttribute("aria-invalid", "true"); field.focus(); }
  }

  function clearErrors(scope) {
    scope.querySelectorAll("[data-error-for]").forEach(function (place) { place.textContent = ""; place.hidden = true; });
    scope.querySelectorAll('[aria-invalid="true"]').forEach(function (field) { field.removeAttribute("aria-invalid"); });
  }

  /* Build an element safely: text children become text nodes (never HTML). */
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
      else node.setAttribute(name, value === true ? "" : value);
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  /* Run `step` now and every `ms` until it returns false; stops while the tab is hidden. */
  function every(ms, step) {
    let timer = null;
    async function tick() {
      let again = true;
      if (!document.hidden) {
        try { again = (await step()) !== false; } catch (err) { console.warn(err); }
      }
      if (again) timer = setTimeout(tick, ms);
    }
    tick();
    return function stop() { clearTimeout(timer); };
  }

  function formatTime(seconds) {
    if (!seconds) return "";
    return new Date(seconds * 1000).toLocaleString(document.documentElement.lang);
  }

  /* A <time> for Unix `seconds`, shown in the reader's time zone and language ("" for none). */
  function timeNode(seconds) {
    if (!seconds) return "";
    return el("time", { datetime: new Date(seconds * 1000).toISOString(), "data-ts": seconds }, formatTime(seconds));
  }

  /* The server writes times in UTC; show every <time data-ts> under `root` in the reader's zone and language. */
  function localTimes(root) {
    root.querySelectorAll("time[data-ts]").forEach(function (node) {
      node.textContent = formatTime(Number(node.dataset.ts));
    });
  }

  localTimes(document);
  window.Tailor = { t, api, upload, showError, clearErrors, el, every, formatTime, timeNode, localTimes, ApiFailure,
                    csrf };
})();
