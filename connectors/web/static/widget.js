/*! Switchboard chat widget — one file, no dependencies, served by the Switchboard API.
 *
 * Embed:  <script src="https://HOST/widget.js" data-site-key="KEY" defer></script>
 * Options (data-* on the script tag): site-key, title, greeting, color (#rgb/#rrggbb),
 *   position (right|left), open (true|false), lang (en|es|fr|de), placeholder.
 * API:    Switchboard.open(), .close(), .toggle(), .identify({name, email}),
 *         .on("message" | "open" | "close", fn), .off(event, fn)
 *
 * Everything renders inside a Shadow DOM; text from the server is only ever put in the page
 * with textContent or as attributes checked here (links: http, https, mailto; images: only
 * from the domains the server allows). The conversation id and its resume token live in
 * localStorage: after a reload the widget rejoins the conversation and the server replays
 * it, including an answer that was still streaming.
 */
(function () {
  "use strict";
  if (window.Switchboard && window.Switchboard.version) return; // loaded twice

  var script = document.currentScript;
  var src = new URL(script ? script.src : "/widget.js", location.href);
  var API = src.origin;
  var WS = (src.protocol === "https:" ? "wss://" : "ws://") + src.host + "/ws/chat";
  var data = (script && script.dataset) || {};

  var STRINGS = {
    en: {
      title: "Support", greeting: "Hi! How can we help you today?", placeholder: "Type your question…",
      send: "Send", open: "Open chat", close: "Close chat", typing: "The assistant is typing",
      connecting: "Connecting…", online: "Online", offline: "Offline. Reconnecting…",
      retry: "Retry", notSent: "Not sent.", sources: "Sources", helpful: "Helpful",
      unhelpful: "Not helpful", agentJoined: "You're now chatting with {name}.", agent: "Agent",
      closed: "The conversation was closed. Write again to start over with the assistant.",
      botBack: "You're back with the assistant.", handoff: "We've asked a person to help you.",
      failed: "Something went wrong.", image: "image",
      newChat: "New conversation"
    },
    es: {
      title: "Soporte", greeting: "¡Hola! ¿En qué podemos ayudarte?", placeholder: "Escribe tu pregunta…",
      send: "Enviar", open: "Abrir chat", close: "Cerrar chat", typing: "El asistente está escribiendo",
      connecting: "Conectando…", online: "En línea", offline: "Sin conexión. Reconectando…",
      retry: "Reintentar", notSent: "No enviado.", sources: "Fuentes", helpful: "Útil",
      unhelpful: "No es útil", agentJoined: "Ahora hablas con {name}.", agent: "Agente",
      closed: "La conversación se cerró. Escribe de nuevo para volver con el asistente.",
      botBack: "Vuelves a hablar con el asistente.", handoff: "Hemos pedido que te atienda una persona.",
      failed: "Algo salió mal.", image: "imagen",
      newChat: "Nueva conversación"
    },
    fr: {
      title: "Assistance", greeting: "Bonjour ! Comment pouvons-nous vous aider ?",
      placeholder: "Posez votre question…", send: "Envoyer", open: "Ouvrir le chat",
      close: "Fermer le chat", typing: "L'assistant écrit", connecting: "Connexion…",
      online: "En ligne", offline: "Hors ligne. Reconnexion…", retry: "Réessayer",
      notSent: "Non envoyé.", sources: "Sources", helpful: "Utile", unhelpful: "Pas utile",
      agentJoined: "Vous discutez maintenant avec {name}.", botBack: "Vous êtes de retour avec l'assistant.",
      agent: "Conseiller", closed: "La conversation est close. Écrivez à nouveau pour reprendre avec l'assistant.",
      handoff: "Nous avons demandé à une personne de vous aider.",
      failed: "Une erreur s'est produite.", image: "image", newChat: "Nouvelle conversation"
    },
    de: {
      title: "Support", greeting: "Hallo! Wie können wir helfen?", placeholder: "Ihre Frage…",
      send: "Senden", open: "Chat öffnen", close: "Chat schließen", typing: "Der Assistent schreibt",
      connecting: "Verbinde…", online: "Online", offline: "Offline. Verbinde neu…",
      retry: "Erneut senden", notSent: "Nicht gesendet.", sources: "Quellen", helpful: "Hilfreich",
      unhelpful: "Nicht hilfreich", agentJoined: "Sie chatten jetzt mit {name}.", agent: "Mitarbeiter",
      closed: "Das Gespräch wurde beendet. Schreiben Sie erneut, um mit dem Assistenten fortzufahren.",
      botBack: "Sie sind wieder beim Assistenten.", handoff: "Wir haben eine Person um Hilfe gebeten.",
      failed: "Etwas ist schiefgelaufen.", image: "Bild",
      newChat: "Neues Gespräch"
    }
  };
  var lang = String(data.lang || navigator.language || "en").slice(0, 2).toLowerCase();
  var T = STRINGS[lang] || STRINGS.en;
  var color = /^#[0-9a-f]{3}([0-9a-f]{3})?$/i.test(data.color || "") ? data.color : "#2f5d46";
  var cfg = {
    siteKey: data.siteKey || "demo",
    title: data.title || T.title,
    greeting: data.greeting || T.greeting,
    placeholder: data.placeholder || T.placeholder,
    position: data.position === "left" ? "left" : "right",
    open: data.open === "true"
  };
  var STORE = "switchboard:" + cfg.siteKey;

  // --- state -----------------------------------------------------------------------------
  var state = load();            // {conversation_id, resume_token, open}
  var ws = null, attempt = 0, retryTimer = null, lastSeq = null, joined = false, connecting = false;
  var identity = null;
  var imageDomains = [];
  var pending = [];              // [{id, text, el}] sent or to send, not yet accepted
  var shown = {};                // message id -> element (answers and accepted messages)
  var stream = null;             // {el, text} the answer being streamed
  var answering = null;          // the client id of the message being answered
  var listeners = { message: [], open: [], close: [] };
  var isOpen = false;

  function load() {
    try { return JSON.parse(localStorage.getItem(STORE) || "{}") || {}; } catch (e) { return {}; }
  }
  function save() {
    try { localStorage.setItem(STORE, JSON.stringify(state)); } catch (e) { /* private mode */ }
  }
  function newId() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
    return "m" + Date.now().toString(36) + Math.random().toString(36).slice(2, 10);
  }
  function emit(name, payload) {
    listeners[name].forEach(function (fn) { try { fn(payload); } catch (e) { console.error(e); } });
  }

  // --- DOM helpers (no innerHTML anywhere) ---------------------------------------------
  function h(tag, attrs, children) {
    var el = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      if (k === "text") el.textContent = attrs[k];
      else if (k === "className") el.className = attrs[k];
      else el.setAttribute(k, attrs[k]);
    });
    (children || []).forEach(function (c) { if (c) el.appendChild(c); });
    return el;
  }

  function safeUrl(raw, schemes) {
    try {
      var u = new URL(raw);
      return schemes.indexOf(u.protocol) >= 0 ? u : null;
    } catch (e) { return null; }
  }

  function link(url, text) {
    return h("a", { href: url.href, target: "_blank", rel: "noopener noreferrer nofollow", text: text });
  }

  // Inline markdown: `code`, **bold**, *italic*, [text](url), ![alt](url), bare URLs.
  var INLINE = /(`[^`\n]+`)|(\*\*[^*\n]+\*\*)|(!\[[^\]\n]*\]\([^)\s]+\))|(\[[^\]\n]+\]\([^)\s]+\))|(https?:\/\/[^\s<>()"']+[^\s<>()"'.,;:!?])|(\*[^*\s][^*\n]*\*)/g;
  function inline(text, parent) {
    var at = 0, m, re = new RegExp(INLINE.source, "g"); // own state: this recurses
    while ((m = re.exec(text)) !== null) {
      if (m.index > at) parent.appendChild(document.createTextNode(text.slice(at, m.index)));
      var tok = m[0];
      if (m[1]) parent.appendChild(h("code", { text: tok.slice(1, -1) }));
      else if (m[2]) inline(tok.slice(2, -2), parent.appendChild(h("strong")));
      else if (m[3]) {
        var alt = tok.slice(2, tok.indexOf("]")), iu = safeUrl(tok.slice(tok.indexOf("](") + 2, -1), ["https:"]);
        if (iu && imageDomains.indexOf(iu.hostname) >= 0) {
          parent.appendChild(h("img", { src: iu.href, alt: alt, loading: "lazy", referrerpolicy: "no-referrer" }));
        } else {
          parent.appendChild(h("span", { className: "img-alt", text: "[" + T.image + (alt ? ": " + alt : "") + "]" }));
        }
      } else if (m[4]) {
        var label = tok.slice(1, tok.indexOf("]")), lu = safeUrl(tok.slice(tok.indexOf("](") + 2, -1), ["http:", "https:", "mailto:"]);
        if (lu) parent.appendChild(link(lu, label)); else parent.appendChild(document.createTextNode(label));
      } else if (m[5]) {
        var bu = safeUrl(tok, ["http:", "https:"]);
        parent.appendChild(bu ? link(bu, tok) : document.createTextNode(tok));
      } else if (m[6]) inline(tok.slice(1, -1), parent.appendChild(h("em")));
      at = m.index + tok.length;
    }
    if (at < text.length) parent.appendChild(document.createTextNode(text.slice(at)));
  }

  // Block markdown: paragraphs, line breaks, bullet and numbered lists, ``` code, # headings.
  function markdown(text) {
    var root = h("div", { className: "md" }), lines = String(text || "").split("\n");
    var para = null, list = null, code = null;
    function end() { para = null; list = null; }
    lines.forEach(function (line) {
      if (/^\s*```/.test(line)) {
        if (code) { code = null; } else { end(); code = root.appendChild(h("pre")).appendChild(h("code")); }
        return;
      }
      if (code) { code.textContent += (code.textContent ? "\n" : "") + line; return; }
      var item = /^\s*(?:[-*•]|(\d+)[.)])\s+(.*)$/.exec(line);
      if (item) {
        var kind = item[1] ? "OL" : "UL";
        if (!list || list.tagName !== kind) { para = null; list = root.appendChild(h(kind.toLowerCase())); }
        inline(item[2], list.appendChild(h("li")));
        return;
      }
      if (!line.trim()) { end(); return; }
      var head = /^\s*#{1,6}\s+(.*)$/.exec(line);
      if (head) { end(); inline(head[1], root.appendChild(h("p")).appendChild(h("strong"))); return; }
      list = null;
      if (para) para.appendChild(h("br")); else para = root.appendChild(h("p"));
      inline(line, para);
    });
    return root;
  }

  function clock(seconds) {
    var d = seconds ? new Date(seconds * 1000) : new Date();
    return h("time", { datetime: d.toISOString(), text: d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }) });
  }

  // --- the UI ----------------------------------------------------------------------------
  var CSS = [
    ":host{all:initial;--sb-color:" + color + ";}",
    "*{box-sizing:border-box;font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;}",
    ".launcher{position:fixed;bottom:20px;" + cfg.position + ":20px;width:56px;height:56px;border-radius:50%;border:0;",
    "background:var(--sb-color);color:#fff;cursor:pointer;box-shadow:0 4px 14px rgba(0,0,0,.25);z-index:2147483646;",
    "display:flex;align-items:center;justify-content:center;}",
    ".launcher:focus-visible,button:focus-visible,textarea:focus-visible,a:focus-visible{outline:3px solid #1a73e8;outline-offset:2px;}",
    ".launcher svg{width:28px;height:28px;fill:currentColor;}",
    ".panel{position:fixed;bottom:88px;" + cfg.position + ":20px;width:370px;max-width:calc(100vw - 24px);height:560px;",
    "max-height:calc(100vh - 110px);background:#fff;color:#1f2a24;border-radius:14px;box-shadow:0 10px 40px rgba(0,0,0,.28);",
    "display:flex;flex-direction:column;overflow:hidden;z-index:2147483647;font-size:15px;line-height:1.45;}",
    ".panel[hidden]{display:none;}",
    "header{background:var(--sb-color);color:#fff;padding:12px 14px;display:flex;align-items:center;gap:8px;}",
    "header h2{font-size:16px;margin:0;flex:1;font-weight:600;}",
    ".status{font-size:12px;opacity:.9;display:block;font-weight:400;}",
    "header button{background:transparent;border:0;color:#fff;cursor:pointer;font-size:20px;line-height:1;padding:4px 8px;border-radius:6px;}",
    ".log{flex:1;overflow-y:auto;padding:12px;display:flex;flex-direction:column;gap:8px;background:#f5f7f6;}",
    ".msg{max-width:86%;padding:8px 11px;border-radius:12px;overflow-wrap:anywhere;}",
    ".msg p{margin:0 0 6px;}.msg p:last-child{margin-bottom:0;}.msg ul,.msg ol{margin:4px 0;padding-left:20px;}",
    ".msg pre{background:#eef1ef;padding:6px;border-radius:6px;overflow-x:auto;white-space:pre-wrap;}",
    ".msg code{font-family:ui-monospace,monospace;font-size:13px;}",
    ".user{align-self:flex-end;background:var(--sb-color);color:#fff;border-bottom-right-radius:3px;white-space:pre-wrap;}",
    ".bot{align-self:flex-start;background:#fff;border-bottom-left-radius:3px;box-shadow:0 1px 2px rgba(0,0,0,.08);}",
    ".bot a{color:#0b57d0;}.bot img{max-width:100%;}",
    ".msg[data-streaming] .md::after{content:'\\258D';opacity:.5;}",
    ".meta{display:flex;gap:6px;align-items:center;font-size:11px;color:#5b6b62;margin-top:4px;}",
    ".msg.agent{border-left:3px solid var(--sb-color);}.meta .who{font-weight:600;}",
    ".user .meta{color:#e5efe9;justify-content:flex-end;}",
    ".meta button{border:1px solid #cfd8d3;background:#fff;color:#5b6b62;border-radius:6px;cursor:pointer;padding:2px 5px;line-height:0;}",
    ".meta button svg{width:13px;height:13px;fill:currentColor;}",
    ".meta button[aria-pressed=true]{background:var(--sb-color);color:#fff;border-color:var(--sb-color);}",
    ".sources{font-size:12px;margin-top:6px;color:#5b6b62;}.sources ul{margin:2px 0 0;padding-left:16px;}",
    ".system{align-self:center;font-size:12px;color:#5b6b62;text-align:center;padding:2px 8px;}",
    ".failed{font-size:12px;color:#b3261e;}.failed button{font-size:12px;margin-left:4px;cursor:pointer;}",
    ".typing{align-self:flex-start;background:#fff;border-radius:12px;padding:10px 12px;display:flex;gap:4px;}",
    ".typing span{width:7px;height:7px;border-radius:50%;background:#9aa8a0;animation:sb-blink 1.2s infinite;}",
    ".typing span:nth-child(2){animation-delay:.2s}.typing span:nth-child(3){animation-delay:.4s}",
    "@keyframes sb-blink{0%,80%,100%{opacity:.3}40%{opacity:1}}",
    ".alert{background:#fdecea;color:#b3261e;font-size:13px;padding:6px 12px;display:flex;gap:8px;align-items:center;}",
    ".alert[hidden]{display:none;}.alert button{margin-left:auto;cursor:pointer;}",
    "form{display:flex;gap:8px;padding:10px;border-top:1px solid #dfe5e1;background:#fff;}",
    "textarea{flex:1;resize:none;font:inherit;padding:8px 10px;border:1px solid #b9c6be;border-radius:8px;min-height:40px;max-height:120px;}",
    "form button{background:var(--sb-color);color:#fff;border:0;border-radius:8px;padding:0 14px;cursor:pointer;font:inherit;}",
    "@media (max-width:480px){.panel{inset:0;width:100%;max-width:none;height:100%;max-height:none;border-radius:0;}",
    ".launcher{bottom:14px;" + cfg.position + ":14px;}}",
    "@media (prefers-reduced-motion:reduce){.typing span{animation:none;}}"
  ].join("\n");

  var host = h("div", { id: "switchboard-widget" });
  var root = host.attachShadow({ mode: "open" });
  try {
    var sheet = new CSSStyleSheet();
    sheet.replaceSync(CSS); // constructed stylesheets work under a strict CSP
    root.adoptedStyleSheets = [sheet];
  } catch (e) {
    root.appendChild(h("style", { text: CSS }));
  }

  var icon = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  icon.setAttribute("viewBox", "0 0 24 24");
  icon.setAttribute("aria-hidden", "true");
  var path = document.createElementNS("http://www.w3.org/2000/svg", "path");
  path.setAttribute("d", "M4 4h16a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2H8l-4 4V6a2 2 0 0 1 2-2z");
  icon.appendChild(path);
  var launcher = h("button", { className: "launcher", type: "button", "aria-label": T.open, "aria-expanded": "false", "aria-controls": "sb-panel" }, [icon]);
  var statusEl = h("span", { className: "status", role: "status", text: T.connecting });
  var titleEl = h("h2", { id: "sb-title", text: cfg.title }, [statusEl]);
  var newBtn = h("button", { type: "button", "aria-label": T.newChat, title: T.newChat, text: "\u270E" });
  var closeBtn = h("button", { type: "button", "aria-label": T.close, text: "\u00D7" });
  var log = h("div", { className: "log", role: "log", "aria-live": "polite", "aria-relevant": "additions", tabindex: "0" });
  var alertEl = h("div", { className: "alert", role: "alert", hidden: "" });
  var input = h("textarea", { rows: "1", "aria-label": cfg.placeholder, placeholder: cfg.placeholder, maxlength: "4000" });
  var sendBtn = h("button", { type: "submit", text: T.send });
  var form = h("form", {}, [input, sendBtn]);
  var panel = h("div", { className: "panel", id: "sb-panel", role: "dialog", "aria-labelledby": "sb-title", hidden: "" },
    [h("header", {}, [titleEl, newBtn, closeBtn]), alertEl, log, form]);
  root.appendChild(launcher);
  root.appendChild(panel);

  function scroll() { log.scrollTop = log.scrollHeight; }
  function setStatus(text) { statusEl.textContent = text; }
  function showAlert(text, retry) {
    alertEl.textContent = "";
    alertEl.appendChild(h("span", { text: text }));
    if (retry) {
      var b = h("button", { type: "button", text: T.retry });
      b.addEventListener("click", function () { hideAlert(); reconnectNow(); });
      alertEl.appendChild(b);
    }
    alertEl.hidden = false;
  }
  function hideAlert() { alertEl.hidden = true; }

  function system(text) { log.appendChild(h("div", { className: "system", text: text })); scroll(); }

  var typingEl = null;
  function typing(on) {
    if (on && !typingEl) {
      typingEl = h("div", { className: "typing", role: "status", "aria-label": T.typing }, [h("span"), h("span"), h("span")]);
      log.appendChild(typingEl); scroll();
    } else if (!on && typingEl) { typingEl.remove(); typingEl = null; }
  }

  function userBubble(text, at) {
    var el = h("div", { className: "msg user" }, [h("div", { className: "body", text: text }), h("div", { className: "meta" }, [clock(at)])]);
    log.appendChild(el); scroll();
    return el;
  }

  function botBubble() {
    var el = h("div", { className: "msg bot" }, [h("div", { className: "body" }, [markdown("")])]);
    log.appendChild(el); scroll();
    return el;
  }

  function fill(el, text) {
    var body = el.querySelector(".body");
    body.textContent = "";
    body.appendChild(markdown(text));
  }

  function sources(citations) {
    if (!citations || !citations.length) return null;
    var ul = h("ul");
    citations.forEach(function (c) {
      var u = null;
      try { u = c.url ? new URL(c.url, API) : null; } catch (e) { u = null; }
      if (u && u.protocol !== "http:" && u.protocol !== "https:") u = null;
      ul.appendChild(h("li", {}, [u ? link(u, c.title || c.source) : h("span", { text: c.title || c.source })]));
    });
    return h("div", { className: "sources" }, [h("span", { text: T.sources + ":" }), ul]);
  }

  // Material "thumb_up" (Apache-2.0); drawn, because headless and minimal systems lack emoji.
  var THUMB = "M1 21h4V9H1v12zm22-11c0-1.1-.9-2-2-2h-6.31l.95-4.57.03-.32c0-.41-.17-.79-.44-1.06L14.17 1 7.59 7.59C7.22 7.95 7 8.45 7 9v10c0 1.1.9 2 2 2h9c.83 0 1.54-.5 1.84-1.22l3.02-7.05c.09-.23.14-.47.14-.73v-2z";
  function thumbIcon(down) {
    var svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
    svg.setAttribute("viewBox", "0 0 24 24");
    svg.setAttribute("aria-hidden", "true");
    if (down) svg.setAttribute("transform", "rotate(180)");
    var p = document.createElementNS("http://www.w3.org/2000/svg", "path");
    p.setAttribute("d", THUMB);
    svg.appendChild(p);
    return svg;
  }
  function thumbs(id, rating) {
    function button(value, label) {
      var b = h("button", { type: "button", "aria-label": label, title: label, "aria-pressed": String(rating === value), "data-rating": value }, [thumbIcon(value === "down")]);
      b.addEventListener("click", function () {
        var now = b.getAttribute("aria-pressed") === "true" ? null : value;
        send({ type: "feedback", message_id: id, rating: now });
        setRating(id, now);
      });
      return b;
    }
    return [button("up", T.helpful), button("down", T.unhelpful)];
  }
  function setRating(id, rating) {
    var el = shown[id];
    if (!el) return;
    el.querySelectorAll("button[data-rating]").forEach(function (b) {
      b.setAttribute("aria-pressed", String(b.getAttribute("data-rating") === rating));
    });
  }

  function finishAnswer(el, m, rating) {
    el.removeAttribute("data-streaming");
    el.setAttribute("data-message-id", m.id);
    fill(el, m.text);
    var meta = [clock(m.at || m.created)];
    if (m.kind === "agent") {
      el.classList.add("agent");
      meta.unshift(h("span", { className: "who", text: m.author || T.agent }));
    } else meta = meta.concat(thumbs(m.id, rating));
    el.appendChild(h("div", { className: "meta" }, meta));
    var s = sources(m.citations);
    if (s) el.appendChild(s);
    shown[m.id] = el;
    scroll();
  }

  function renderHistory(history, ratings) {
    log.textContent = ""; shown = {}; stream = null; typingEl = null;
    if (!history.length) system(cfg.greeting);
    history.forEach(function (t) {
      if (t.role === "user") { shown[t.message_id] = userBubble(t.text, t.created); return; }
      finishAnswer(botBubble(), { id: t.message_id, text: t.text, citations: t.citations, created: t.created, kind: t.kind, author: t.author }, ratings[t.message_id]);
    });
  }

  // --- the connection --------------------------------------------------------------------
  function send(frame) {
    if (ws && ws.readyState === 1 && joined) { ws.send(JSON.stringify(frame)); return true; }
    return false;
  }

  function connect() {
    clearTimeout(retryTimer); retryTimer = null;
    if (connecting || ws) return;
    connecting = true;
    setStatus(T.connecting);
    fetch(API + "/api/widget/token", {
      method: "POST", mode: "cors", credentials: "omit", cache: "no-store",
      headers: { "Content-Type": "text/plain" }, body: JSON.stringify({ site_key: cfg.siteKey })
    }).then(function (r) {
      return r.json().then(function (body) {
        if (r.status === 403 || r.status === 400) {  // a set-up fault: retrying cannot help
          var e = new Error((body.error && body.error.message) || ("HTTP " + r.status));
          e.fatal = true;
          throw e;
        }
        if (!r.ok) throw new Error("HTTP " + r.status);
        return body;
      });
    }).then(function (grant) {
      imageDomains = (grant.config && grant.config.image_domains) || [];
      openSocket(grant.token);
    }).catch(function (e) {
      connecting = false;
      console.warn("switchboard:", e.message);
      if (e.fatal) { setStatus(T.failed); showAlert(e.message, false); } else retryLater();
    });
  }

  function openSocket(token) {
    var sock = new WebSocket(WS + "?token=" + encodeURIComponent(token));
    ws = sock; joined = false; connecting = false;
    sock.onopen = function () {
      var hello = { type: "hello", conversation_id: state.conversation_id || null, resume_token: state.resume_token || null };
      if (lastSeq !== null && state.conversation_id) hello.last_seq = lastSeq;
      sock.send(JSON.stringify(hello));
    };
    sock.onmessage = function (ev) {
      var f;
      try { f = JSON.parse(ev.data); } catch (e) { return; }
      onFrame(f);
    };
    sock.onclose = function () { if (ws === sock) { ws = null; joined = false; retryLater(); } };
  }

  function retryLater() {
    setStatus(T.offline);
    // Exponential backoff with full jitter: 0.5 s, 1 s, 2 s … capped at 20 s, randomised.
    var delay = Math.random() * Math.min(20000, 500 * Math.pow(2, attempt++));
    if (attempt > 4) showAlert(T.offline, true);
    retryTimer = setTimeout(connect, delay);
  }
  function reconnectNow() { attempt = 0; if (ws) ws.close(); else if (!connecting) connect(); }

  function flushPending() {
    pending.forEach(function (p) {
      if (!p.failed) send({ type: "message", id: p.id, text: p.text });
    });
  }

  function onFrame(f) {
    if (f.type !== "hello" && typeof f.seq === "number") {
      if (lastSeq !== null && f.seq <= lastSeq) return; // already seen
      lastSeq = f.seq;
    }
    switch (f.type) {
      case "hello":
        joined = true; attempt = 0; hideAlert(); setStatus(T.online); answering = null;
        if (f.conversation_id) {
          state.conversation_id = f.conversation_id; state.resume_token = f.resume_token; save();
        }
        if (!f.resumed) { renderHistory(f.history || [], f.feedback || {}); lastSeq = f.seq || 0; }
        if (identity && identity.email) send({ type: "identify", email: String(identity.email) });
        pending.forEach(function (p) { if (!p.el.isConnected) log.appendChild(p.el); });
        flushPending();
        break;
      case "conversation":
        state.conversation_id = f.conversation_id; state.resume_token = f.resume_token; save();
        lastSeq = 0;
        break;
      case "accepted":
        if (stream) { stream.el.removeAttribute("data-streaming"); stream = null; }
        if (!f.to_agent) { answering = f.in_reply_to; state.streaming = true; save(); }
        var mine = pending.filter(function (p) { return p.id === f.in_reply_to; })[0];
        if (mine) {
          pending.splice(pending.indexOf(mine), 1);
          shown[f.id] = mine.el;
        } else if (!shown[f.id]) {
          shown[f.id] = userBubble(f.text, f.at); // sent from another tab
        }
        if (!f.to_agent) typing(true); // a person reads it: they answer when they can
        break;
      case "token":
        typing(false);
        if (!stream) stream = { el: botBubble(), text: "" };
        stream.el.setAttribute("data-streaming", "true");
        stream.text += f.text;
        fill(stream.el, stream.text);
        scroll();
        break;
      case "notice":
        if (f.code === "answer_withdrawn") { if (stream) { stream.text = ""; fill(stream.el, ""); } }
        else if (f.code === "handoff") system(T.handoff); // in the visitor's language
        else if (f.text) system(f.text);
        break;
      case "message":
        typing(false);
        if (shown[f.id]) { if (stream) stream.el.remove(); stream = null; break; }
        var el = stream ? stream.el : botBubble();
        stream = null;
        if (f.in_reply_to === answering) { state.streaming = false; save(); }
        finishAnswer(el, f);
        if (f.handoff) system(T.handoff);
        emit("message", { id: f.id, text: f.text, citations: f.citations || [], custom: f.custom || [] });
        break;
      case "agent":
        system(f.state === "human" ? T.agentJoined.replace("{name}", f.name || T.agent) : f.state === "closed" ? T.closed : T.botBack);
        break;
      case "feedback":
        setRating(f.message_id, f.rating);
        break;
      case "error":
        var failed = pending.filter(function (p) { return p.id === f.in_reply_to; })[0];
        if (f.code === "bad_resume_token" || f.code === "unknown_conversation") {
          // The conversation is gone (expired): start a new one on this connection.
          state = { open: state.open }; save(); lastSeq = null;
          if (ws && ws.readyState === 1) ws.send(JSON.stringify({ type: "hello", conversation_id: null }));
          break;
        }
        if (!joined) { if (ws) ws.close(); break; } // the hello failed: reconnect later
        if (failed) markFailed(failed, f.message);
        else showAlert(f.message || T.failed, false);
        if (f.in_reply_to != null && f.in_reply_to === answering) {
          typing(false);
          if (stream) { stream.el.removeAttribute("data-streaming"); stream = null; }
          state.streaming = false; save();
        }
        break;
    }
  }

  function markFailed(p, reason) {
    p.failed = true;
    var note = h("div", { className: "failed", text: T.notSent + " " + (reason || "") });
    var b = h("button", { type: "button", text: T.retry });
    b.addEventListener("click", function () {
      note.remove(); p.failed = false;
      if (pending.indexOf(p) < 0) pending.push(p);
      send({ type: "message", id: p.id, text: p.text });
    });
    note.appendChild(b);
    p.el.appendChild(note);
  }

  function submit(text) {
    text = text.trim();
    if (!text) return;
    var p = { id: newId(), text: text, el: userBubble(text) };
    pending.push(p);
    send({ type: "message", id: p.id, text: text });
  }

  form.addEventListener("submit", function (e) { e.preventDefault(); submit(input.value); input.value = ""; input.focus(); });
  input.addEventListener("keydown", function (e) {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); form.requestSubmit(); }
  });
  panel.addEventListener("keydown", function (e) { if (e.key === "Escape") api.close(); });
  launcher.addEventListener("click", function () { api.toggle(); });
  closeBtn.addEventListener("click", function () { api.close(); });
  newBtn.addEventListener("click", function () {
    state = { open: true }; save(); lastSeq = null; pending = [];
    renderHistory([], {});
    send({ type: "hello", conversation_id: null });
  });

  var api = {
    version: "1",
    open: function () {
      if (isOpen) return;
      isOpen = true; panel.hidden = false; launcher.setAttribute("aria-expanded", "true");
      launcher.setAttribute("aria-label", T.close);
      state.open = true; save();
      if (!ws && !retryTimer) connect();  // no-op while connecting
      input.focus(); scroll(); emit("open");
    },
    close: function () {
      if (!isOpen) return;
      isOpen = false; panel.hidden = true; launcher.setAttribute("aria-expanded", "false");
      launcher.setAttribute("aria-label", T.open);
      state.open = false; save(); launcher.focus(); emit("close");
    },
    toggle: function () { if (isOpen) api.close(); else api.open(); },
    identify: function (who) {
      // The email becomes a hashed user id on the server (per-person rate limits); the
      // name is only shown here.
      if (who && who.email) send({ type: "identify", email: String(who.email) });
      if (who && who.name) statusEl.title = String(who.name);
      identity = who || null;
    },
    on: function (name, fn) { if (listeners[name]) listeners[name].push(fn); return api; },
    off: function (name, fn) {
      if (listeners[name]) listeners[name] = listeners[name].filter(function (f) { return f !== fn; });
      return api;
    }
  };
  function mount() {
    document.body.appendChild(host);
    // Connect at once only when an answer may still be streaming (or the panel is open);
    // otherwise when the visitor opens the panel.
    if ((state.conversation_id && state.streaming) || cfg.open || state.open) connect();
    if (cfg.open || state.open) api.open();
  }
  if (document.body) mount(); else document.addEventListener("DOMContentLoaded", mount);
  window.Switchboard = api;
})();
