// Small DOM and formatting helpers. Text always goes in as text (textContent), never as HTML:
// file names, messages and values come from the API and are not trusted markup.

/** An element with attributes (true/false for boolean ones) and children (nodes or text). */
export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === false || value === null || value === undefined) continue;
    if (value === true) node.setAttribute(name, "");
    else node.setAttribute(name, String(value));
    if (name === "checked") node.checked = Boolean(value);
  }
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
}

/** Remove every child; returns the node. */
export function clear(node) {
  node.replaceChildren();
  return node;
}

const count = new Intl.NumberFormat();

export function formatCount(n) {
  return n === null || n === undefined ? "—" : count.format(n);
}

export function formatBytes(n) {
  if (n === null || n === undefined) return "—";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let value = n;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit += 1;
  }
  return `${unit ? value.toFixed(value < 10 ? 1 : 0) : value} ${units[unit]}`;
}

export function formatDuration(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return "—";
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${s % 60} s`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

const when = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });

export function formatTime(iso) {
  return iso ? when.format(new Date(iso)) : "—";
}
