// Portcullis developer portal: small progressive enhancements. Every page works without this file.
(function () {
  "use strict";
  // "Copy" buttons next to keys, shown only where the clipboard API exists.
  document.querySelectorAll("button.copy[data-copy]").forEach(function (button) {
    if (!navigator.clipboard) return;
    button.hidden = false;
    button.addEventListener("click", function () {
      var source = document.getElementById(button.getAttribute("data-copy"));
      if (!source) return;
      navigator.clipboard.writeText(source.textContent.trim()).then(function () {
        button.textContent = "Copied";
        setTimeout(function () { button.textContent = "Copy"; }, 2000);
      });
    });
  });
  // Forms that ask before they act (cancelling a subscription).
  document.querySelectorAll("form[data-confirm]").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      if (!window.confirm(form.getAttribute("data-confirm"))) event.preventDefault();
    });
  });
  // The try-it console: the form is sent to the portal (which adds the key and forwards it to the
  // gateway) and the answer is shown below it. Without this script the form posts to a page.
  function element(tag, text, className) {
    var node = document.createElement(tag);
    if (text !== undefined) node.textContent = text;
    if (className) node.className = className;
    return node;
  }
  function showAnswer(box, answer) {
    box.textContent = "";
    box.hidden = false;
    if (answer.error) {
      box.appendChild(element("p", answer.error, "error try-error"));
      return;
    }
    var facts = element("dl", undefined, "facts");
    [["Request", answer.request.method + " " + answer.request.url],
     ["Status", answer.status + " " + answer.reason],
     ["Time", answer.timeMs + " ms"]].forEach(function (pair) {
      facts.appendChild(element("dt", pair[0]));
      var value = element("dd", pair[1]);
      if (pair[0] === "Status") value.className = "try-status";
      if (pair[0] === "Time") value.className = "try-time";
      facts.appendChild(value);
    });
    box.appendChild(facts);
    var table = element("table");
    table.appendChild(element("caption", "Response headers"));
    var body = element("tbody");
    answer.headers.forEach(function (pair) {
      var row = element("tr");
      row.appendChild(element("td", pair[0]));
      row.appendChild(element("td", pair[1]));
      body.appendChild(row);
    });
    table.appendChild(body);
    box.appendChild(table);
    box.appendChild(element("p", answer.truncated ? "Body (cut):" : "Body:"));
    var pre = element("pre");
    pre.appendChild(element("code", answer.body, "try-body"));
    box.appendChild(pre);
  }
  document.querySelectorAll("form[data-try]").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var box = form.parentNode.querySelector(".try-result");
      var button = form.querySelector("button[type=submit]");
      button.disabled = true;
      box.hidden = false;
      box.textContent = "Sending…";
      fetch(form.action, {
        method: "POST",
        headers: { "Accept": "application/json", "Content-Type": "application/x-www-form-urlencoded" },
        body: new URLSearchParams(new FormData(form)).toString(),
        credentials: "same-origin"
      }).then(function (response) {
        return response.json().catch(function () { return { error: "The portal answered " + response.status + "." }; });
      }).then(function (answer) {
        showAnswer(box, answer);
      }, function () {
        showAnswer(box, { error: "The portal cannot be reached." });
      }).then(function () { button.disabled = false; });
    });
  });
})();
