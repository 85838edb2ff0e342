// rehearsal dashboard: dialogs (confirmations, the pair drawer), the threshold control and live progress.
// Plain JavaScript, no dependencies; every page works without it except the dialogs and live updates.
"use strict";

(function () {
  function openDialog(id) {
    var dialog = document.getElementById(id);
    if (dialog && typeof dialog.showModal === "function" && !dialog.open) {
      dialog.showModal();
      return true;
    }
    return false;
  }

  document.addEventListener("click", function (event) {
    var target = event.target instanceof Element ? event.target : null;
    if (!target) return;
    var opener = target.closest("[data-open]");
    if (opener) {
      openDialog(opener.getAttribute("data-open"));
      return;
    }
    var drawer = target.closest("a[data-drawer]");
    if (drawer && !event.ctrlKey && !event.metaKey && !event.shiftKey && event.button === 0) {
      if (openDialog(drawer.getAttribute("data-drawer"))) event.preventDefault();
      return;
    }
    var closer = target.closest("[data-close]");
    if (closer) {
      var dialog = closer.closest("dialog");
      if (dialog) dialog.close();
      return;
    }
    // A click on a dialog's backdrop (outside its box) closes it.
    if (target instanceof HTMLDialogElement && target.open) {
      var box = target.getBoundingClientRect();
      var inside = event.clientX >= box.left && event.clientX <= box.right &&
        event.clientY >= box.top && event.clientY <= box.bottom;
      if (!inside) target.close();
    }
  });

  // The threshold control: show the value while sliding, apply it on release.
  document.querySelectorAll("form[data-autosubmit]").forEach(function (form) {
    var input = form.querySelector("input[type=range]");
    var output = form.querySelector("[data-threshold-out]");
    if (!input) return;
    input.addEventListener("input", function () {
      if (output) output.textContent = Number(input.value).toFixed(2);
    });
    input.addEventListener("change", function () {
      form.requestSubmit();
    });
  });

  // Live progress of a queued or running run: poll its JSON, move the bar, reload once it has ended.
  var card = document.querySelector("[data-progress-url]");
  if (card) {
    var url = card.getAttribute("data-progress-url");
    var bar = card.querySelector("[data-progress-bar]");
    var text = card.querySelector("[data-progress-text]");
    var status = card.querySelector("[data-progress-status]");
    var spend = card.querySelector("[data-progress-spend]");
    var money = function (value) {
      return "$" + Number(value || 0).toFixed(4);
    };
    var tick = function () {
      fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin", cache: "no-store" })
        .then(function (response) {
          if (response.status === 401 || response.status === 404) {
            window.location.reload();
            return null;
          }
          return response.ok ? response.json() : null;
        })
        .then(function (data) {
          if (!data) return;
          if (data.total > 0) {
            bar.max = data.total;
            bar.value = data.done;
            text.textContent = data.done.toLocaleString("en-US") + " / " + data.total.toLocaleString("en-US") + " pairs";
          }
          status.textContent = data.status;
          if (spend && data.spend_cap_usd) spend.textContent = money(data.spend_usd) + " of " + money(data.spend_cap_usd);
          if (data.status !== "queued" && data.status !== "running") {
            window.clearInterval(timer);
            window.location.reload();
          }
        })
        .catch(function () {
          // The server may be restarting; the next tick tries again.
        });
    };
    var timer = window.setInterval(tick, 1500);
  }
})();
