// The console's live-calls page: poll /admin/live.json and redraw the table (text only, never HTML).
(function () {
  "use strict";
  var table = document.getElementById("live");
  if (!table) { return; }
  var every = Math.max(1, Number(table.dataset.poll) || 2) * 1000;
  var source = table.dataset.source;
  var cells = ["started", "account", "direction", "number", "state", "answered", "cutoff", "hold", "pbx"];

  var csrf = table.dataset.csrf;  // empty unless the operator may end calls (admin)

  function endCell(c) {
    var td = document.createElement("td");
    td.className = "end";
    if (c.endable && csrf) {
      var form = document.createElement("form"), token = document.createElement("input"),
        button = document.createElement("button");
      form.method = "post"; form.className = "inline";
      form.action = "/admin/live/" + encodeURIComponent(c.id) + "/end";
      token.type = "hidden"; token.name = "csrf"; token.value = csrf;
      button.type = "submit"; button.textContent = "End call";
      form.appendChild(token); form.appendChild(button); td.appendChild(form);
    } else {
      td.textContent = c.endable ? "can be ended by an admin" : "cannot be ended here: " + c.why_not;
    }
    return td;
  }

  function draw(data) {
    var body = document.createElement("tbody");
    data.calls.forEach(function (c) {
      var tr = document.createElement("tr");
      tr.dataset.id = c.id;
      cells.forEach(function (name) {
        var td = document.createElement("td");
        td.textContent = name === "number" && c.emergency ? c.number + " (emergency)" : c[name];
        if (name === "hold") { td.className = "num"; }
        tr.appendChild(td);
      });
      tr.appendChild(endCell(c));
      body.appendChild(tr);
    });
    if (!data.calls.length) {
      var tr = document.createElement("tr"), td = document.createElement("td");
      tr.className = "empty"; td.colSpan = cells.length + 1; td.textContent = "No live calls.";
      tr.appendChild(td); body.appendChild(tr);
    }
    table.replaceChild(body, table.tBodies[0]);
    document.getElementById("live-count").textContent = "(" + data.count + ")";
  }

  function poll() {
    fetch(source, {credentials: "same-origin", cache: "no-store"})
      .then(function (r) { if (!r.ok) { throw new Error(r.status); } return r.json(); })
      .then(draw)
      .catch(function () { document.getElementById("live-note").textContent = "Not updating (signed out?): reload the page."; })
      .finally(function () { setTimeout(poll, every); });
  }
  setTimeout(poll, every);
}());
