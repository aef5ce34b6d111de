// Novart Studio: the studio page. Submits through the JSON API, uploads
// reference images, and keeps task cards live over Server-Sent Events
// (falling back to polling). Without JavaScript the form still works.
(function () {
  "use strict";

  var csrf = document.querySelector('meta[name="csrf-token"]').content;
  var form = document.getElementById("studio-form");
  if (!form) return;
  var models = JSON.parse(document.getElementById("studio-models").textContent);
  var el = function (id) { return document.getElementById(id); };
  var toast = function (m, k) { window.novartToast(m, k); };
  var refs = []; // {id, name}

  function current() {
    var id = el("model").value;
    for (var i = 0; i < models.length; i++) if (models[i].id === id) return models[i];
    return models[0];
  }

  var T = window.novartText || function (k) { return k; };

  // Beside the results the panel ends at the window's bottom edge (it
  // scrolls on its own, its action bar always on screen); on one column it
  // is part of the page.
  var wide = window.matchMedia ? window.matchMedia("(min-width: 901px)") : null;
  var fitting = false;
  function fitPanel() {
    fitting = false;
    if (!wide || !wide.matches) { form.style.maxHeight = ""; return; }
    var top = Math.max(form.getBoundingClientRect().top, 16);
    form.style.maxHeight = Math.max(240, window.innerHeight - top - 16) + "px";
  }
  function fitSoon() { if (!fitting) { fitting = true; window.requestAnimationFrame(fitPanel); } }
  window.addEventListener("scroll", fitSoon, { passive: true });
  window.addEventListener("resize", fitSoon);
  fitPanel();
  function plural(n, word) { return T(n === 1 ? word + "_one" : word, { n: n }); }

  // Generate waits while the cost is over the balance, and says why.
  var busy = false;
  function updateCost() {
    var m = current();
    var n = parseInt(el("n").value, 10) || 1;
    var cost = m.price * n;
    el("cost-total").textContent = plural(cost, "credits");
    var available = parseInt(el("available").textContent, 10);
    var short = !isNaN(available) && cost > available;
    el("cost").classList.toggle("short", short);
    el("generate").disabled = short || busy;
    var why = el("generate-why");
    why.hidden = !short;
    why.textContent = short ? T("short_of_credits", { cost: plural(cost, "credits"), available: plural(available, "credits") }) : "";
  }

  // Credits change on submit and on refunds: ask the server, never guess.
  function refreshBalance() {
    fetch("/api/v1/account", { credentials: "same-origin", headers: { "x-csrf-token": csrf } })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (a) { if (a) { el("available").textContent = a.available; updateCost(); } });
  }

  function fillResolutions() {
    var m = current();
    var checked = form.querySelector('input[name="aspect_ratio"]:checked');
    var ratio = checked ? checked.value : m.aspects[0].ratio;
    var sel = el("resolution");
    var keep = sel.value;
    sel.innerHTML = "";
    m.aspects.forEach(function (a) {
      if (a.ratio !== ratio) return;
      a.sizes.forEach(function (s) {
        var o = document.createElement("option");
        o.value = s.resolution;
        o.textContent = s.size.replace("x", " × ");
        if (String(s.resolution) === keep) o.selected = true;
        sel.appendChild(o);
      });
    });
  }

  function onModel() {
    var m = current();
    var box = el("aspects");
    var prev = form.querySelector('input[name="aspect_ratio"]:checked');
    var prevRatio = prev ? prev.value : null;
    box.innerHTML = "";
    m.aspects.forEach(function (a, i) {
      var input = document.createElement("input");
      input.type = "radio"; input.name = "aspect_ratio"; input.id = "ar-" + a.slug; input.value = a.ratio;
      input.checked = prevRatio ? a.ratio === prevRatio : i === 0;
      var label = document.createElement("label");
      label.htmlFor = input.id;
      var box2 = document.createElement("span");
      box2.className = "ar-box ar-" + a.slug; box2.setAttribute("aria-hidden", "true");
      label.appendChild(box2);
      label.appendChild(document.createTextNode(a.ratio));
      box.appendChild(input); box.appendChild(label);
    });
    if (!form.querySelector('input[name="aspect_ratio"]:checked')) box.querySelector("input").checked = true;
    var n = el("n"), keepN = parseInt(n.value, 10) || 1;
    n.innerHTML = "";
    for (var i = 1; i <= m.max_n; i++) {
      var o = document.createElement("option");
      o.value = i; o.textContent = i; o.selected = i === Math.min(keepN, m.max_n);
      n.appendChild(o);
    }
    var desc = el("model-desc");
    desc.textContent = "";
    if (m.builtin) {
      var b = document.createElement("span");
      b.className = "badge"; b.textContent = T("builtin");
      desc.appendChild(b); desc.appendChild(document.createTextNode(" "));
    }
    desc.appendChild(document.createTextNode(m.description || ""));
    el("dropzone").hidden = !m.reference_images;
    fillResolutions();
    updateCost();
  }

  el("model").addEventListener("change", onModel);
  el("aspects").addEventListener("change", fillResolutions);
  el("n").addEventListener("change", updateCost);
  var prompt = el("prompt");
  var count = function () { el("prompt-count").textContent = prompt.value.length; };
  prompt.addEventListener("input", count);
  count();
  el("dropzone").hidden = !current().reference_images;
  updateCost();

  // Ctrl/Cmd + Enter submits from anywhere in the form.
  form.addEventListener("keydown", function (ev) {
    if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) { ev.preventDefault(); submit(); }
  });

  // ---- reference images ----
  // On touch screens there is nothing to drop onto: the hint says choose.
  var hint = el("refs-hint");
  if (window.matchMedia && window.matchMedia("(pointer: coarse)").matches && hint.getAttribute("data-touch")) {
    hint.textContent = hint.getAttribute("data-touch");
  }
  var noneChosen = el("refs-chosen").textContent;
  function renderRefs() {
    var list = el("ref-list");
    list.innerHTML = "";
    el("refs-chosen").textContent = refs.length ? T("references_chosen", { n: refs.length }) : noneChosen;
    refs.forEach(function (r, i) {
      var li = document.createElement("li");
      li.className = "ref-chip";
      var img = document.createElement("img");
      img.src = r.preview; img.alt = T("reference_alt", { n: i + 1, name: r.name }); img.width = 48; img.height = 48;
      var name = document.createElement("span");
      name.textContent = r.name;
      var rm = document.createElement("button");
      rm.type = "button"; rm.className = "btn btn-small btn-ghost"; rm.textContent = T("remove");
      rm.setAttribute("aria-label", T("remove_reference", { name: r.name }));
      rm.addEventListener("click", function () { refs.splice(i, 1); renderRefs(); });
      li.appendChild(img); li.appendChild(name); li.appendChild(rm);
      list.appendChild(li);
    });
  }

  function uploadFiles(files) {
    Array.prototype.slice.call(files).forEach(function (file) {
      if (refs.length >= 4) { toast(T("max_references"), "error"); return; }
      var zone = el("dropzone");
      zone.classList.add("busy");
      fetch("/api/v1/uploads", {
        method: "POST", credentials: "same-origin",
        headers: { "x-csrf-token": csrf, "content-type": file.type || "application/octet-stream" },
        body: file
      }).then(function (r) {
        return r.json().then(function (body) { return { ok: r.ok, body: body }; });
      }).then(function (res) {
        zone.classList.remove("busy");
        if (!res.ok) { toast(file.name + ": " + res.body.error.message, "error"); return; }
        refs.push({ id: res.body.id, name: file.name, preview: res.body.preview_url });
        renderRefs();
      }).catch(function () { zone.classList.remove("busy"); toast(T("upload_failed"), "error"); });
    });
  }
  el("refs").addEventListener("change", function (ev) { uploadFiles(ev.target.files); ev.target.value = ""; });
  var zone = el("dropzone");
  ["dragenter", "dragover"].forEach(function (t) {
    zone.addEventListener(t, function (ev) { ev.preventDefault(); zone.classList.add("over"); });
  });
  ["dragleave", "drop"].forEach(function (t) {
    zone.addEventListener(t, function () { zone.classList.remove("over"); });
  });
  zone.addEventListener("drop", function (ev) { ev.preventDefault(); uploadFiles(ev.dataTransfer.files); });

  // ---- task cards ----
  var tasks = el("tasks");

  // A card the creator just made is brought into view (without moving the
  // form: only when it is off screen).
  var bringIntoView = {};
  function placeCard(html, id) {
    var tmp = document.createElement("div");
    tmp.innerHTML = html.trim();
    var card = tmp.firstElementChild;
    var old = document.getElementById("task-" + id);
    if (old) old.replaceWith(card); else tasks.prepend(card);
    el("tasks-empty").hidden = true;
    countdown();
    if (bringIntoView[id]) {
      delete bringIntoView[id];
      var r = card.getBoundingClientRect();
      if (r.top < 0 || r.bottom > window.innerHeight) {
        var still = window.matchMedia && window.matchMedia("(prefers-reduced-motion: reduce)").matches;
        card.scrollIntoView({ block: "nearest", behavior: still ? "auto" : "smooth" });
      }
    }
    return card;
  }

  // A task waiting to be tried again counts down to its next try.
  function countdown() {
    var now = Date.now() / 1000;
    tasks.querySelectorAll("[data-retry-at]").forEach(function (w) {
      var left = Math.ceil(parseInt(w.getAttribute("data-retry-at"), 10) - now);
      w.textContent = left > 0 ? T("retrying_in", { n: left }) : T("retrying_now");
    });
  }
  countdown();
  setInterval(countdown, 1000);
  // A waiting task's place in line moves as others start: refreshed every
  // few seconds while the page is visible.
  setInterval(function () {
    if (document.hidden) return;
    tasks.querySelectorAll('[data-status="queued"]').forEach(function (c) {
      refreshCard(c.getAttribute("data-task"));
    });
  }, 5000);

  var inflight = {};
  function refreshCard(id) {
    if (inflight[id]) { inflight[id] = 2; return; }
    inflight[id] = 1;
    fetch("/studio/tasks/" + encodeURIComponent(id) + "/card", { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        var again = inflight[id] === 2;
        delete inflight[id];
        if (html) placeCard(html, id);
        if (again) refreshCard(id);
      })
      .catch(function () { delete inflight[id]; });
  }

  // Progress-only changes update the bar in place; anything else re-renders.
  function onTask(t) {
    var card = document.getElementById("task-" + t.id);
    // A new preview: the card is fetched again (it shows the latest).
    var seen = card && card.getAttribute("data-preview");
    var fresh = t.preview_seq && (!seen || seen.slice(seen.lastIndexOf("=") + 1) !== String(t.preview_seq));
    if (card && card.getAttribute("data-status") === t.status && t.status === "running" && !fresh) {
      var bar = card.querySelector("progress");
      var words = card.querySelector(".task-state-words");
      if (bar && t.progress > 0) {
        var pct = Math.round(t.progress * 100);
        bar.value = pct;
        if (words) words.textContent = T("creating_pct", { pct: pct });
      }
      return;
    }
    var before = card ? card.getAttribute("data-status") : null;
    refreshCard(t.id);
    if (before && before !== t.status && (t.status === "failed" || t.status === "canceled" || t.status === "succeeded")) refreshBalance();
    if (before && before !== t.status) {
      if (t.status === "succeeded") toast(T("images_ready"), "success");
      if (t.status === "failed") toast(t.error || "A task failed.", "error");
    }
  }

  // One key per intended task: a retry after a lost answer sends the same
  // key and body and gets the same task back instead of paying twice.
  var submitKey = (el("submit_key") || {}).value || freshKey();
  var keyBody = null;
  function freshKey() {
    var b = new Uint8Array(16);
    crypto.getRandomValues(b);
    return Array.prototype.map.call(b, function (x) { return ("0" + x.toString(16)).slice(-2); }).join("");
  }

  function submit() {
    var btn = el("generate");
    if (btn.disabled) return;
    var m = current();
    var checked = form.querySelector('input[name="aspect_ratio"]:checked');
    var body = {
      prompt: prompt.value,
      model: m.id,
      aspect_ratio: checked ? checked.value : undefined,
      resolution: parseInt(el("resolution").value, 10) || undefined,
      n: parseInt(el("n").value, 10) || 1,
      negative_prompt: el("negative_prompt").value || undefined,
      webhook_url: el("webhook_url").value || undefined,
      reference_images: refs.length ? refs.map(function (r) { return r.id; }) : undefined
    };
    var seed = el("seed").value.trim();
    if (seed !== "") body.seed = Number(seed);
    form.querySelectorAll(".has-error").forEach(function (f) { f.classList.remove("has-error"); });
    busy = true;
    btn.disabled = true;
    var spin = document.createElement("span");
    spin.className = "spinner"; spin.setAttribute("aria-hidden", "true");
    btn.prepend(spin);
    var sent = JSON.stringify(body);
    if (keyBody !== null && keyBody !== sent) submitKey = freshKey();
    keyBody = sent;
    fetch("/api/v1/tasks", {
      method: "POST", credentials: "same-origin",
      headers: { "content-type": "application/json", "x-csrf-token": csrf, "idempotency-key": "studio:" + submitKey },
      body: sent
    }).then(function (r) {
      return r.json().then(function (b) { return { ok: r.ok, body: b }; });
    }).then(function (res) {
      busy = false; btn.disabled = false; spin.remove(); updateCost();
      // Answered: the next Generate is a new task.
      submitKey = freshKey(); keyBody = null;
      if (!res.ok) {
        var e = res.body.error || {};
        var extra = e.code === "insufficient_balance" ? " " + T("see_wallet") : "";
        toast((e.message || T("task_not_created")) + extra, "error");
        refreshBalance();
        var field = e.param && document.getElementById(e.param);
        if (field) {
          field.closest(".field") && field.closest(".field").classList.add("has-error");
          if (field.closest("details")) field.closest("details").open = true;
          field.focus();
        }
        return;
      }
      toast(T("queued", { images: plural(res.body.n, "images") }), "success");
      refreshBalance();
      bringIntoView[res.body.id] = true;
      refreshCard(res.body.id);
      watch();
    }).catch(function () {
      busy = false; btn.disabled = false; spin.remove(); updateCost();
      toast(T("unreachable"), "error");
    });
  }

  form.addEventListener("submit", function (ev) { ev.preventDefault(); submit(); });

  // Cancel through the API.
  tasks.addEventListener("submit", function (ev) {
    var f = ev.target.closest("form[data-cancel]");
    if (!f) return;
    ev.preventDefault();
    var id = f.getAttribute("data-cancel");
    fetch("/api/v1/tasks/" + encodeURIComponent(id) + "/cancel", {
      method: "POST", credentials: "same-origin", headers: { "x-csrf-token": csrf }
    }).then(function (r) { return r.json(); }).then(function (b) {
      if (b.error) toast(b.error.message, "error"); else toast(T("task_canceled"), "info");
      refreshCard(id);
    });
  });

  // ---- live updates: SSE, else polling ----
  var source = null, polling = null, failures = 0;
  function activeIds() {
    return Array.prototype.map.call(tasks.querySelectorAll('[data-status="queued"],[data-status="running"]'),
      function (c) { return c.getAttribute("data-task"); });
  }
  function poll() {
    var ids = activeIds();
    if (!ids.length) { clearInterval(polling); polling = null; return; }
    ids.forEach(function (id) {
      fetch("/api/v1/tasks/" + encodeURIComponent(id), { credentials: "same-origin", headers: { "x-csrf-token": csrf } })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (t) { if (t) onTask(t); });
    });
  }
  function startPolling() {
    if (!polling) polling = setInterval(poll, 2000);
    el("live-status").textContent = T("polling");
  }
  // The page's one live stream is opened by app.js; the studio listens to it.
  function watch() {
    var live = window.novartLive;
    if (source || !live || !live.source) { if (!source) startPolling(); return; }
    source = live.source;
    if (source.readyState === 1) el("live-status").textContent = T("live");
    live.on("ready", function () { failures = 0; el("live-status").textContent = T("live"); });
    live.on("task", function (ev) { onTask(JSON.parse(ev.data)); });
    live.on("resync", function () { activeIds().forEach(refreshCard); });
    source.addEventListener("error", function () {
      failures += 1;
      if (failures >= 3) { source.close(); startPolling(); }
    });
  }
  watch();
})();
