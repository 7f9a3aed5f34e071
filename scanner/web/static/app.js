// scanner web: one page, plain JavaScript, no build step and nothing from the network.
// Every value from a scan (banners, certificates, hostnames) is attacker-controlled: the DOM is
// built with textContent only (h() below), never innerHTML.
"use strict";

const $main = document.getElementById("main");

// h("tag#id.class", {attr: value, onclick: fn}, child, ...): an element; strings become text nodes.
function h(spec, attrs, ...children) {
  const [, tag, id] = spec.match(/^([a-z0-9]+)(?:#([\w-]+))?/);
  const classes = spec.replace(/^[a-z0-9]+(#[\w-]+)?/, "").split(".").filter(Boolean);
  const svg = ["svg", "rect", "text", "g", "title", "line"].includes(tag);
  const el = svg ? document.createElementNS("http://www.w3.org/2000/svg", tag) : document.createElement(tag);
  if (id) el.id = id;
  if (classes.length) el.setAttribute("class", classes.join(" "));
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "value") el.value = v;
    else if (k === "checked") el.checked = !!v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

async function api(path, options = {}) {
  const resp = await fetch(path, {credentials: "same-origin", ...options,
    headers: {"Content-Type": "application/json", ...(options.headers || {})}});
  let body = null;
  try { body = await resp.json(); } catch (e) { body = {error: resp.statusText}; }
  if (!resp.ok) throw new Error(body.error || resp.statusText);
  return body;
}

const svcName = (p) => (p.tunnel ? p.tunnel + "/" : "") + p.service;     // nmap's "ssl/http"
const fmtTime = (t) => t ? new Date(t * 1000).toLocaleString() : "";
const state = (s) => h("span.state-" + s, {}, s);
const badge = (s) => h("span.badge." + s, {}, s);
const q = () => new URLSearchParams(location.hash.split("?")[1] || "");

// ---------------------------------------------------------------- theme

function applyTheme(t) {
  document.documentElement.dataset.theme = t;
  document.getElementById("theme").textContent = t === "dark" ? "Light theme" : "Dark theme";
}
applyTheme(localStorage.getItem("scanner-theme") ||
  (matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light"));
document.getElementById("theme").addEventListener("click", () => {
  const t = document.documentElement.dataset.theme === "dark" ? "light" : "dark";
  localStorage.setItem("scanner-theme", t);
  applyTheme(t);
});

// ---------------------------------------------------------------- routing

let cleanup = [];
function route() {
  cleanup.forEach((f) => f());
  cleanup = [];
  const path = location.hash.replace(/^#/, "").split("?")[0] || "/";
  const parts = path.split("/").filter(Boolean);
  document.querySelectorAll("nav a").forEach((a) => a.classList.toggle("active",
    a.dataset.nav === (parts[0] || "new") || (a.dataset.nav === "scans" && parts[0] === "scan")));
  // Each page renders into its own view: a page still loading when another is opened fills a
  // detached element, never the new page.
  const view = h("div");
  $main.replaceChildren(view);
  const show = {
    "": pageNew, scans: pageScans, compare: pageCompare, search: pageSearch,
    bench: (v) => parts[1] ? pageBenchReport(v, parts[1]) : pageBench(v),
    scan: (v) => parts[2] === "host" ? pageHost(v, parts[1], decodeURIComponent(parts[3])) : pageScan(v, parts[1]),
  }[parts[0] || ""] || pageNew;
  show(view).catch((e) => view.append(h("p.error", {}, e.message)));
}
window.addEventListener("hashchange", route);

// ---------------------------------------------------------------- new scan: profiles + command builder

// Zenmap's profiles, in scanner's options (scanner has no -T timing templates: --rate instead).
const PROFILES = {
  "Intense scan": {A: true},
  "Intense scan plus UDP": {technique: "-sS", udp: true, A: true},
  "Intense scan, all TCP ports": {ports: "-", A: true},
  "Intense scan, no ping": {A: true, Pn: true},
  "Ping scan": {sn: true},
  "Quick scan": {top: "100"},
  "Quick scan plus": {top: "100", sV: true, O: true, intensity: "2"},
  "Quick UDP scan": {udp: true, top: "100"},
  "Regular scan": {},
  "Slow comprehensive scan": {technique: "-sS", udp: true, A: true, extra: "-PE -PP -PS80,443 -PA3389 -PU40125", retries: "3"},
};
const TECHNIQUES = [["", "default (SYN as root)"], ["-sS", "SYN -sS"], ["-sT", "connect -sT"], ["-sA", "ACK -sA"],
  ["-sW", "Window -sW"], ["-sN", "Null -sN"], ["-sF", "FIN -sF"], ["-sX", "Xmas -sX"], ["-sM", "Maimon -sM"]];

function buildArgv(f) {
  const a = [];
  if (f.sn) a.push("-sn");
  else {
    if (f.technique) a.push(f.technique);
    if (f.udp) a.push("-sU");
    if (f.ports) a.push("-p", f.ports);
    else if (f.top) a.push("--top-ports", f.top);
    if (f.A) a.push("-A");
    else { if (f.sV) a.push("-sV"); if (f.O) a.push("-O"); }
    if (f.intensity) a.push("--version-intensity", f.intensity);
  }
  if (f.Pn && !f.sn) a.push("-Pn");
  if (f.rate) a.push("--rate", f.rate);
  if (f.retries) a.push("--retries", f.retries);
  if (f.wait) a.push("--wait", f.wait);
  if (f.extra) a.push(...f.extra.split(/\s+/).filter(Boolean));
  return a;
}

function shellQuote(w) { return /^[\w@%+=:,./-]+$/.test(w) ? w : "'" + w.replace(/'/g, "'\\''") + "'"; }

async function pageNew(view) {
  let form = {...PROFILES["Intense scan"]};
  const target = h("input#target", {name: "target", placeholder: "198.51.100.0/24 or 192.0.2.7", size: 34,
    value: localStorage.getItem("scanner-target") || ""});
  // Zenmap's profiles and the user's own (saved in this browser).
  const saved = JSON.parse(localStorage.getItem("scanner-profiles") || "{}");
  const allProfiles = () => ({...PROFILES, ...saved});
  const profile = h("select#profile", {name: "profile"}, Object.keys(allProfiles()).map((p) => h("option", {}, p)));
  const profileName = h("input#profile-name", {placeholder: "name", size: 16});
  const saveProfile = h("button#save-profile", {type: "button", onclick: () => {
    const name = profileName.value.trim();
    if (!name) return;
    saved[name] = {...form};
    localStorage.setItem("scanner-profiles", JSON.stringify(saved));
    if (![...profile.options].some((o) => o.value === name)) profile.append(h("option", {}, name));
    profile.value = name;
  }}, "Save as profile");
  const cmd = h("input#command.cmd", {name: "command", spellcheck: "false"});
  const err = h("p#error.error");
  const fields = {};
  const field = (key, label, attrs = {}) => {
    const el = h("input", {name: key, ...attrs, oninput: () => { form[key] = attrs.type === "checkbox" ? el.checked : el.value; sync(); }});
    fields[key] = el;
    return attrs.type === "checkbox" ? h("label.check", {}, el, label) : h("label", {}, label, el);
  };
  const technique = h("select", {name: "technique", onchange: () => { form.technique = technique.value; sync(); }},
    TECHNIQUES.map(([v, l]) => h("option", {value: v}, l)));
  fields.technique = technique;

  function load(p) {
    form = {...allProfiles()[p]};
    for (const [k, el] of Object.entries(fields)) {
      if (el.type === "checkbox") el.checked = !!form[k]; else el.value = form[k] || "";
    }
    sync();
  }
  function sync() {
    const words = ["scanner", ...target.value.split(/\s+/).filter(Boolean), ...buildArgv(form)];
    cmd.value = words.map(shellQuote).join(" ");
  }
  // An edited command line goes back into the form (the options the form has; the rest to "Other").
  const {options} = await api("/api/options");
  const takesValue = new Set(options.filter((o) => o.takes === "value" || o.takes === "multi").flatMap((o) => o.names));
  const FLAGS = {"-sU": "udp", "-sn": "sn", "-Pn": "Pn", "-sV": "sV", "-O": "O", "-A": "A"};
  const VALUES = {"-p": "ports", "--top-ports": "top", "--version-intensity": "intensity", "--rate": "rate",
    "--retries": "retries", "--wait": "wait"};
  function parseCommand(text) {
    const words = (text.match(/'[^']*'|"[^"]*"|\S+/g) || []).map((w) => w.replace(/^(['"])(.*)\1$/, "$2"));
    if (words[0] === "scanner") words.shift();
    const f = {}, targets = [], extra = [];
    for (let i = 0; i < words.length; i++) {
      const w = words[i];
      if (FLAGS[w]) f[FLAGS[w]] = true;
      else if (TECHNIQUES.some(([t]) => t && t === w)) f.technique = w;
      else if (VALUES[w] && i + 1 < words.length) f[VALUES[w]] = words[++i];
      else if (takesValue.has(w) && i + 1 < words.length) extra.push(w, words[++i]);
      else if (w.startsWith("-")) extra.push(w);
      else targets.push(w);
    }
    f.extra = extra.map(shellQuote).join(" ");
    return {f, targets};
  }
  cmd.addEventListener("input", () => {
    const {f, targets} = parseCommand(cmd.value);
    form = f;
    target.value = targets.join(" ");
    for (const [k, el] of Object.entries(fields)) {
      if (el.type === "checkbox") el.checked = !!form[k]; else el.value = form[k] || "";
    }
  });
  target.addEventListener("input", sync);
  profile.addEventListener("change", () => load(profile.value));

  const go = h("button#scan.primary", {type: "submit"}, "Scan");
  const formEl = h("form.card", {onsubmit: async (ev) => {
    ev.preventDefault();
    err.textContent = "";
    go.disabled = true;
    localStorage.setItem("scanner-target", target.value);
    try {
      const r = await api("/api/scans", {method: "POST", body: JSON.stringify({command: cmd.value})});
      location.hash = "#/scan/" + r.id;
    } catch (e) {
      err.textContent = e.message;
    } finally {
      go.disabled = false;
    }
  }},
    h("div.row", {}, h("label", {}, "Target", target), h("label", {}, "Profile", profile), go,
      h("label", {}, "Save these options", h("span.row", {}, profileName, saveProfile))),
    h("h2", {}, "Options"),
    h("div.row", {},
      h("label", {}, "TCP scan", technique), field("udp", "UDP (-sU)", {type: "checkbox"}),
      field("sn", "Ping only (-sn)", {type: "checkbox"}), field("Pn", "No ping (-Pn)", {type: "checkbox"}),
      field("sV", "Versions (-sV)", {type: "checkbox"}), field("O", "OS (-O)", {type: "checkbox"}),
      field("A", "Both (-A)", {type: "checkbox"})),
    h("div.row", {},
      field("ports", "Ports (-p)", {placeholder: "22,80,1000-2000", size: 16}),
      field("top", "Top ports", {placeholder: "1000", size: 6}),
      field("intensity", "Version intensity", {placeholder: "7", size: 4}),
      field("rate", "Rate (pps)", {placeholder: "10000", size: 8}),
      field("retries", "Retries", {placeholder: "1", size: 4}),
      field("wait", "Wait (s)", {placeholder: "2", size: 4}),
      field("extra", "Other options", {placeholder: "-PE --exclude 192.0.2.1", size: 28})),
    h("h2", {}, "Command"),
    h("p.muted.help", {}, "The equivalent command line. Edit it freely: the scan runs what it says, checked exactly as the command line checks it."),
    cmd, err);
  const recent = h("div#recent");
  view.append(h("h1", {}, "New scan"), formEl, recent);
  load("Intense scan");
  const {scans} = await api("/api/scans");
  if (scans.length) recent.append(h("h2", {}, "Recent scans"), scansTable(scans.slice(0, 5)));
}

// ---------------------------------------------------------------- scans list

function scansTable(scans, selectable) {
  const rows = scans.map((s) => h("tr.click", {"data-id": s.id, onclick: (ev) => {
    if (ev.target.tagName !== "INPUT") location.hash = "#/scan/" + s.id; }},
    selectable ? h("td", {}, h("input", {type: "checkbox", value: s.id, "aria-label": "select scan " + s.id})) : null,
    h("td", {}, s.id), h("td", {}, fmtTime(s.started)), h("td", {}, badge(s.status)),
    h("td", {}, s.targets), h("td", {}, s.hosts_up), h("td", {}, s.open), h("td", {}, h("code", {}, s.command))));
  return h("table.scans", {}, h("thead", {}, h("tr", {}, selectable ? h("th", {}, "") : null,
    ["ID", "Started", "Status", "Targets", "Up", "Open", "Command"].map((t) => h("th", {}, t)))), h("tbody", {}, rows));
}

async function pageScans(view) {
  const {scans} = await api("/api/scans");
  const table = scansTable(scans, true);
  const cmp = h("button#compare-selected", {onclick: () => {
    const ids = [...table.querySelectorAll("input:checked")].map((i) => i.value).sort((a, b) => a - b);
    if (ids.length === 2) location.hash = `#/compare?a=${ids[0]}&b=${ids[1]}`;
  }}, "Compare the two selected");
  view.append(h("h1", {}, "Scans"), h("div.card", {}, scans.length ? [h("div.pager", {}, cmp), table]
    : h("p.muted", {}, "No scans recorded yet.")));
  // While scans run, their rows follow (unless some are being selected for a comparison).
  if (scans.some((s) => s.status === "running")) {
    const timer = setTimeout(() => { if (!table.querySelector("input:checked")) route(); }, 3000);
    cleanup.push(() => clearTimeout(timer));
  }
}

// ---------------------------------------------------------------- one scan: live view, hosts, ports, charts

async function pageScan(view, id) {
  const scan = await api(`/api/scans/${id}?limit=1`);
  const bar = h("div");
  const progressText = h("span#progress-text.muted");
  const status = h("span#status", {}, badge(scan.status));
  const live = h("tbody");
  const stop = h("button#stop", {onclick: async () => { stop.disabled = true; await api(`/api/scans/${id}/stop`, {method: "POST"}); }}, "Stop");
  const summary = (sc) => `Started ${fmtTime(sc.started)} · ${sc.hosts_up} hosts up · ${sc.open} open ports`;
  const summaryEl = h("p#summary.muted", {}, summary(scan));
  const head = h("div.card", {},
    h("div.row", {}, h("h1", {}, `Scan ${id} `, status), scan.live && scan.status === "running" ? stop : null),
    h("p", {}, h("code", {}, scan.command)), summaryEl);
  const tabsEl = h("div.tabs");
  const body = h("div");
  view.append(head, h("div.card", {}, tabsEl, body));

  const tabs = {Hosts: () => hostsTab(id, body), Ports: () => portsTab(id, body), Charts: () => chartsTab(id, body)};
  let current = q().get("tab") || "Hosts";
  function open(name) {
    current = name;
    tabsEl.querySelectorAll("button").forEach((b) => b.classList.toggle("active", b.textContent === name));
    body.replaceChildren();
    tabs[name]();
  }
  for (const name of Object.keys(tabs)) tabsEl.append(h("button", {type: "button", onclick: () => open(name)}, name));
  open(current);

  if (scan.status === "running" || scan.status === "starting") {
    // The live view: progress, and open ports as they are found (events replayed from the start).
    const counts = h("span#live-counts.muted");
    let answered = 0, nOpen = 0, up = 0;
    const count = () => {
      counts.textContent = `${up} hosts up · ${answered} ports answered · ${nOpen} open`;
      summaryEl.textContent = summary({...scan, hosts_up: up, open: nOpen});
    };
    head.append(h("div#progress.progress", {}, bar), progressText,
      h("h2", {}, "Found so far ", counts), h("div.live", {}, h("table#live", {}, live)));
    const es = new EventSource(`/api/scans/${id}/events`);
    cleanup.push(() => es.close());
    let refresh = 0;
    const refreshSoon = () => { if (!refresh) refresh = setTimeout(() => { refresh = 0; if (current !== "Charts") open(current); }, 2000); };
    es.addEventListener("progress", (m) => {
      const ev = JSON.parse(m.data);
      bar.style.width = Math.min(100, ev.percent || 0).toFixed(1) + "%";
      progressText.textContent = `${ev.stage || ""} ${(ev.percent || 0).toFixed(1)}% ${ev.text || ""}`;
    });
    es.addEventListener("stage", (m) => { bar.style.width = "0%"; progressText.textContent = JSON.parse(m.data).text || ""; });
    es.addEventListener("host", (m) => { up = JSON.parse(m.data).up; count(); });
    es.addEventListener("ports", (m) => {
      for (const r of JSON.parse(m.data).rows) {
        answered++;
        if (r.state !== "open") continue;
        nOpen++;
        if (live.children.length < 500) live.append(h("tr", {}, h("td", {}, r.ip), h("td", {}, `${r.port}/${r.proto}`), h("td", {}, state(r.state)), h("td", {}, r.reason)));
      }
      count();
      refreshSoon();
    });
    es.addEventListener("note", (m) => { progressText.textContent = JSON.parse(m.data).text; });
    es.addEventListener("done", async (m) => {
      es.close();
      const ev = JSON.parse(m.data);
      bar.style.width = "100%";
      stop.remove();
      if (ev.error) head.append(h("p.error", {}, ev.error));
      const sc = await api(`/api/scans/${id}?limit=1`);
      status.replaceChildren(badge(ev.status === "failed" ? "failed" : sc.status));
      summaryEl.textContent = summary(sc);
      progressText.textContent = ev.status === "failed" ? "" : "finished";
      open(current);
    });
  }
}

function pager(page, go) {
  const from = page.total ? page.offset + 1 : 0, to = Math.min(page.total, page.offset + page.limit);
  return h("div.pager", {},
    h("button", {type: "button", disabled: page.offset === 0, onclick: () => go(Math.max(0, page.offset - page.limit))}, "‹ Previous"),
    h("span.muted", {}, `${from}–${to} of ${page.total}`),
    h("button", {type: "button", disabled: to >= page.total, onclick: () => go(page.offset + page.limit)}, "Next ›"));
}

function filterBox(placeholder, load) {
  const input = h("input#filter", {type: "search", placeholder, size: 40, value: q().get("filter") || ""});
  let timer;
  input.addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(() => load(0), 250); });
  return input;
}

function hostsTab(id, body) {
  const out = h("div");
  const load = async (offset) => {
    const page = (await api(`/api/scans/${id}?offset=${offset}&limit=50&filter=${encodeURIComponent(input.value)}`)).hosts;
    out.replaceChildren(pager(page, load), h("table#hosts", {}, h("thead", {}, h("tr", {}, ["Host", "Status", "Open ports", "Other ports", "OS"].map((t) => h("th", {}, t)))),
      h("tbody", {}, page.items.map((host) => h("tr.click", {"data-ip": host.ip, onclick: () => { location.hash = `#/scan/${id}/host/${encodeURIComponent(host.ip)}`; }},
        h("td", {}, host.ip), h("td", {}, host.up ? state("up") : h("span.muted", {}, "no reply")),
        h("td", {}, host.ports.filter((p) => p.state === "open").map((p) => `${p.port}/${p.proto} ${svcName(p)}`).join(", ")),
        h("td.muted", {}, Object.entries(host.counts).filter(([s]) => s !== "open").map(([s, n]) => `${n} ${s}`).join(", ")),
        h("td", {}, host.os ? `${host.os.name} (${host.os.accuracy}%)` : ""))))));
  };
  const input = filterBox("filter: 198.18.0.0/28  open:22  service:http  os:linux  state:closed", load);
  body.append(h("div.row", {}, input), out);
  load(0);
}

function portsTab(id, body) {
  const out = h("div");
  const load = async (offset) => {
    const page = await api(`/api/scans/${id}/ports?offset=${offset}&limit=100&filter=${encodeURIComponent(input.value)}`);
    out.replaceChildren(pager(page, load), h("table#ports", {}, h("thead", {}, h("tr", {}, ["Host", "Port", "State", "Reason", "Service", "Version"].map((t) => h("th", {}, t)))),
      h("tbody", {}, page.items.map((p) => h("tr", {}, h("td", {}, p.ip), h("td", {}, `${p.port}/${p.proto}`), h("td", {}, state(p.state)),
        h("td", {}, p.reason), h("td", {}, svcName(p)), h("td", {}, [p.product, p.version, p.extrainfo].filter(Boolean).join(" ")))))));
  };
  const input = filterBox("filter: open:80  state:filtered  service:ssh  198.18.0.1", load);
  body.append(h("div.row", {}, input), out);
  load(0);
}

function barChart(items, color) {
  const max = Math.max(1, ...items.map(([, n]) => n));
  const rowH = 20, labelW = 190, width = 560;
  const svg = h("svg", {width, height: items.length * rowH + 4, viewBox: `0 0 ${width} ${items.length * rowH + 4}`, role: "img"});
  items.forEach(([label, n], i) => {
    const w = Math.max(2, (width - labelW - 50) * n / max);
    svg.append(h("text", {x: 0, y: i * rowH + 14}, label),
      h("rect", {x: labelW, y: i * rowH + 3, width: w, height: rowH - 6, rx: 3, fill: color ? color(label) : null, class: color ? null : "bar"}),
      h("text", {x: labelW + w + 6, y: i * rowH + 14}, n));
  });
  return svg;
}

async function chartsTab(id, body) {
  const st = await api(`/api/scans/${id}/stats`);
  const css = getComputedStyle(document.documentElement);
  const colors = {open: "--open", closed: "--closed", filtered: "--filtered", "open|filtered": "--filtered", unfiltered: "--other"};
  const stateColor = (s) => css.getPropertyValue(colors[s] || "--other").trim();
  body.append(h("div.grid2", {},
    h("div", {}, h("h2", {}, "Ports by state"), barChart(Object.entries(st.states), stateColor)),
    h("div#services", {}, h("h2", {}, "Open ports by service"), st.services.length ? barChart(st.services) : h("p.muted", {}, "No open ports.")),
    h("div#distance", {}, h("h2", {}, "Hosts by distance"), st.distance.length ? barChart(st.distance) : h("p.muted", {}, "No replies."),
      h("p.muted.help", {}, "Estimated from the replies' TTL, as nmap does without traceroute."))));
  if (st.heatmap) body.append(h("h2", {}, "Address space"), heatmap(st.heatmap, css, id));
}

// The address space as a grid of blocks: colour by open ports, grey when no host answered.
function heatmap(hm, css, id) {
  const n = hm.open.length, cols = Math.min(64, Math.max(16, Math.ceil(Math.sqrt(n)))), cell = 12;
  const rows = Math.ceil(n / cols), max = Math.max(1, ...hm.open);
  const base = hm.first.split(".").reduce((a, o) => a * 256 + Number(o), 0);
  const ip = (v) => [24, 16, 8, 0].map((s) => (v >>> s) & 255).join(".");
  const svg = h("svg#heatmap", {width: cols * cell, height: rows * cell, viewBox: `0 0 ${cols * cell} ${rows * cell}`, role: "img"});
  const openColor = css.getPropertyValue("--open").trim(), upColor = css.getPropertyValue("--accent").trim(), none = css.getPropertyValue("--heat0").trim();
  for (let i = 0; i < n; i++) {
    const o = hm.open[i], up = hm.up[i];
    const from = ip(base + i * hm.block), to = ip(base + (i + 1) * hm.block - 1);
    const r = h("rect", {x: (i % cols) * cell, y: Math.floor(i / cols) * cell, width: cell - 1, height: cell - 1,
      fill: o ? openColor : (up ? upColor : none), "fill-opacity": o ? (0.35 + 0.65 * o / max).toFixed(2) : 1},
      h("title", {}, `${hm.block > 1 ? from + "–" + to : from}: ${up} up, ${o} open`));
    const cidr = `${from}/${32 - Math.log2(hm.block)}`;
    if (up) r.addEventListener("click", () => { location.hash = hm.block > 1 ? `#/scan/${id}?filter=${encodeURIComponent(cidr)}` : `#/scan/${id}/host/${from}`; });
    svg.append(r);
  }
  return h("div", {}, h("p.muted", {}, `Each square is ${hm.block} address${hm.block > 1 ? "es" : ""} from ${hm.first}; green: open ports (darker: more), blue: up, grey: no reply.`), svg);
}

// ---------------------------------------------------------------- host details

// Ports as nmap lists them: a state shared by more than 25 ports is folded into one line.
function portRows(ports) {
  const byState = {};
  ports.forEach((p) => { (byState[p.state] = byState[p.state] || []).push(p); });
  const folded = Object.entries(byState).filter(([s, list]) => s !== "open" && list.length > 25);
  const shown = ports.filter((p) => !folded.some(([s]) => s === p.state));
  return {shown, folded};
}

async function pageHost(view, id, ip) {
  const host = await api(`/api/scans/${id}/hosts/${encodeURIComponent(ip)}`);
  const {shown, folded} = portRows(host.ports.filter((p) => p.reason !== "no-response" || p.state !== "filtered"));
  const silent = host.ports.filter((p) => p.reason === "no-response" && p.state === "filtered").length;
  const reasons = (list) => Object.entries(list.reduce((a, p) => ({...a, [p.reason]: (a[p.reason] || 0) + 1}), {}))
    .map(([r, n]) => `${n} ${r}`).join(", ");
  const row = (p) => h("tr", {"data-port": `${p.port}/${p.proto}`}, h("td", {}, `${p.port}/${p.proto}`), h("td", {}, state(p.state)),
    h("td", {}, p.reason), h("td", {}, p.ttl || ""), h("td", {}, svcName(p)),
    h("td", {}, p.product || ""), h("td", {}, p.version || ""), h("td", {}, p.extrainfo || ""));
  view.append(h("p", {}, h("a", {href: `#/scan/${id}`}, `‹ Scan ${id}`)),
    h("h1", {}, ip, " ", host.up ? state("up") : h("span.muted", {}, "no reply")),
    h("div.card", {}, h("h2", {}, "Ports"),
      folded.map(([s, list]) => h("p.muted.folded", {}, `Not shown: ${list.length} ${s} ports (${reasons(list)})`)),
      silent ? h("p.muted", {}, `Not shown: ${silent} filtered ports without a reply`) : null,
      h("table#host-ports", {}, h("thead", {}, h("tr", {}, ["Port", "State", "Reason", "TTL", "Service", "Product", "Version", "Extra"].map((t) => h("th", {}, t)))),
        h("tbody", {}, shown.map(row))),
      folded.length ? h("details", {}, h("summary", {}, "Show every port"),
        h("table", {}, h("tbody", {}, folded.flatMap(([, list]) => list).map(row)))) : null),
    ...shown.filter((p) => p.scripts).map((p) => h("div.card.scripts", {"data-port": `${p.port}/${p.proto}`}, h("h2", {}, `${p.port}/${p.proto} ${svcName(p)}`),
      Object.entries(p.scripts).map(([k, v]) => [h("h3", {}, k === "ssl-cert" ? "TLS certificate" : k), h("pre", {}, v)]))),
    h("div#os.card", {}, h("h2", {}, "Operating system"), host.os ? osBlock(host.os) : h("p.muted", {}, "No OS guess (scan with -O or -A).")),
    h("div.card", {}, h("h2", {}, "This host in other scans"),
      h("p", {}, host.seen_in.map((s) => [h("a", {href: `#/scan/${s}/host/${encodeURIComponent(ip)}`}, `scan ${s}`), " "]))));
}

function osBlock(os) {
  if (os.matches) {   // nmap's probes and nmap-os-db: nmap's matches, its lines and the fingerprint
    return [os.matches.length ? h("p", {}, h("strong", {}, os.name), ` — ${os.accuracy}%`) : h("p.muted", {}, "No match in nmap-os-db."),
      os.matches.length > 1 ? h("p.muted", {}, "Also possible: " + os.matches.slice(1).map((m) => `${m.name} (${m.accuracy}%)`).join(", ")) : null,
      h("h3", {}, "Evidence"), h("pre", {}, [...os.lines, "", os.nmap_fingerprint].join("\n"))];
  }
  const fp = os.fingerprint || {};
  return [h("p", {}, h("strong", {}, os.name), ` — ${os.accuracy}% (${[os.vendor, os.family, os.osgen, os.type].filter(Boolean).join(", ")})`),
    os.others && os.others.length ? h("p.muted", {}, "Also possible: " + os.others.map((o) => `${o.name} (${o.accuracy}%)`).join(", ")) : null,
    h("h3", {}, "Evidence"),
    h("dl.kv", {}, Object.entries(fp).map(([k, v]) => [h("dt", {}, k), h("dd", {}, v === null ? "—" : String(v))]))];
}

// ---------------------------------------------------------------- compare

async function pageCompare(view) {
  const {scans} = await api("/api/scans");
  const params = q();
  const opts = (sel) => scans.map((s) => h("option", {value: s.id, selected: String(s.id) === sel}, `${s.id}: ${s.command}`));
  const a = h("select#diff-a", {}, opts(params.get("a") || String(scans[1] ? scans[1].id : "")));
  const b = h("select#diff-b", {}, opts(params.get("b") || String(scans[0] ? scans[0].id : "")));
  const out = h("div#diff");
  view.append(h("h1", {}, "Compare two scans"), h("div.card", {}, h("div.row", {}, h("label", {}, "Scan A (older)", a), h("label", {}, "Scan B (newer)", b),
    h("button#diff-go.primary", {type: "button", onclick: () => { location.hash = `#/compare?a=${a.value}&b=${b.value}`; }}, "Compare"))), out);
  if (!params.get("a") || !params.get("b")) return;
  const d = await api(`/api/diff?a=${params.get("a")}&b=${params.get("b")}`);
  // One table, like ndiff per host: what scan A had (-) and what scan B has (+).
  const ipNum = (ip) => ip.includes(":") ? ip : ip.split(".").reduce((a, o) => a * 256 + Number(o), 0);
  const rows = [
    ...d.gone_hosts.map((ip) => ({ip, port: -1, what: "host gone", a: "up", b: "", cls: "minus"})),
    ...d.new_hosts.map((ip) => ({ip, port: -1, what: "new host", a: "", b: "up", cls: "plus"})),
    ...d.gone_ports.map((p) => ({...p, what: "gone", a: p.state, b: "", cls: "minus"})),
    ...d.new_ports.map((p) => ({...p, what: "new", a: "", b: p.state, cls: "plus"})),
    ...d.changed.map((p) => ({...p, what: "changed", cls: "changed"})),
  ].sort((x, y) => (ipNum(x.ip) > ipNum(y.ip)) - (ipNum(x.ip) < ipNum(y.ip)) || x.port - y.port);
  const LIMIT = 2000;
  out.append(h("div.card", {},
    h("p#diff-summary", {}, `${d.new_hosts.length} new hosts, ${d.gone_hosts.length} gone; ${d.new_ports.length} new ports, ${d.gone_ports.length} gone, ${d.changed.length} changed state`),
    d.empty ? h("p", {}, "No differences.") : h("table#diff-table", {},
      h("thead", {}, h("tr", {}, ["Host", "Port", "Service", "Change", `Scan ${d.a}`, `Scan ${d.b}`].map((t) => h("th", {}, t)))),
      h("tbody", {}, rows.slice(0, LIMIT).map((r) => h("tr." + r.cls, {"data-ip": r.ip, "data-port": r.port >= 0 ? `${r.port}/${r.proto}` : null},
        h("td", {}, r.ip), h("td", {}, r.port >= 0 ? `${r.port}/${r.proto}` : ""), h("td", {}, r.service || ""),
        h("td", {}, r.what), h("td", {}, r.a ? state(r.a) : ""), h("td", {}, r.b ? state(r.b) : ""))))),
    rows.length > LIMIT ? h("p.muted", {}, `First ${LIMIT} of ${rows.length} differences shown (scanner diff ${d.a} ${d.b} lists them all).`) : null));
}

// ---------------------------------------------------------------- search

async function pageSearch(view) {
  const input = h("input#search", {type: "search", size: 50, value: q().get("q") || "", placeholder: "open:22 service:http after:2024-01-01"});
  const out = h("div#results");
  const run = async () => {
    try {
      const r = await api(`/api/search?q=${encodeURIComponent(input.value)}`);
      out.replaceChildren(r.scans.length ? scansTable(r.scans) : h("p.muted", {}, "No scan matches."));
    } catch (e) { out.replaceChildren(h("p.error", {}, e.message)); }
  };
  view.append(h("h1", {}, "Search saved scans"),
    h("form.card", {onsubmit: (ev) => { ev.preventDefault(); history.replaceState(null, "", `#/search?q=${encodeURIComponent(input.value)}`); run(); }},
      h("div.row", {}, input, h("button.primary", {type: "submit"}, "Search")),
      h("p.muted.help", {}, "Keys as in Zenmap: target:ADDR|CIDR, open:PORT, closed:, filtered:, scanned:, service:NAME, os:TEXT, date:YYYY-MM-DD or date:-N (N days ago), after:, before:, option:TEXT; other words match the command line or an address.")),
    h("div.card", {}, out));
  run();
}

// ---------------------------------------------------------------- benchmark reports (scanner bench)

const fmtDuration = (s) => s === null || s === undefined ? "" : s >= 90 ? `${(s / 60).toFixed(1)} min` : `${s.toFixed(0)} s`;

async function pageBench(view) {
  const r = await api("/api/bench");
  const rows = r.reports.map((b) => h("tr.click", {"data-id": b.id, onclick: () => { location.hash = "#/bench/" + b.id; }},
    h("td", {}, b.started), h("td", {}, b.kind === "target" ? "your targets" : b.quick ? "lab (--quick)" : "lab"),
    h("td", {}, b.workloads.join(" ")), h("td", {}, b.repeat ?? ""), h("td", {}, b.runs), h("td", {}, fmtDuration(b.duration_s)),
    h("td", {}, h("code", {}, b.path))));
  view.append(h("h1", {}, "Benchmark reports"),
    h("div.card", {}, r.reports.length ? h("table#bench-reports", {},
      h("thead", {}, h("tr", {}, ["Started", "Kind", "Workloads", "Repeat", "Runs", "Duration", "Directory"].map((t) => h("th", {}, t)))),
      h("tbody", {}, rows)) : h("p.muted", {}, "No benchmark report found."),
    h("p.muted.help", {}, "Looked for under: ", r.dirs.join(", ") || "(nothing)",
      ". Reports are written by sudo scanner bench [--report DIR]; scanner web --reports DIR looks elsewhere.")));
}

function plainTable(id, t) {
  return h("div.scroll", {}, h("table#" + id + ".bench", {}, h("thead", {}, h("tr", {}, t.head.map((c) => h("th", {}, c)))),
    h("tbody", {}, t.body.map((row) => h("tr", {}, row.map((c) => h("td", {}, c)))))));
}

async function pageBenchReport(view, id) {
  const r = await api(`/api/bench/${encodeURIComponent(id)}`);
  const m = r.meta;
  view.append(h("p", {}, h("a", {href: "#/bench"}, "‹ Benchmark reports")),
    h("h1", {}, `Benchmark report ${m.started || ""}`),
    h("div.card", {}, h("p", {}, h("code#bench-command", {}, m.command || "")),
      h("p.muted", {}, [m.host && `${m.host} (${m.cpus} CPUs, kernel ${m.kernel})`, m.scanner_version && `scanner ${m.scanner_version} ${m.git || ""}`,
        m.repeat && `${m.repeat} run(s) each`, fmtDuration(m.duration_s), r.path].filter(Boolean).join(" · ")),
      r.notes.length ? h("ul", {}, r.notes.map((n) => h("li", {}, n))) : null),
    h("div.card", {}, h("h2", {}, "Results"), h("p.muted.help", {}, "Medians over the runs, with (min–max) where they differ."),
      plainTable("bench-results", r.table)),
    r.ratios.body.length ? h("div.card", {}, h("h2", {}, "scanner against each peer (same run)"),
      h("p.muted.help", {}, "scanner's median divided by the peer's."), plainTable("bench-ratios", r.ratios)) : null,
    r.plots.length ? h("div#bench-plots.card", {}, h("h2", {}, "Plots"),
      r.plots.map((p) => h("figure", {}, h("img", {src: p.url, alt: p.title}), h("figcaption.muted", {}, p.title)))) : null,
    Object.keys(r.workloads).length ? h("div.card", {}, h("h2", {}, "Workloads"),
      h("dl.kv", {}, Object.entries(r.workloads).map(([n, w]) => [h("dt", {}, n), h("dd", {}, h("strong", {}, w.title), " — ", w.doc)]))) : null);
}

route();
