// The wxmp sandbox page: renders the conversation and sends the user's actions.
// No framework, no build step. The server does the real work (signed callback, fake WeChat).
(function () {
  "use strict";
  var base = location.pathname.replace(/\/sandbox\/?$/, "/sandbox");
  // Several accounts: the page's ?account=NAME picks the conversation (and its fake WeChat).
  var account = new URLSearchParams(location.search).get("account");
  var scope = account ? "account=" + encodeURIComponent(account) : "";
  var chat = document.getElementById("chat");
  var menuBar = document.getElementById("menu");
  var exchanges = document.getElementById("exchanges");
  var lastId = 0;
  var seen = {};
  var menuJson = null;
  var busy = 0;

  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = text;
    return node;
  }

  function bubble(item) {
    var b = el("div", "bubble");
    switch (item.kind) {
      case "text":
      case "note":
        b.appendChild(el("div", "text", item.content));
        break;
      case "event":
        b = el("div", "system event", item.content);
        return b;
      case "error":
        b = el("div", "system error", item.content);
        return b;
      case "location":
        b.classList.add("card");
        b.appendChild(el("div", "loc-title", "📍 " + (item.label || "Location")));
        b.appendChild(el("div", "loc-coords", item.lat.toFixed(5) + ", " + item.lng.toFixed(5)));
        break;
      case "image":
        var img = el("img", "photo");
        img.alt = "image " + item.media_id;
        img.src = item.src;
        img.onerror = function () { img.replaceWith(el("div", "media", "[image " + item.media_id + "]")); };
        b.classList.add("image");
        b.appendChild(img);
        break;
      case "voice":
        b.appendChild(el("div", "media", "🔊 voice " + item.media_id));
        break;
      case "video":
        b.appendChild(el("div", "media", "🎬 " + (item.title || "video") + " " + item.media_id));
        if (item.description) b.appendChild(el("div", "desc", item.description));
        break;
      case "music":
        b.classList.add("card", "music");
        b.appendChild(el("div", "music-title", "♫ " + (item.title || "Music")));
        if (item.description) b.appendChild(el("div", "desc", item.description));
        var a = el("a", "link", item.music_url);
        a.href = item.music_url; a.target = "_blank"; a.rel = "noopener noreferrer";
        b.appendChild(a);
        break;
      case "news":
        b.classList.add("card", "news");
        item.articles.forEach(function (art, i) {
          var card = el("a", i === 0 ? "article lead" : "article");
          card.href = art.url || "#"; card.target = "_blank"; card.rel = "noopener noreferrer";
          if (art.pic_url) {
            var pic = el("img", "article-pic"); pic.alt = ""; pic.src = art.pic_url;
            pic.onerror = function () { pic.remove(); };
            card.appendChild(pic);
          }
          card.appendChild(el("div", "article-title", art.title));
          if (art.description) card.appendChild(el("div", "desc", art.description));
          b.appendChild(card);
        });
        break;
      case "msgmenu":
        b.appendChild(el("div", "text", item.head));
        item.options.forEach(function (opt) {
          var o = el("button", "option", opt); o.type = "button";
          o.onclick = function () { send({action: "text", content: opt}); };
          b.appendChild(o);
        });
        if (item.tail) b.appendChild(el("div", "text", item.tail));
        break;
      default:
        b.appendChild(el("div", "text", "[" + item.kind + "]"));
    }
    return b;
  }

  function render(item) {
    if (seen[item.id]) return;
    seen[item.id] = true;
    lastId = Math.max(lastId, item.id);
    var row;
    var b = bubble(item);
    if (b.classList.contains("system")) {
      row = b;
    } else {
      row = el("div", "row " + (item.side === "user" ? "me" : "bot"));
      row.appendChild(el("div", "avatar", item.side === "user" ? "Me" : "Bot"));
      var wrap = el("div", "bubble-wrap");
      if (item.via && item.via !== "reply") wrap.appendChild(el("div", "via", item.via));
      wrap.appendChild(b);
      row.appendChild(wrap);
    }
    row.dataset.id = item.id;
    row.dataset.kind = item.kind;
    row.dataset.side = item.side;
    if (item.via) row.dataset.via = item.via;
    chat.appendChild(row);
    chat.scrollTop = chat.scrollHeight;
    if (item.exchange) showExchange(item);
  }

  function showExchange(item) {
    var x = item.exchange;
    var box = el("details", "exchange");
    box.open = true;
    box.dataset.id = item.id;
    var head = el("summary", null, "#" + item.id + " " + item.kind + (item.content ? ": " + item.content : "") +
      (x.status ? "  →  HTTP " + x.status : ""));
    box.appendChild(head);
    (x.attempts || []).forEach(function (a) {
      // WeChat's delivery rule: each attempt waits `timeout` seconds, then WeChat retries.
      var what = a.status === null ? "no answer within " + a.timeout + " s: WeChat dropped it" +
        (a.number < x.attempts.length ? " and retried" : "") : "answered, HTTP " + a.status;
      box.appendChild(el("div", "label attempt", "delivery attempt " + a.number + ": " + what));
    });
    box.appendChild(el("div", "label", "in (what WeChat POSTs, decrypted)"));
    box.appendChild(el("pre", "xml xml-in", x.request_xml));
    if (x.request_wire) {
      box.appendChild(el("div", "label", "in, on the wire (?" + x.query + ")"));
      box.appendChild(el("pre", "xml", x.request_wire));
    }
    box.appendChild(el("div", "label", "out (the callback's answer" + (x.encrypted ? ", decrypted" : "") + ")"));
    box.appendChild(el("pre", "xml xml-out", x.response_xml !== undefined ? x.response_xml : x.response_wire));
    if (x.encrypted && x.response_wire && x.response_xml !== undefined && x.response_wire !== x.response_xml) {
      box.appendChild(el("div", "label", "out, on the wire"));
      box.appendChild(el("pre", "xml", x.response_wire));
    }
    exchanges.insertBefore(box, exchanges.firstChild);
  }

  function renderMenu(menu) {
    var json = JSON.stringify(menu);
    if (json === menuJson) return;
    menuJson = json;
    menuBar.textContent = "";
    if (!menu || !menu.length) {
      menuBar.appendChild(el("div", "menu-empty", "No menu yet: push one with wx.menu.create(...) or flask wxmp menu push"));
      return;
    }
    menu.forEach(function (button) {
      var cell = el("div", "menu-cell");
      var top = el("button", "menu-button", button.name);
      top.type = "button";
      cell.appendChild(top);
      var subs = button.sub_button || [];
      if (subs.length) {
        var pop = el("div", "submenu");
        pop.hidden = true;
        subs.forEach(function (sub) {
          var s = el("button", "submenu-button", sub.name);
          s.type = "button";
          s.onclick = function () { pop.hidden = true; tap(sub); };
          pop.appendChild(s);
        });
        cell.appendChild(pop);
        top.onclick = function () {
          var wasHidden = pop.hidden;
          menuBar.querySelectorAll(".submenu").forEach(function (p) { p.hidden = true; });
          pop.hidden = !wasHidden;
        };
      } else {
        top.onclick = function () { tap(button); };
      }
      menuBar.appendChild(cell);
    });
  }

  function tap(button) {
    var type = button.type;
    var action = {action: type, key: button.key || button.url || "", name: button.name};
    if (type === "view" && button.url) window.open(button.url, "_blank", "noopener");
    send(action);
  }

  function handle(data) {
    (data.items || []).forEach(render);
    if ("menu" in data) renderMenu(data.menu);
    document.body.dataset.subscribed = data.subscribed ? "1" : "0";
  }

  function send(action) {
    busy++;
    document.body.dataset.busy = "1";
    return fetch(base + "/api/send" + (scope ? "?" + scope : ""), {
      method: "POST",
      headers: {"Content-Type": "application/json"},
      body: JSON.stringify(action)
    }).then(function (r) {
      if (!r.ok) return r.text().then(function (t) { throw new Error("HTTP " + r.status + ": " + t.slice(0, 200)); });
      return r.json();
    }).then(handle).catch(function (err) {
      chat.appendChild(el("div", "system error", String(err.message || err)));
    }).finally(function () {
      busy--;
      if (!busy) document.body.dataset.busy = "0";
    });
  }

  function poll() {
    fetch(base + "/api/poll?after=" + lastId + (scope ? "&" + scope : "")).then(function (r) { return r.json(); })
      .then(handle).catch(function () {}).finally(function () { setTimeout(poll, 1000); });
  }

  document.getElementById("composer").addEventListener("submit", function (e) {
    e.preventDefault();
    var input = document.getElementById("text");
    var text = input.value;
    if (!text.trim()) return;
    input.value = "";
    send({action: "text", content: text});
  });
  document.getElementById("toggle-extras").onclick = function () {
    var x = document.getElementById("extras");
    x.hidden = !x.hidden;
  };
  document.getElementById("location-form").addEventListener("submit", function (e) {
    e.preventDefault();
    send({
      action: "location",
      lat: parseFloat(document.getElementById("lat").value),
      lng: parseFloat(document.getElementById("lng").value),
      label: document.getElementById("label").value
    });
  });
  document.getElementById("send-image").onclick = function () { send({action: "image"}); };
  document.getElementById("follow").onclick = function () { send({action: "subscribe"}); };
  document.getElementById("unfollow").onclick = function () { send({action: "unsubscribe"}); };

  poll();
})();
