// The fleetops dashboard: polls /v1 every 1.5 s and redraws, no build step, no framework.
"use strict";

(function () {
  const POLL_MS = 1500;
  const TOKEN_KEY = "fleetops-token";
  const BUSY = new Set(["provisioning", "upgrading", "resizing", "restarting", "deleting"]);
  const LIVE = new Set(["running", "queued"]);
  const ATTENTION = new Set(["awaiting_approval", "failed"]);
  const ROLLOUTS_SHOWN = 5;
  const FINISHED_ROLLOUT = new Set(["succeeded", "halted", "aborted"]);
  // Segments of a wave's bar, in the order drawn.
  const TARGET_STATES = ["succeeded", "failed", "started", "skipped", "pending"];

  // Relative to the page, so the API works mounted under any path prefix.
  const base = location.pathname.endsWith("/") ? location.pathname : location.pathname + "/";
  const $ = (id) => document.getElementById(id);
  let timer = null;
  // A finished rollout's progress no longer changes: it is read once.
  const finishedRollouts = new Map();

  function injectedToken() {
    const meta = document.querySelector('meta[name="fleetops-viewer-token"]');
    return meta ? meta.getAttribute("content") : null;
  }

  function token() {
    return injectedToken() || sessionStorage.getItem(TOKEN_KEY);
  }

  class Unauthorized extends Error {}

  async function api(path) {
    const response = await fetch(base + path, {
      headers: { Authorization: "Bearer " + token(), Accept: "application/json" },
      cache: "no-store",
    });
    if (response.status === 401 || response.status === 403) {
      const body = await response.json().catch(() => ({}));
      throw new Unauthorized((body.error && body.error.message) || response.statusText);
    }
    if (!response.ok) {
      const body = await response.json().catch(() => ({}));
      throw new Error((body.error && body.error.message) || response.status + " " + response.statusText);
    }
    return response.json();
  }

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name === "class") node.className = value;
      else node.setAttribute(name, value);
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function ago(iso) {
    if (!iso) return "-";
    const seconds = Math.max(0, Math.round((Date.now() - new Date(iso).getTime()) / 1000));
    if (seconds < 60) return seconds + "s ago";
    if (seconds < 3600) return Math.round(seconds / 60) + "m ago";
    if (seconds < 86400) return Math.round(seconds / 3600) + "h ago";
    return new Date(iso).toISOString().slice(0, 16).replace("T", " ");
  }

  function tile(instance) {
    const classes = ["tile", "health-" + instance.health, "state-" + instance.state];
    if (BUSY.has(instance.state) || instance.active_operation) classes.push("busy");
    const labels = Object.entries(instance.labels || {}).map(([k, v]) =>
      el("span", { class: "badge" }, k + ": " + v)
    );
    return el(
      "div",
      {
        class: classes.join(" "),
        "data-instance": instance.id,
        "data-state": instance.state,
        "data-health": instance.health,
        title: instance.endpoint || "",
      },
      el("div", { class: "name" }, instance.id),
      el("div", { class: "line" }, instance.state + " \u00b7 " + instance.health),
      el("div", { class: "line" }, "v" + (instance.version || "?") + " \u00b7 " + instance.size +
        (instance.customer ? " \u00b7 " + instance.customer : "")),
      instance.active_operation ? el("div", { class: "line" }, "\u25b6 " + instance.active_operation) : null,
      labels.length ? el("div", { class: "line" }, ...labels) : null
    );
  }

  function stepBar(op) {
    const bar = el("div", { class: "steps", "aria-label": "steps" });
    for (const step of op.steps) {
      bar.append(el("span", {
        class: "step step-" + step.status + (step.compensation ? " compensation" : ""),
        title: step.name + ": " + step.status + (step.error ? " (" + step.error + ")" : ""),
      }));
    }
    return bar;
  }

  function operation(op) {
    const done = op.steps.filter((s) => s.status === "succeeded" || s.status === "skipped").length;
    const current = op.steps[op.current_step];
    const where = op.finished_at ? "" : current ? current.name : "";
    return el(
      "div",
      { class: "op", "data-operation": op.id, "data-status": op.status },
      el("div", { class: "title" },
        el("strong", {}, op.action + " " + op.instance),
        el("span", { class: "status status-" + op.status }, op.status.replace("_", " ")),
        el("span", { class: "muted" }, done + "/" + op.steps.length + " steps" + (where ? " \u00b7 " + where : "")),
        el("span", { class: "muted" }, op.id + " \u00b7 " + op.origin + " \u00b7 " + ago(op.created_at))
      ),
      op.steps.length ? stepBar(op) : null,
      op.error ? el("div", { class: "why" }, op.error) : null,
      op.status === "awaiting_approval"
        ? el("div", { class: "why" }, "requested by " + (op.requested_by || "?") +
            "; another admin approves it (fleetops ops approve " + op.id + ")")
        : null
    );
  }

  function fill(container, empty, nodes) {
    container.replaceChildren(...nodes);
    empty.hidden = nodes.length > 0;
  }

  function render(instances, operations, letters) {
    fill($("tiles"), $("no-instances"), instances.map(tile));
    const running = operations.filter((o) => LIVE.has(o.status));
    fill($("running"), $("no-running"), running.map(operation));
    const attention = operations.filter((o) => ATTENTION.has(o.status)).slice(0, 10);
    fill($("attention"), $("no-attention"), attention.map(operation));
    const rows = letters.map((d) =>
      el("tr", { "data-dead-letter": d.id },
        el("td", {}, ago(d.received_at)),
        el("td", {}, d.error_code),
        el("td", {}, d.original_topic || "?"),
        el("td", {}, d.reason)
      )
    );
    fill(document.querySelector("#dead-letters tbody"), $("no-dead-letters"), rows);
    $("dead-letters").hidden = rows.length === 0;
    const unhealthy = instances.filter((i) => i.health === "unhealthy").length;
    $("summary").textContent = instances.length + " instance(s), " + unhealthy + " unhealthy, " +
      running.length + " operation(s) running";
  }

  function waveBar(wave) {
    const bar = el("div", { class: "wave-bar", role: "img",
      "aria-label": wave.wave + ": " + TARGET_STATES.map((k) => wave[k] + " " + k).join(", ") });
    for (const state of TARGET_STATES) {
      if (!wave[state]) continue;
      bar.append(el("span", {
        class: "segment target-" + state,
        style: "flex-grow: " + wave[state],
        title: wave[state] + " " + (state === "started" ? "running" : state),
      }));
    }
    return bar;
  }

  function waveRow(rollout, wave) {
    const done = wave.succeeded + wave.failed + wave.skipped;
    const current = wave.index === rollout.current_wave && !FINISHED_ROLLOUT.has(rollout.status);
    return el("div", { class: "wave" + (current ? " current" : ""), "data-wave": wave.wave },
      el("span", { class: "wave-name" }, wave.wave + (current ? " \u25c2" : "")),
      waveBar(wave),
      el("span", { class: "muted wave-counts" },
        done + "/" + wave.total + " done" +
        (wave.started ? " \u00b7 " + wave.started + " running" : "") +
        (wave.failed ? " \u00b7 " + wave.failed + " failed" : "") +
        (wave.pending ? " \u00b7 " + wave.pending + " pending" : ""))
    );
  }

  function rollout(r) {
    const what = r.action + (r.target_version ? " to " + r.target_version : "") +
      (r.size ? " to " + r.size : "");
    return el("div", { class: "op rollout", "data-rollout": r.id, "data-status": r.status },
      el("div", { class: "title" },
        el("strong", {}, what),
        el("span", { class: "status status-" + r.status }, r.status),
        el("span", { class: "muted" }, r.total + " target(s) \u00b7 max " + r.max_concurrency +
          " at once \u00b7 " + (r.respect_windows ? "in windows" : "now")),
        el("span", { class: "muted" }, r.id + " \u00b7 by " + r.created_by + " \u00b7 " +
          ago(r.created_at))
      ),
      el("div", { class: "waves" }, ...(r.progress || []).map((w) => waveRow(r, w))),
      r.halted_reason ? el("div", { class: "why" }, "halted: " + r.halted_reason) : null
    );
  }

  function renderRollouts(rollouts) {
    fill($("rollouts"), $("no-rollouts"), rollouts.map(rollout));
  }

  async function loadRollouts() {
    const listed = (await api("v1/rollouts?limit=" + ROLLOUTS_SHOWN)).rollouts;
    return Promise.all(listed.map(async (r) => {
      const known = finishedRollouts.get(r.id);
      if (known && known.status === r.status) return known;
      const full = await api("v1/rollouts/" + encodeURIComponent(r.id));
      if (FINISHED_ROLLOUT.has(full.status)) finishedRollouts.set(full.id, full);
      return full;
    }));
  }

  function renderAutomation(status) {
    const badges = [];
    if (status.paused) {
      badges.push(["paused", "automation paused" + (status.paused_by ? " by " + status.paused_by : "")]);
    }
    if (status.circuit.open) {
      badges.push(["circuit-open", "circuit open" + (status.circuit.reason ? ": " + status.circuit.reason : "")]);
    }
    if (status.dry_run) badges.push(["dry-run", "dry run"]);
    if (!badges.length) badges.push(["on", "automation on"]);
    $("automation").replaceChildren(...badges.map(([kind, text]) =>
      el("span", { class: "automation-badge automation-" + kind, "data-automation": kind, title: text },
        text.length > 60 ? text.slice(0, 57) + "..." : text)
    ));
  }

  async function refresh() {
    try {
      const [instances, operations, letters, automation, rollouts] = await Promise.all([
        api("v1/instances"),
        api("v1/operations?limit=100"),
        api("v1/dead-letters?replayed=false&limit=10"),
        api("v1/automation"),
        loadRollouts(),
      ]);
      render(instances.instances, operations.operations, letters.dead_letters);
      renderAutomation(automation);
      renderRollouts(rollouts);
      $("updated").textContent = "updated " + new Date().toLocaleTimeString();
      $("updated").classList.remove("error");
    } catch (error) {
      if (error instanceof Unauthorized) {
        stop();
        sessionStorage.removeItem(TOKEN_KEY);
        showLogin(error.message);
        return;
      }
      $("updated").textContent = "update failed: " + error.message;
      $("updated").classList.add("error");
    }
  }

  function stop() {
    if (timer !== null) clearInterval(timer);
    timer = null;
  }

  function showLogin(message) {
    $("board").hidden = true;
    $("forget").hidden = true;
    $("login").hidden = false;
    $("login-error").textContent = message || "";
    $("token").focus();
  }

  async function start() {
    let me;
    try {
      me = await api("v1/me");
    } catch (error) {
      sessionStorage.removeItem(TOKEN_KEY);
      showLogin(error.message);
      return;
    }
    $("caller").textContent = me.principal + " (" + me.role + ")";
    $("login").hidden = true;
    $("board").hidden = false;
    $("forget").hidden = injectedToken() !== null;
    await refresh();
    stop();
    timer = setInterval(refresh, POLL_MS);
  }

  $("login").addEventListener("submit", (event) => {
    event.preventDefault();
    const value = $("token").value.trim();
    if (!value) return;
    sessionStorage.setItem(TOKEN_KEY, value);
    $("token").value = "";
    start();
  });

  $("forget").addEventListener("click", () => {
    stop();
    sessionStorage.removeItem(TOKEN_KEY);
    showLogin("");
  });

  if (token()) start();
  else showLogin("");
})();
