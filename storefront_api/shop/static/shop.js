// The shop's pages: our one script (CSP script-src 'self', no inline script). Each part
// starts only where its page has the elements it works on.
"use strict";

// Links carry their token in the fragment (#s=, #t=, #o=), which never reaches a server or a
// log: hand it to the server once, in a same-origin POST that makes it an HttpOnly cookie.
function fragmentToCookie() {
  var form = document.getElementById("fragment-form");
  if (!form) return;
  var params = new URLSearchParams(location.hash.slice(1));
  var token = params.get(form.dataset.fragment);
  var missing = document.getElementById("start-missing");
  if (!token) return;
  history.replaceState(null, "", location.pathname); // the token leaves the address bar and history
  form.elements.token.value = token;
  if (missing) missing.hidden = true;
  var waiting = document.getElementById("start-waiting");
  if (waiting) waiting.hidden = false;
  form.submit();
}

// Upload page: each chosen photo goes up at once and gets its verdict (one face, in focus).
function uploader() {
  var box = document.getElementById("uploader");
  if (!box) return;
  var input = document.getElementById("photos");
  var verdict = document.getElementById("face-verdict");
  var list = document.getElementById("photo-list");
  var chosen = document.getElementById("chosen-uploads");
  var next = document.getElementById("to-style");
  var max = parseInt(box.dataset.max, 10);
  var taken = 0; // accepted, or on their way

  function refresh() { next.disabled = chosen.querySelectorAll("input").length === 0; }

  function item(file) {
    var li = document.createElement("li");
    var img = document.createElement("img");
    img.alt = "";
    img.src = URL.createObjectURL(file);
    var text = document.createElement("span");
    text.textContent = file.name + ": " + box.dataset.checking;
    li.appendChild(img);
    li.appendChild(text);
    list.appendChild(li);
    return {li: li, text: text};
  }

  function accepted(shown, id) {
    var hidden = document.createElement("input");
    hidden.type = "hidden"; hidden.name = "upload"; hidden.value = id;
    chosen.appendChild(hidden);
    var remove = document.createElement("button");
    remove.type = "button"; remove.className = "quiet"; remove.textContent = box.dataset.remove;
    remove.addEventListener("click", function () {
      hidden.remove(); shown.li.remove(); taken -= 1; refresh(); input.focus();
    });
    shown.li.appendChild(remove);
  }

  function send(file) {
    var shown = item(file);
    var body = new FormData();
    body.append("photo", file);
    // the customer's own word, sent with each photo; unticked, the server refuses it (consent_required)
    body.append("consent", document.getElementById("consent").checked ? "true" : "false");
    verdict.textContent = file.name + ": " + box.dataset.checking;
    fetch("/shop/uploads", {method: "POST", body: body, credentials: "same-origin",
                            headers: {"X-CSRF-Token": box.dataset.csrf, "Accept": "application/json"}})
      .then(function (response) { return response.json(); })
      .then(function (answer) {
        var reason = answer.reason || answer.message || box.dataset.failed;
        shown.text.textContent = file.name + ": " + reason;
        verdict.textContent = file.name + ": " + reason;
        if (answer.ok) { accepted(shown, answer.upload_id); }
        else { taken -= 1; shown.text.className = "refused"; }
        refresh();
      })
      .catch(function () {
        taken -= 1;
        shown.text.className = "refused";
        shown.text.textContent = verdict.textContent = file.name + ": " + box.dataset.failed;
      });
  }

  input.addEventListener("change", function () {
    Array.prototype.forEach.call(input.files, function (file) {
      if (taken >= max) { verdict.textContent = box.dataset.tooMany; return; }
      taken += 1;
      send(file);
    });
    input.value = ""; // the same photo may be chosen again after a removal
  });
}

// Style page: the price and the wait follow the product and the tier chosen.
function quotes() {
  var form = document.getElementById("order-form");
  if (!form) return;
  var quote = document.getElementById("quote");
  var button = document.getElementById("place-order");
  function update() {
    var tier = form.querySelector("input[name=tier]:checked");
    var query = new URLSearchParams({product: form.elements.product.value, tier: tier ? tier.value : ""});
    fetch(form.dataset.quoteUrl + "?" + query, {credentials: "same-origin", headers: {"Accept": "application/json"}})
      .then(function (response) { return response.json(); })
      .then(function (answer) {
        quote.querySelector(".price").textContent = answer.ok ? answer.price : "";
        form.elements.quote_id.value = answer.ok ? answer.id : "";
        quote.querySelector(".wait").textContent = answer.ok ? answer.wait : (answer.reason || answer.message || "");
        button.disabled = !answer.ok;
      });
  }
  form.elements.product.addEventListener("change", update);
  Array.prototype.forEach.call(form.querySelectorAll("input[name=tier]"), function (radio) {
    radio.addEventListener("change", update);
  });
  form.addEventListener("submit", function () {
    // one order per form (the server's idempotency key); the button says it is on its way
    setTimeout(function () { button.disabled = true; }, 0);
  });
}

// Order page: live progress by Server-Sent Events, polling every 3 s where they fail; a new
// state reloads the page, which then shows what that state offers (proofs, downloads).
function progress() {
  var state = document.getElementById("order-state");
  if (!state) return;
  var polling = null;
  function show(status) {
    if (status.state !== state.dataset.state) { location.reload(); return; }
    state.textContent = status.state_text;
    status.stages.forEach(function (stage) {
      var li = document.querySelector('#progress li[data-stage="' + stage.name + '"]');
      if (!li) return;
      li.dataset.status = stage.status;
      li.querySelector(".stage-status").textContent = stage.status_text;
    });
  }
  function poll() {
    if (polling) return;
    polling = setInterval(function () {
      fetch(state.dataset.status, {credentials: "same-origin", headers: {"Accept": "application/json"}})
        .then(function (response) { return response.ok ? response.json() : null; })
        .then(function (status) { if (status) show(status); });
    }, 3000);
  }
  if (!window.EventSource) { poll(); return; }
  var source = new EventSource(state.dataset.events);
  source.onmessage = function (event) { show(JSON.parse(event.data)); };
  source.addEventListener("end", function () { source.close(); });
  source.onerror = function () { source.close(); poll(); };
}

document.addEventListener("DOMContentLoaded", function () {
  fragmentToCookie();
  uploader();
  quotes();
  progress();
});
