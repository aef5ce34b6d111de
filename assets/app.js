// Novart Studio: small, dependency-free enhancements. Pages work without it.
(function () {
  "use strict";

  // Toasts: dismiss on click, fade out after a while.
  function wireToast(t) {
    var close = t.querySelector(".toast-close");
    if (close) close.addEventListener("click", function () { t.remove(); });
    setTimeout(function () { t.remove(); }, 8000);
  }
  window.novartToast = function (message, kind) {
    var box = document.getElementById("toasts");
    if (!box) return;
    var t = document.createElement("div");
    t.className = "toast toast-" + (kind || "info");
    var span = document.createElement("span");
    span.textContent = message;
    var b = document.createElement("button");
    b.type = "button"; b.className = "toast-close"; b.setAttribute("aria-label", "Dismiss"); b.textContent = "×";
    t.appendChild(span); t.appendChild(b);
    box.appendChild(t);
    wireToast(t);
  };

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-toast]").forEach(wireToast);

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
      b.type = "button"; b.className = "btn btn-small btn-ghost pw-toggle"; b.textContent = "Show";
      b.setAttribute("aria-controls", input.id);
      b.setAttribute("aria-label", "Show password");
      b.addEventListener("click", function () {
        var shown = input.type === "text";
        input.type = shown ? "password" : "text";
        b.textContent = shown ? "Show" : "Hide";
        b.setAttribute("aria-label", shown ? "Show password" : "Hide password");
      });
      input.style.paddingRight = "72px";
      wrap.appendChild(b);
    });

    // The image viewer: any [data-viewer] thumbnail opens the <dialog>.
    var viewer = document.getElementById("viewer");
    if (viewer && typeof viewer.showModal === "function") {
      document.addEventListener("click", function (ev) {
        var t = ev.target.closest ? ev.target.closest("[data-viewer]") : null;
        if (!t) return;
        ev.preventDefault();
        var img = document.getElementById("viewer-img");
        var thumb = t.querySelector("img");
        img.src = t.getAttribute("data-full");
        img.alt = thumb ? thumb.alt : "";
        if (thumb) { img.width = thumb.width; img.height = thumb.height; }
        document.getElementById("viewer-prompt").textContent = t.getAttribute("data-prompt") || "";
        document.getElementById("viewer-meta").textContent = t.getAttribute("data-meta") || "";
        document.getElementById("viewer-download").href = t.getAttribute("data-download");
        document.getElementById("viewer-reuse").href = t.getAttribute("data-reuse") || "/studio";
        var del = document.getElementById("viewer-delete");
        if (del) {
          var url = t.getAttribute("data-delete");
          del.hidden = !url;
          if (url) del.action = url;
        }
        viewer.showModal();
      });
      document.getElementById("viewer-close").addEventListener("click", function () { viewer.close(); });
      viewer.addEventListener("click", function (ev) { if (ev.target === viewer) viewer.close(); });
      var del = document.getElementById("viewer-delete");
      if (del) del.addEventListener("submit", function (ev) {
        if (!window.confirm("Delete this image for good?")) ev.preventDefault();
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
        var done = function () { window.novartToast("Copied to the clipboard.", "success"); };
        if (navigator.clipboard && window.isSecureContext) {
          navigator.clipboard.writeText(text).then(done, function () { window.novartToast("Copy failed: select the text and copy it.", "error"); });
        } else {
          var r = document.createRange(); r.selectNodeContents(el);
          var sel = window.getSelection(); sel.removeAllRanges(); sel.addRange(r);
          try { document.execCommand("copy"); done(); } catch (e) { window.novartToast("Select the text and copy it.", "info"); }
        }
      });
    });
  });
})();
