// Novart Studio: small, dependency-free enhancements. Pages work without it.
(function () {
  "use strict";

  // Texts in the page's language, from the catalogue (see base.html).
  var texts = {};
  try { texts = JSON.parse(document.getElementById("novart-texts").textContent); } catch (e) { texts = {}; }
  window.novartText = function (key, values) {
    var s = texts[key] || key;
    Object.keys(values || {}).forEach(function (k) { s = s.split("{" + k + "}").join(String(values[k])); });
    return s;
  };
  var T = window.novartText;

  // Toasts: one at a time. A new one replaces the one shown; it leaves by
  // itself after a few seconds, except an error, which stays until
  // dismissed. The box sits at the bottom of the screen, or at the top when
  // there it would cover the form being used.
  var TOAST_SECS = 6;
  function placeToasts() {
    var box = document.getElementById("toasts");
    if (!box || !box.querySelector(".toast:not([hidden])")) return;
    box.classList.remove("at-top");
    box.style.top = "";
    var r = box.getBoundingClientRect();
    var covered = Array.prototype.some.call(
      document.querySelectorAll("main input, main textarea, main select, main button, main .btn"),
      function (el) {
        var e = el.getBoundingClientRect();
        return e.width > 0 && e.bottom > r.top && e.top < r.bottom && e.right > r.left && e.left < r.right;
      });
    if (covered) {
      box.classList.add("at-top");
      // Below the site's header while it is on screen.
      var header = document.querySelector(".topbar");
      var below = header ? header.getBoundingClientRect().bottom : 0;
      if (below > 0) box.style.top = Math.round(below + 8) + "px";
    }
  }
  var placing = false;
  function placeSoon() {
    if (placing) return;
    placing = true;
    window.requestAnimationFrame(function () { placing = false; placeToasts(); });
  }
  window.addEventListener("scroll", placeSoon, { passive: true });
  window.addEventListener("resize", placeSoon);
  function showToast(t, kind) {
    var box = document.getElementById("toasts");
    if (!box) return;
    Array.prototype.forEach.call(box.querySelectorAll(".toast"), function (old) { if (old !== t) old.remove(); });
    if (t.parentNode !== box) box.appendChild(t);
    t.hidden = false;
    var close = t.querySelector(".toast-close");
    if (close) close.addEventListener("click", function () { t.remove(); });
    if (kind !== "error") setTimeout(function () { t.remove(); }, TOAST_SECS * 1000);
    placeToasts();
  }
  window.novartToast = function (message, kind) {
    var t = document.createElement("div");
    t.className = "toast toast-" + (kind || "info");
    if (kind === "error") t.setAttribute("role", "alert");
    var span = document.createElement("span");
    span.textContent = message;
    var b = document.createElement("button");
    b.type = "button"; b.className = "toast-close"; b.setAttribute("aria-label", T("dismiss")); b.textContent = "×";
    t.appendChild(span); t.appendChild(b);
    showToast(t, kind || "info");
  };

  // ---- the live stream: tasks and messages (one EventSource per page) ----
  // localStorage keeps only message ids the user dismissed and whether they
  // want browser notifications; nothing else is stored.
  // Inbox items are shown as a toast once: the ids already shown are kept
  // (the last 100).
  var SEEN = "novart.toasts.seen", NOTIFY = "novart.notify";
  function store(key, value) { try { if (value === null) localStorage.removeItem(key); else localStorage.setItem(key, value); } catch (e) { /* private mode */ } }
  function load(key) { try { return localStorage.getItem(key); } catch (e) { return null; } }
  function seen() {
    try { var v = JSON.parse(load(SEEN) || "[]"); return Array.isArray(v) ? v : []; } catch (e) { return []; }
  }
  function markSeen(id) {
    var list = seen().filter(function (x) { return x !== id; });
    list.push(id);
    store(SEEN, JSON.stringify(list.slice(-100)));
  }
  function messageToast(id, title) {
    var box = document.getElementById("toasts");
    if (!box || box.querySelector('[data-message-id="' + id + '"]')) return;
    var t = document.createElement("div");
    t.className = "toast toast-message"; t.setAttribute("data-message-id", String(id));
    t.hidden = true;
    var span = document.createElement("span");
    var strong = document.createElement("strong"); strong.textContent = title;
    var a = document.createElement("a"); a.href = "/messages#m" + id; a.textContent = T("open");
    span.appendChild(strong); span.appendChild(document.createTextNode(" ")); span.appendChild(a);
    var b = document.createElement("button");
    b.type = "button"; b.className = "toast-close"; b.setAttribute("aria-label", T("dismiss")); b.textContent = "×";
    t.appendChild(span); t.appendChild(b);
    box.appendChild(t);
    wireMessageToast(t);
  }
  function wireMessageToast(t) {
    var id = parseInt(t.getAttribute("data-message-id"), 10);
    if (seen().indexOf(id) >= 0) { t.remove(); return; }
    markSeen(id);
    showToast(t, "info");
  }
  function setBadge(count) {
    var link = document.querySelector('.nav a[href="/messages"]');
    if (!link) return;
    var badge = link.querySelector(".badge-count");
    if (count <= 0) { if (badge) badge.remove(); return; }
    if (!badge) {
      badge = document.createElement("span"); badge.className = "badge badge-count";
      link.appendChild(document.createTextNode(" ")); link.appendChild(badge);
    }
    badge.textContent = String(count);
    badge.setAttribute("aria-label", count + " unread");
    badge.classList.remove("bump"); void badge.offsetWidth; badge.classList.add("bump");
  }
  function notifyOn() {
    return "Notification" in window && Notification.permission === "granted" && load(NOTIFY) === "on";
  }
  function notify(title, body, url, tag) {
    if (!notifyOn() || document.visibilityState === "visible") return;
    if (!("serviceWorker" in navigator)) return;
    navigator.serviceWorker.ready.then(function (reg) {
      reg.showNotification(title, { body: body, tag: tag, data: { url: url }, icon: "/assets/favicon.svg" });
    });
  }
  var live = { source: null, handlers: {} };
  live.on = function (name, fn) {
    (live.handlers[name] = live.handlers[name] || []).push(fn);
    if (live.source) live.source.addEventListener(name, fn);
  };
  window.novartLive = live;
  var body = document.body;
  var csrfMeta = document.querySelector('meta[name="csrf-token"]');
  if (body && body.hasAttribute("data-live") && window.EventSource && csrfMeta && csrfMeta.content) {
    var url = "/api/v1/events?csrf_token=" + encodeURIComponent(csrfMeta.content) +
      "&messages_after=" + encodeURIComponent(body.getAttribute("data-messages-after") || "0");
    live.source = new EventSource(url);
    Object.keys(live.handlers).forEach(function (name) {
      live.handlers[name].forEach(function (fn) { live.source.addEventListener(name, fn); });
    });
    live.source.addEventListener("message", function (ev) {
      var m = JSON.parse(ev.data);
      messageToast(m.id, m.title);
      setBadge(m.unread);
      notify(m.title, m.body, "/messages#m" + m.id, "message-" + m.id);
    });
    var finished = {};
    live.source.addEventListener("task", function (ev) {
      var t = JSON.parse(ev.data);
      var done = t.status === "succeeded" || t.status === "failed";
      if (!done || finished[t.id]) return;
      finished[t.id] = true;
      var title = t.status === "succeeded" ? T("images_ready_title") : T("task_failed_title");
      var text = (t.prompt || "").slice(0, 120);
      if (window.location.pathname !== "/studio") window.novartToast(title + ": " + text, t.status === "succeeded" ? "success" : "error");
      notify(title, text, "/studio", "task-" + t.id);
    });
    // Close the stream when the page goes away (and reopen it if the page
    // comes back from the back/forward cache): a stream left open holds one
    // of the browser's few connections to this site.
    window.addEventListener("pagehide", function () { live.source.close(); });
    window.addEventListener("pageshow", function (ev) { if (ev.persisted) window.location.reload(); });
    if ("serviceWorker" in navigator && window.isSecureContext) {
      navigator.serviceWorker.register("/sw.js").catch(function () { /* notifications stay off */ });
    }
  }

  document.addEventListener("DOMContentLoaded", function () {
    // The result of the user's own action (a flash) comes first; inbox
    // items wait for a page without one. Only the newest is shown.
    var flash = document.querySelector("[data-toast]");
    if (flash) {
      showToast(flash, flash.getAttribute("data-toast") || "info");
    } else {
      var waiting = document.querySelectorAll(".toast-message[data-message-id]");
      Array.prototype.forEach.call(waiting, function (t, i) {
        if (i < waiting.length - 1) t.remove(); else wireMessageToast(t);
      });
    }

    // Browser notifications: a switch on the inbox page.
    var sw = document.getElementById("notify-toggle");
    if (sw) {
      var state = document.getElementById("notify-state");
      var show = function () {
        if (!("Notification" in window) || !("serviceWorker" in navigator) || !window.isSecureContext) {
          state.textContent = T("notify_unsupported");
          sw.hidden = true; return;
        }
        var on = notifyOn();
        sw.textContent = on ? T("notify_off") : T("notify_on");
        sw.setAttribute("aria-pressed", on ? "true" : "false");
        state.textContent = Notification.permission === "denied"
          ? T("notify_blocked")
          : on ? T("notify_explain") : "";
      };
      sw.hidden = false;
      sw.addEventListener("click", function () {
        if (notifyOn()) { store(NOTIFY, null); show(); return; }
        Notification.requestPermission().then(function (p) {
          if (p === "granted") store(NOTIFY, "on");
          show();
        });
      });
      show();
    }

    // Busy state: disable the submit button and show a spinner while the form is sent.
    document.querySelectorAll("form[data-busy]").forEach(function (form) {
      form.addEventListener("submit", function () {
        var btn = form.querySelector("button[type=submit]");
        if (!btn || btn.disabled) return;
        setTimeout(function () {
          btn.disabled = true;
          btn.setAttribute("aria-busy", "true");
          var s = document.createElement("span");
          s.className = "spinner"; s.setAttribute("aria-hidden", "true");
          btn.prepend(s);
        }, 0);
      });
    });

    // Show/hide toggles for password fields.
    document.querySelectorAll("input[data-password]").forEach(function (input) {
      var wrap = document.createElement("div");
      wrap.className = "pw-wrap";
      input.parentNode.insertBefore(wrap, input);
      wrap.appendChild(input);
      var b = document.createElement("button");
      b.type = "button"; b.className = "btn btn-small btn-ghost pw-toggle"; b.textContent = T("show");
      b.setAttribute("aria-controls", input.id);
      b.setAttribute("aria-label", T("show_password"));
      b.addEventListener("click", function () {
        var shown = input.type === "text";
        input.type = shown ? "password" : "text";
        b.textContent = shown ? T("show") : T("hide");
        b.setAttribute("aria-label", shown ? T("show_password") : T("hide_password"));
      });
      input.style.paddingRight = "72px";
      wrap.appendChild(b);
    });

    // The image viewer: any [data-viewer] thumbnail opens the <dialog>.
    var viewer = document.getElementById("viewer");
    if (viewer && typeof viewer.showModal === "function") {
      // Previous and next walk the page's images in order: buttons, the
      // arrow keys and a swipe.
      var shown = null;
      var all = function () { return Array.prototype.slice.call(document.querySelectorAll("[data-viewer]")); };
      var step = function (by) {
        var list = all(), i = list.indexOf(shown);
        if (i < 0 || !list[i + by]) return;
        open(list[i + by]);
      };
      var open = function (t) {
        shown = t;
        var img = document.getElementById("viewer-img");
        var thumb = t.querySelector("img");
        img.src = t.getAttribute("data-full");
        img.alt = thumb ? thumb.alt : "";
        if (thumb) { img.width = thumb.width; img.height = thumb.height; }
        document.getElementById("viewer-title").textContent = t.getAttribute("data-prompt") || T("image");
        var list = all(), i = list.indexOf(t);
        document.getElementById("viewer-prev").hidden = i <= 0;
        document.getElementById("viewer-next").hidden = i >= list.length - 1;
        document.getElementById("viewer-position").textContent =
          list.length > 1 ? T("viewer_position", { n: i + 1, total: list.length }) : "";
        document.getElementById("viewer-meta").textContent = t.getAttribute("data-meta") || "";
        document.getElementById("viewer-download").href = t.getAttribute("data-download");
        document.getElementById("viewer-reuse").href = t.getAttribute("data-reuse") || "/studio";
        var del = document.getElementById("viewer-delete");
        if (del) {
          var url = t.getAttribute("data-delete");
          del.hidden = !url;
          if (url) del.action = url;
        }
        if (!viewer.open) viewer.showModal();
      };
      document.addEventListener("click", function (ev) {
        var t = ev.target.closest ? ev.target.closest("[data-viewer]") : null;
        if (!t) return;
        ev.preventDefault();
        open(t);
      });
      document.getElementById("viewer-prev").addEventListener("click", function () { step(-1); });
      document.getElementById("viewer-next").addEventListener("click", function () { step(1); });
      viewer.addEventListener("keydown", function (ev) {
        if (ev.key === "ArrowLeft") { ev.preventDefault(); step(-1); }
        if (ev.key === "ArrowRight") { ev.preventDefault(); step(1); }
      });
      var touchX = null;
      viewer.addEventListener("touchstart", function (ev) { touchX = ev.touches.length === 1 ? ev.touches[0].clientX : null; }, { passive: true });
      viewer.addEventListener("touchend", function (ev) {
        if (touchX === null || !ev.changedTouches.length) return;
        var dx = ev.changedTouches[0].clientX - touchX;
        touchX = null;
        if (Math.abs(dx) > 50) step(dx < 0 ? 1 : -1);
      });
      document.getElementById("viewer-close").addEventListener("click", function () { viewer.close(); });
      viewer.addEventListener("click", function (ev) { if (ev.target === viewer) viewer.close(); });
      var del = document.getElementById("viewer-delete");
      if (del) del.addEventListener("submit", function (ev) {
        if (!window.confirm(T("delete_image_confirm"))) ev.preventDefault();
      });
    }

    // Forms that ask first: data-confirm="question".
    document.querySelectorAll("form[data-confirm]").forEach(function (form) {
      form.addEventListener("submit", function (ev) {
        if (!window.confirm(form.getAttribute("data-confirm"))) ev.preventDefault();
      });
    });

    // Copy buttons: data-copy="#selector".
    document.querySelectorAll("[data-copy]").forEach(function (btn) {
      btn.addEventListener("click", function () {
        var el = document.querySelector(btn.getAttribute("data-copy"));
        if (!el) return;
        var text = el.value || el.textContent;
        var done = function () { window.novartToast(T("copied"), "success"); };
        if (navigator.clipboard && window.isSecureContext) {
          navigator.clipboard.writeText(text).then(done, function () { window.novartToast(T("copy_failed"), "error"); });
        } else {
          var r = document.createRange(); r.selectNodeContents(el);
          var sel = window.getSelection(); sel.removeAllRanges(); sel.addRange(r);
          try { document.execCommand("copy"); done(); } catch (e) { window.novartToast(T("copy_manually"), "info"); }
        }
      });
    });
  });
})();
