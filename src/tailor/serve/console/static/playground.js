/* The playground: classify texts with every label's probability, or chat with a model, its answer streamed
   (and, for a fine-tuned chat version, its base model's answer beside it). Everything a model says is shown
   with textContent, never as HTML. */
"use strict";
(function () {
  const RETRY_MS = 5000;  // the Retry-After the API answers while a chat model is being loaded or built

  function percent(p) { return (100 * p).toFixed(1) + "%"; }
  function secondsOf(ms) { return (ms / 1000).toFixed(2); }

  /* ---- classification ---- */

  /* The text with each explained word in a <mark>: green raised the predicted label, red lowered it, deeper
     is stronger; the weight is its title. The API's offsets count code points (Python strings), not UTF-16
     units, so the pieces are cut from the text's code points (an emoji before a word would shift it). */
  function explainedText(text, tokens) {
    const chars = Array.from(text);
    const strongest = Math.max(1e-9, ...tokens.map(function (t) { return Math.abs(t.weight); }));
    const parts = [];
    let at = 0;
    for (const token of tokens) {
      parts.push(chars.slice(at, token.start).join(""));
      const mark = Tailor.el("mark", { class: token.weight >= 0 ? "pg-up" : "pg-down",
                                       title: (token.weight >= 0 ? "+" : "") + token.weight.toFixed(4) },
                             chars.slice(token.start, token.end).join(""));
      mark.style.setProperty("--pg-strength", (0.15 + 0.6 * Math.abs(token.weight) / strongest).toFixed(2));
      parts.push(mark);
      at = token.end;
    }
    parts.push(chars.slice(at).join(""));
    return Tailor.el("p", { class: "pg-text pg-explained", "aria-label": Tailor.t("js.playground.explained") }, parts);
  }

  function resultOf(text, row) {
    const items = Object.entries(row.scores)
      .map(function (pair) { return { label: pair[0], value: pair[1] }; })
      .sort(function (a, b) { return b.value - a.value; });
    const bars = Tailor.el("div", { class: "pg-bars", role: "group", "aria-label": Tailor.t("js.playground.probabilities") });
    TailorChart.bars(bars, items, { max: 1, format: percent });
    return Tailor.el("li", { class: "pg-result" },
      row.explanation ? explainedText(text, row.explanation) : Tailor.el("p", { class: "pg-text" }, text),
      Tailor.el("p", {}, Tailor.t("js.playground.predicted"), " ", Tailor.el("strong", { class: "pg-label" }, row.label),
                " ", Tailor.el("span", { class: "muted" }, Tailor.t("js.playground.confidence", { p: percent(row.score) }))),
      bars);
  }

  function setUpClassifier(section) {
    const form = section.querySelector("form");
    const input = form.elements.input;
    const button = form.querySelector('button[type="submit"]');
    const status = document.getElementById("pg-classify-status");
    const results = document.getElementById("pg-results");
    input.addEventListener("keydown", function (event) {
      if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) { event.preventDefault(); form.requestSubmit(); }
    });
    form.addEventListener("submit", async function (event) {
      event.preventDefault();
      Tailor.clearErrors(form);
      const texts = input.value.split(/\r?\n/).filter(function (line) { return line.trim(); });
      button.disabled = true;
      status.textContent = Tailor.t("js.playground.classifying");
      const started = performance.now();
      try {
        // Nothing but blank lines: send them as they are, so the API says what is wrong with them.
        const response = await Tailor.api("POST", "/v1/classifications",
                                          { model: section.dataset.model, input: texts.length ? texts : input.value,
                                            explain: form.elements.explain.checked },
                                          { raw: true });
        const body = await response.json();
        const ms = Math.round(performance.now() - started);
        results.replaceChildren(...body.data.map(function (row) { return resultOf(texts[row.index], row); }));
        status.textContent = Tailor.t("js.playground.classified", {
          n: body.data.length, ms: ms, version: response.headers.get("x-tailor-version") || body.model });
      } catch (failure) {
        status.textContent = "";
        // "input.3" names the fourth text: its place is beside the textarea that holds them all.
        if (failure.param && failure.param.split(".")[0] === "input") failure.param = "input";
        Tailor.showError(form, failure);
      } finally {
        button.disabled = false;
      }
    });
  }

  /* ---- chat ---- */

  /* The JSON chunks of a server-sent event stream ("data: {...}" blocks, until "data: [DONE]"). */
  async function* events(response) {
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const read = await reader.read();
      if (read.done) return;
      buffer += decoder.decode(read.value, { stream: true });
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        for (const line of block.split("\n")) {
          if (!line.startsWith("data: ")) continue;
          const data = line.slice("data: ".length);
          if (data === "[DONE]") return;
          yield JSON.parse(data);
        }
      }
    }
  }

  function pause(ms, signal) {
    return new Promise(function (resolve, reject) {
      const timer = setTimeout(resolve, ms);
      signal.addEventListener("abort", function () {
        clearTimeout(timer); reject(new DOMException("stopped", "AbortError"));
      }, { once: true });
    });
  }

  /* The streamed answer's response; while the model is being loaded (503), say so and ask again. */
  async function streamed(column, body, signal) {
    for (;;) {
      try {
        return await Tailor.api("POST", "/v1/chat/completions", body, { raw: true, signal: signal });
      } catch (failure) {
        if (failure.status !== 503 || failure.code !== "unavailable") throw failure;
        column.meta.textContent = Tailor.t("js.playground.waiting", { message: failure.message });
        await pause(RETRY_MS, signal);
      }
    }
  }

  function turnOf(role, content) {
    return Tailor.el("li", { class: "pg-turn pg-" + role },
      Tailor.el("span", { class: "pg-role" }, Tailor.t(role === "user" ? "js.playground.you" : "js.playground.assistant")),
      content);
  }

  function columnOf(node, model) {
    return { node: node, model: model, history: [], transcript: node.querySelector(".pg-transcript"),
             meta: node.querySelector(".pg-meta") };
  }

  /* Send the conversation so far plus `content` to one column's model and stream its answer into the column.
     Returns the ApiFailure when the request failed (the user's message is then taken back), else null. */
  async function answer(column, content, settings, signal) {
    column.history.push({ role: "user", content: content });
    const asked = turnOf("user", Tailor.el("div", { class: "pg-content" }, content));
    const text = Tailor.el("div", { class: "pg-content" });
    const answered = turnOf("assistant", text);
    answered.setAttribute("aria-busy", "true");
    column.transcript.append(asked, answered);
    column.meta.textContent = Tailor.t("js.playground.answering");
    Tailor.clearErrors(column.node);
    const messages = (settings.system ? [{ role: "system", content: settings.system }] : []).concat(column.history);
    const started = performance.now();
    let reply = "", first = null, usage = null, finish = null, version = column.model;
    try {
      const response = await streamed(column, {
        model: column.model, messages: messages, stream: true, stream_options: { include_usage: true },
        max_tokens: settings.max_tokens, temperature: settings.temperature }, signal);
      version = response.headers.get("x-tailor-version") || version;
      for await (const chunk of events(response)) {
        if (chunk.usage) usage = chunk.usage;
        for (const choice of chunk.choices) {
          if (choice.delta.content) {
            if (first === null) first = performance.now() - started;
            reply += choice.delta.content;
            text.textContent = reply;
            column.transcript.scrollTop = column.transcript.scrollHeight;
          }
          if (choice.finish_reason) finish = choice.finish_reason;
        }
      }
      column.meta.textContent = Tailor.t("js.playground.answered", {
        version: version, tokens: usage ? usage.completion_tokens : "?", total: secondsOf(performance.now() - started),
        first: first === null ? "–" : secondsOf(first) });
      if (finish === "length") column.meta.append(" ", Tailor.t("js.playground.cut"));
    } catch (failure) {
      if (failure.name !== "AbortError") {
        column.history.pop();
        asked.remove(); answered.remove();
        column.meta.textContent = "";
        return failure;
      }
      column.meta.textContent = Tailor.t("js.playground.stopped");
    } finally {
      answered.removeAttribute("aria-busy");
    }
    column.history.push({ role: "assistant", content: reply });
    return null;
  }

  /* A number field's value for the API: its number, nothing when empty, else the text (the API says why). */
  function numberOf(field) {
    if (field.value === "") return undefined;
    return Number.isNaN(field.valueAsNumber) ? field.value : field.valueAsNumber;
  }

  function setUpChat(section) {
    const form = document.getElementById("pg-chat-form");
    const message = form.elements.content;
    const compare = form.elements.compare || null;
    const send = document.getElementById("pg-send");
    const stop = document.getElementById("pg-stop");
    const columns = [columnOf(section.querySelector('[data-column="model"]'), section.dataset.model)];
    if (section.dataset.base) columns.push(columnOf(section.querySelector('[data-column="base"]'), section.dataset.base));
    let controller = null;

    function comparing() { return compare !== null && compare.checked; }

    if (compare) {
      compare.addEventListener("change", function () {
        columns[1].node.hidden = !compare.checked;
        section.classList.toggle("pg-comparing", compare.checked);
      });
    }
    message.addEventListener("keydown", function (event) {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) { event.preventDefault(); form.requestSubmit(); }
    });
    stop.addEventListener("click", function () { if (controller) controller.abort(); });
    document.getElementById("pg-reset").addEventListener("click", function () {
      if (controller) controller.abort();
      for (const column of columns) {
        column.history = []; column.transcript.replaceChildren(); column.meta.textContent = "";
        Tailor.clearErrors(column.node);
      }
      Tailor.clearErrors(form);
      if (compare) compare.disabled = false;
      message.focus();
    });

    form.addEventListener("submit", async function (event) {
      event.preventDefault();
      if (controller) return;
      Tailor.clearErrors(form);
      const content = message.value;
      if (!content.trim()) {
        Tailor.showError(form, { param: "content", message: Tailor.t("js.playground.empty_message") });
        return;
      }
      const settings = { system: form.elements.system.value.trim(), max_tokens: numberOf(form.elements.max_tokens),
                         temperature: numberOf(form.elements.temperature) };
      const asked = comparing() ? columns : columns.slice(0, 1);
      if (compare) compare.disabled = true;  // both columns must have heard the same conversation
      message.value = "";
      controller = new AbortController();
      send.disabled = true; stop.disabled = false;
      const failures = await Promise.all(asked.map(function (column) {
        return answer(column, content, settings, controller.signal);
      }));
      controller = null;
      send.disabled = false; stop.disabled = true;
      let beside = null;
      asked.forEach(function (column, i) {
        const failure = failures[i];
        if (!failure) return;
        // A field of the form (max_tokens, temperature) is shown beside the field; anything else in the column.
        if (failure.param && form.querySelector('[data-error-for="' + CSS.escape(failure.param) + '"]')) beside = failure;
        else Tailor.showError(column.node, failure);
      });
      if (failures.some(function (failure) { return failure; }) && !message.value) message.value = content;
      if (compare && !columns.some(function (column) { return column.history.length; })) compare.disabled = false;
      if (beside) Tailor.showError(form, beside);
      else message.focus();
    });
  }

  const classifier = document.getElementById("pg-classify");
  if (classifier) setUpClassifier(classifier);
  const chat = document.getElementById("pg-chat");
  if (chat) setUpChat(chat);
})();
