/* Review queue (views.review_page): work the reads with the keyboard or by touch, sign them with
 * POST /api/v1/captures/{id}/review. One read is shown at a time.
 *
 *   on the read:   Enter  accept (or sign the corrections), then Enter again to sign
 *                  j / k  next / previous read
 *                  any other character (J and K too): starts correcting the flagged field
 *   in a value:    Enter  sign (a correction first asks for its reason: 1-4 or typed)
 *                  Esc    back to the read
 *   reason chips:  1-4    pick the reason and go on to the signature
 *   signature:     Enter  sign (with the password when it is due), Esc cancel
 *
 * Also the capture page's "Read again" button (POST /api/v1/captures/{id}/retry).
 * Plain JavaScript, no build step. Strings come from the JSON script tag #review-strings.
 */
(function () {
  "use strict";

  function csrfToken() {
    var input = document.querySelector("input[name=csrfmiddlewaretoken]");
    return input ? input.value : "";
  }

  function postJson(url, body) {
    return fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: {
        "Content-Type": "application/json",
        "Accept": "application/json",
        "X-CSRFToken": csrfToken()
      },
      body: JSON.stringify(body || {})
    }).then(function (resp) {
      return resp.json().catch(function () { return {}; }).then(function (data) {
        return { status: resp.status, ok: resp.ok, data: data };
      });
    });
  }

  // --- the capture page: read a failed capture again ------------------------------------------
  var retry = document.querySelector("[data-retry-url]");
  if (retry) {
    retry.addEventListener("click", function () {
      retry.disabled = true;
      postJson(retry.dataset.retryUrl).then(function (r) {
        if (r.ok) { window.location.reload(); return; }
        retry.disabled = false;
        var out = document.getElementById("retry-status");
        if (out) out.textContent = (r.data.error && r.data.error.message) || String(r.status);
      }, function () { retry.disabled = false; });
    });
  }

  // --- the review queue -----------------------------------------------------------------------
  var queue = document.getElementById("review-queue");
  if (!queue) return;
  var T = JSON.parse(document.getElementById("review-strings").textContent);
  var dialog = document.getElementById("sign-dialog");
  var signForm = document.getElementById("sign-form");
  var pwRow = document.getElementById("sign-password-row");
  var pwInput = document.getElementById("sign-password");
  var signError = document.getElementById("sign-error");
  var signMeaning = document.getElementById("sign-meaning");
  var reauthMinutes = parseFloat(queue.dataset.reauthMinutes || "0");
  var dueAt = queue.dataset.passwordDueAt ? Date.parse(queue.dataset.passwordDueAt) : 0;
  var items = Array.prototype.slice.call(queue.querySelectorAll(".review-item"));
  var current = 0;
  var pending = null; // {item, body} waiting for the signature dialog
  var busy = false;

  function fmt(s, params) {
    return s.replace(/%\((\w+)\)s/g, function (_m, k) { return params[k]; });
  }
  function passwordDue() { return !dueAt || Date.now() >= dueAt; }
  function item() { return items[current] || null; }

  function show(index) {
    if (!items.length) {
      queue.querySelector(".review-empty").hidden = false;
      return;
    }
    current = Math.max(0, Math.min(index, items.length - 1));
    items.forEach(function (it, i) {
      it.hidden = i !== current;
      var pos = it.querySelector(".ri-pos");
      if (pos) pos.textContent = fmt(T.position, { n: i + 1, total: items.length });
    });
    items[current].focus({ preventScroll: false });
  }

  function fields(it) { return Array.prototype.slice.call(it.querySelectorAll(".rf")); }
  function inputOf(rf) { return rf.querySelector(".rf-input"); }
  function changed(rf) { return inputOf(rf).value !== rf.dataset.original; }

  function reasonOf(rf) {
    var picked = rf.querySelector(".chip.reason[aria-pressed=true]");
    var typed = rf.querySelector(".rf-reason-text").value.trim();
    return typed || (picked ? picked.dataset.reason : "");
  }

  function refresh(it) {
    var anyChanged = false;
    fields(it).forEach(function (rf) {
      var c = changed(rf);
      anyChanged = anyChanged || c;
      rf.classList.toggle("is-changed", c);
      var needsReason = c || rf.querySelector(".rf-override-box").checked;
      rf.querySelector(".rf-reason").hidden = !needsReason;
    });
    var label = it.querySelector(".act-sign-label");
    label.textContent = anyChanged ? label.dataset.correct : label.dataset.accept;
  }

  function primaryField(it) {
    var name = it.dataset.primary;
    return fields(it).filter(function (rf) { return rf.dataset.field === name; })[0] || fields(it)[0];
  }

  function status(it, text) { it.querySelector(".review-status").textContent = text || ""; }

  // Build the request from the read as it stands; null (and the reason asked) when incomplete.
  function collect(it) {
    var body = { fields: {}, meaning: "reviewed", base_revision: parseInt(it.dataset.baseRevision, 10) };
    var missing = null;
    var anyChanged = false;
    fields(it).forEach(function (rf) {
      var c = changed(rf);
      var override = rf.querySelector(".rf-override-box").checked;
      var reason = reasonOf(rf);
      if ((c || override) && !reason && !missing) missing = rf;
      if (c || override) {
        var entry = { reason: reason, override: override };
        if (c) entry.value = inputOf(rf).value;
        body.fields[rf.dataset.field] = entry;
        anyChanged = anyChanged || c;
      }
    });
    if (missing) {
      missing.querySelector(".rf-reason").hidden = false;
      status(it, T.reason_needed);
      var first = missing.querySelector(".chip.reason");
      if (first) first.focus();
      return null;
    }
    body._meaning = anyChanged ? "corrected" : "reviewed";
    return body;
  }

  function openSignature(it) {
    if (busy) return;
    var body = collect(it);
    if (!body) return;
    pending = { item: it, body: body };
    signMeaning.textContent = T["meaning_" + body._meaning];
    signError.hidden = true;
    pwInput.value = "";
    pwRow.hidden = !passwordDue();
    dialog.showModal();
    (pwRow.hidden ? document.getElementById("sign-confirm") : pwInput).focus();
  }

  function closeSignature() {
    if (dialog.open) dialog.close();
    pending = null;
    var it = item();
    if (it) it.focus();
  }

  function showFieldProblems(it, details) {
    var bad = (details && details.fields) || {};
    fields(it).forEach(function (rf) {
      var problem = bad[rf.dataset.field];
      var out = rf.querySelector(".rf-error");
      if (!problem) { out.hidden = true; return; }
      out.hidden = false;
      out.textContent = T.invalid;
      rf.querySelector(".rf-override").hidden = false;
    });
  }

  function signed(it) {
    it.classList.add("is-signed");
    status(it, T.signed);
    var idx = items.indexOf(it);
    items.splice(idx, 1);
    it.hidden = true;
    var counters = document.querySelectorAll("#review-total, .nav-count[data-review-count]");
    Array.prototype.forEach.call(counters, function (c) {
      var n = Math.max(0, (parseInt(c.textContent, 10) || 0) - 1);
      c.textContent = String(n);
      if (c.dataset.reviewCount !== undefined) c.dataset.reviewCount = String(n);
      c.classList.toggle("has-items", n > 0);
    });
    show(idx);
  }

  function sign() {
    if (!pending || busy) return;
    var it = pending.item;
    var body = JSON.parse(JSON.stringify(pending.body));
    delete body._meaning;
    var password = pwInput.value;
    if (!pwRow.hidden && !password) {
      signError.hidden = false;
      signError.textContent = T.password_needed;
      pwInput.focus();
      return;
    }
    if (password) body.password = password;
    busy = true;
    status(it, T.signing);
    var url = queue.dataset.reviewUrl.replace(queue.dataset.zeroUuid, it.dataset.captureId);
    postJson(url, body).then(function (r) {
      busy = false;
      var err = (r.data && r.data.error) || {};
      if (r.ok) {
        if (password) dueAt = Date.now() + reauthMinutes * 60000;
        dialog.close();
        pending = null;
        signed(it);
        return;
      }
      if (err.code === "password_required" || err.code === "signature_failed") {
        dueAt = 0;
        pwRow.hidden = false;
        signError.hidden = false;
        signError.textContent = err.code === "signature_failed" ? T.wrong_password : T.password_needed;
        pwInput.value = "";
        pwInput.focus();
        status(it, "");
        return;
      }
      closeSignature();
      if (err.code === "invalid_value") { showFieldProblems(it, err.details); status(it, T.invalid); return; }
      if (err.code === "reason_required") { collect(it); return; }
      if (err.code === "stale_read") { status(it, T.stale); return; }
      status(it, err.message || fmt(T.server_error, { status: r.status }));
    }, function () {
      busy = false;
      closeSignature();
      status(it, T.network_error);
    });
  }

  // --- events -----------------------------------------------------------------------------------
  signForm.addEventListener("submit", function (ev) { ev.preventDefault(); sign(); });
  document.getElementById("sign-cancel").addEventListener("click", closeSignature);
  dialog.addEventListener("cancel", function (ev) { ev.preventDefault(); closeSignature(); });

  items.forEach(function (it) {
    it.addEventListener("input", function () { refresh(it); });
    it.addEventListener("change", function () { refresh(it); });
    it.querySelector(".act-sign").addEventListener("click", function () { openSignature(it); });
    it.querySelector(".act-next").addEventListener("click", function () { show(current + 1); });
    it.querySelector(".act-prev").addEventListener("click", function () { show(current - 1); });
    Array.prototype.forEach.call(it.querySelectorAll(".chip.suggest"), function (chip) {
      chip.addEventListener("click", function () {
        var rf = chip.closest(".rf");
        inputOf(rf).value = chip.dataset.value;
        refresh(it);
        inputOf(rf).focus();
      });
    });
    Array.prototype.forEach.call(it.querySelectorAll(".chip.reason"), function (chip) {
      chip.addEventListener("click", function () { pickReason(it, chip); });
    });
  });

  function pickReason(it, chip) {
    var rf = chip.closest(".rf");
    Array.prototype.forEach.call(rf.querySelectorAll(".chip.reason"), function (c) {
      c.setAttribute("aria-pressed", c === chip ? "true" : "false");
    });
    status(it, "");
    openSignature(it);
  }

  document.addEventListener("keydown", function (ev) {
    if (dialog.open || ev.ctrlKey || ev.metaKey || ev.altKey || ev.isComposing) return;
    var it = item();
    if (!it || it.hidden) return;
    var t = ev.target;
    var inItem = it.contains(t) || t === document.body;
    if (!inItem) return;
    if (t.classList && t.classList.contains("chip") && t.classList.contains("reason") === false) {
      return; // suggestion chips: the browser's own Enter / Space
    }
    var rf = t.closest ? t.closest(".rf") : null;
    if (t.classList && t.classList.contains("reason") && /^[1-9]$/.test(ev.key)) {
      var chip = rf.querySelector('.chip.reason[data-key="' + ev.key + '"]');
      if (chip) { ev.preventDefault(); pickReason(it, chip); }
      return;
    }
    if (t.tagName === "INPUT") {
      if (ev.key === "Enter") { ev.preventDefault(); openSignature(it); }
      else if (ev.key === "Escape") { ev.preventDefault(); it.focus(); }
      return;
    }
    if (t.tagName === "BUTTON" || t.tagName === "A" || t.tagName === "SELECT") return;
    if (ev.key === "Enter") { ev.preventDefault(); openSignature(it); return; }
    // lower-case j / k only: a capital J or K starts a correction like any other character
    if (ev.key === "j") { ev.preventDefault(); show(current + 1); return; }
    if (ev.key === "k") { ev.preventDefault(); show(current - 1); return; }
    if (ev.key.length === 1 && ev.key !== " ") {
      var target = primaryField(it);
      if (!target) return;
      ev.preventDefault();
      var input = inputOf(target);
      input.value = ev.key;
      input.focus();
      input.setSelectionRange(input.value.length, input.value.length);
      refresh(it);
    }
  });

  show(0);
})();
