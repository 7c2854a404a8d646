// The export form, built from GET /datasets: columns to choose and order, filters whose inputs
// fit each column's type, the format and its options. It turns itself into a request body, and
// puts the API's 400 messages next to the field they name.

import { el, clear } from "./dom.js";

const OPERATORS = {
  eq: "is",
  in: "is one of",
  contains: "contains",
  gte: "from (≥)",
  gt: "after (>)",
  lte: "to (≤)",
  lt: "before (<)",
};
const OPTION_LABELS = {
  bom: "Start with a byte order mark (helps Excel read UTF-8)",
  neutralize_formulas: "Keep formulas inert (text a spreadsheet would run is prefixed with ')",
};
const OPTION_DEFAULTS = { bom: false, neutralize_formulas: true };
const WHOLE_NUMBER = /^[+-]?[0-9]+$/;

export class FieldError extends Error {
  /** A problem the form finds before sending, reported like the API's: a field and a message. */
  constructor(field, message) {
    super(message);
    this.field = field;
  }
}

let uniqueId = 0;
const nextId = (stem) => `${stem}-${++uniqueId}`;

export class ExportForm {
  /** Listeners are attached once; load() fills the form for a signed-in key's datasets. */
  constructor(form) {
    this.form = form;
    this.datasets = new Map();
    this.formats = new Map();
    this.$ = (id) => form.querySelector(`#${id}`);
    form.querySelector("#time-zone").textContent = Intl.DateTimeFormat().resolvedOptions().timeZone || "local";
    this.$("dataset").addEventListener("change", () => this.chooseDataset(this.$("dataset").value));
    this.$("format").addEventListener("change", () => this.chooseFormat(this.$("format").value));
    this.$("compression").addEventListener("change", () => this.updateFilenameHint());
    this.$("columns-all").addEventListener("click", () => this.checkAllColumns(true));
    this.$("columns-none").addEventListener("click", () => this.checkAllColumns(false));
    this.$("filter-add").addEventListener("click", () => this.addFilter().querySelector("select").focus());
    form.addEventListener("input", (event) => this.clearErrorAt(event.target));
    form.addEventListener("change", (event) => this.clearErrorAt(event.target));
  }

  /** Build the choices from GET /datasets (``{datasets, formats}``) and start from the first dataset. */
  load(catalogue) {
    this.form.reset();
    this.datasets = new Map(catalogue.datasets.map((d) => [d.name, d]));
    this.formats = new Map(catalogue.formats.map((f) => [f.name, f]));
    const datasetSelect = clear(this.$("dataset"));
    for (const d of catalogue.datasets) datasetSelect.append(el("option", { value: d.name }, d.name));
    const formatSelect = clear(this.$("format"));
    for (const f of catalogue.formats) formatSelect.append(el("option", { value: f.name }, formatLabel(f)));
    this.chooseFormat(catalogue.formats[0]?.name);
    if (catalogue.datasets.length) this.chooseDataset(catalogue.datasets[0].name);
  }

  get dataset() {
    return this.datasets.get(this.$("dataset").value);
  }

  chooseDataset(name) {
    const dataset = this.datasets.get(name);
    this.$("dataset").value = name;
    const about = [dataset.description];
    if (dataset.scoped) {
      about.push(`Scoped: you see only the rows your key's ${dataset.scope_attributes.join(", ")} allows.`);
    }
    this.$("dataset-about").textContent = about.filter(Boolean).join(" ");
    const list = clear(this.$("columns"));
    const defaults = new Set(dataset.default_columns);
    const ordered = [
      ...dataset.default_columns.map((n) => dataset.columns.find((c) => c.name === n)),
      ...dataset.columns.filter((c) => !defaults.has(c.name)),
    ];
    for (const column of ordered) list.append(this.columnItem(column, defaults.has(column.name)));
    clear(this.$("filters"));
    this.$("filter-add").disabled = !dataset.columns.some((c) => c.filters.length);
    this.updateColumnCount();
    this.updateFilenameHint();
    this.clearErrors();
  }

  columnItem(column, checked) {
    const id = nextId("column");
    const box = el("input", { type: "checkbox", id, value: column.name, checked });
    box.addEventListener("change", () => this.updateColumnCount());
    const up = el("button", { type: "button", class: "icon", "aria-label": `Move ${column.name} up` }, "↑");
    const down = el("button", { type: "button", class: "icon", "aria-label": `Move ${column.name} down` }, "↓");
    const item = el(
      "li",
      { "data-column": column.name },
      box,
      el("label", { for: id }, column.name, " ", el("span", { class: "type" }, column.type)),
      el("span", { class: "move" }, up, down),
    );
    up.addEventListener("click", () => {
      if (item.previousElementSibling) item.previousElementSibling.before(item);
      up.focus();
    });
    down.addEventListener("click", () => {
      if (item.nextElementSibling) item.nextElementSibling.after(item);
      down.focus();
    });
    return item;
  }

  checkAllColumns(checked) {
    for (const box of this.$("columns").querySelectorAll("input[type=checkbox]")) box.checked = checked;
    this.updateColumnCount();
  }

  updateColumnCount() {
    const boxes = [...this.$("columns").querySelectorAll("input[type=checkbox]")];
    this.$("columns-count").textContent = `(${boxes.filter((b) => b.checked).length} of ${boxes.length})`;
  }

  chooseFormat(name) {
    const format = this.formats.get(name);
    if (!format) return;
    this.$("format").value = name;
    const compression = this.$("compression");
    const previous = compression.value;
    clear(compression);
    for (const c of format.compressions) compression.append(el("option", { value: c }, c === "none" ? "none" : c));
    compression.value = format.compressions.includes(previous) ? previous : format.compressions[0];
    compression.disabled = format.compressions.length < 2;
    const options = clear(this.$("options"));
    for (const option of format.options) {
      const id = nextId("option");
      options.append(
        el(
          "div",
          { class: "option field", "data-field": `${name}.${option}` },
          el("input", { type: "checkbox", id, "data-option": option, checked: OPTION_DEFAULTS[option] ?? false }),
          el("label", { for: id }, OPTION_LABELS[option] || option),
        ),
      );
    }
    this.updateFilenameHint();
  }

  extension() {
    const format = this.formats.get(this.$("format").value);
    return format.extension + (this.$("compression").value === "gzip" ? ".gz" : "");
  }

  updateFilenameHint() {
    if (!this.dataset) return;
    this.$("filename").placeholder = `${this.dataset.name}${this.extension()}`;
    this.$("filename-hint").textContent = `Ends in ${this.extension()} (added when missing).`;
  }

  // ---- filters -------------------------------------------------------------------------

  addFilter() {
    const filterable = this.dataset.columns.filter((c) => c.filters.length);
    const row = el("div", { class: "filter" });
    const columnId = nextId("filter-column");
    const opId = nextId("filter-op");
    const columnSelect = el("select", { id: columnId });
    for (const c of filterable) columnSelect.append(el("option", { value: c.name }, c.name));
    const opSelect = el("select", { id: opId });
    const valueSlot = el("div", { class: "filter-value" });
    const remove = el("button", { type: "button", class: "secondary small" }, "Remove");
    row.append(
      el("div", { class: "field" }, el("label", { for: columnId }, "Column"), columnSelect),
      el("div", { class: "field" }, el("label", { for: opId }, "Condition"), opSelect),
      valueSlot,
      remove,
    );
    const refreshOps = () => {
      const column = filterable.find((c) => c.name === columnSelect.value);
      const previous = opSelect.value;
      clear(opSelect);
      for (const op of column.filters) opSelect.append(el("option", { value: op }, OPERATORS[op] || op));
      if (column.filters.includes(previous)) opSelect.value = previous;
      refreshValue();
    };
    const refreshValue = () => {
      const column = filterable.find((c) => c.name === columnSelect.value);
      row.dataset.field = `filters.${column.name}.${opSelect.value}`;
      remove.setAttribute("aria-label", `Remove the filter on ${column.name}`);
      clear(valueSlot).append(valueInput(column, opSelect.value));
    };
    columnSelect.addEventListener("change", refreshOps);
    opSelect.addEventListener("change", refreshValue);
    remove.addEventListener("click", () => {
      row.remove();
      this.$("filter-add").focus();
    });
    this.$("filters").append(row);
    refreshOps();
    return row;
  }

  /** The request body; FieldError when a field cannot be read (the API checks everything else). */
  toSpec() {
    const spec = { dataset: this.dataset.name };
    spec.columns = [...this.$("columns").querySelectorAll("input[type=checkbox]")]
      .filter((b) => b.checked)
      .map((b) => b.value);
    if (!spec.columns.length) throw new FieldError("columns", "choose at least one column");
    const filters = {};
    for (const row of this.$("filters").querySelectorAll(".filter")) {
      const [, column, op] = row.dataset.field.split(".");
      const value = row.querySelector(".filter-value > *").readValue();
      if (value === undefined) continue; // an empty input is no filter
      filters[column] ??= {};
      if (op in filters[column]) throw new FieldError(row.dataset.field, `${column} already has a “${OPERATORS[op]}” filter`);
      filters[column][op] = value;
    }
    if (Object.keys(filters).length) spec.filters = filters;
    spec.format = this.$("format").value;
    if (this.$("compression").value !== "none") spec.compression = this.$("compression").value;
    const options = {};
    for (const box of this.$("options").querySelectorAll("input[data-option]")) options[box.dataset.option] = box.checked;
    if (Object.keys(options).length) spec[spec.format] = options;
    spec.delivery = this.$("delivery").value;
    const filename = this.$("filename").value.trim();
    if (filename) spec.filename = filename;
    return spec;
  }

  // ---- errors --------------------------------------------------------------------------

  /** Show a message next to the field it names (the closest one the form has); false if none. */
  showError(field, message) {
    this.clearErrors();
    const target = this.fieldElement(field);
    if (!target) return false;
    const id = nextId("error");
    const note = el("p", { class: "field-error", id, role: "alert" }, message);
    target.append(note);
    target.classList.add("invalid");
    const inputs = target.querySelectorAll("input, select, textarea");
    for (const input of inputs) {
      input.setAttribute("aria-invalid", "true");
      const described = (input.getAttribute("aria-describedby") || "").split(" ").filter(Boolean);
      input.setAttribute("aria-describedby", [...described, id].join(" "));
    }
    const focusable = target.querySelector(".filter-value input, .filter-value select, .filter-value textarea") || inputs[0];
    focusable?.focus();
    return true;
  }

  fieldElement(field) {
    if (!field) return null;
    const all = [...this.form.querySelectorAll("[data-field]")];
    for (let name = field; name; name = name.includes(".") ? name.slice(0, name.lastIndexOf(".")) : "") {
      const exact = all.find((e) => e.dataset.field === name);
      if (exact) return exact;
      const inside = all.find((e) => e.dataset.field.startsWith(`${name}.`));
      if (inside) return inside;
    }
    return null;
  }

  clearErrorAt(target) {
    const holder = target.closest?.(".invalid");
    if (holder) this.clearErrors();
  }

  clearErrors() {
    for (const note of this.form.querySelectorAll(".field-error")) note.remove();
    for (const holder of this.form.querySelectorAll(".invalid")) holder.classList.remove("invalid");
    for (const input of this.form.querySelectorAll("[aria-invalid]")) {
      input.removeAttribute("aria-invalid");
      const kept = (input.getAttribute("aria-describedby") || "").split(" ").filter((i) => i && !i.startsWith("error-"));
      if (kept.length) input.setAttribute("aria-describedby", kept.join(" "));
      else input.removeAttribute("aria-describedby");
    }
  }
}

function formatLabel(format) {
  const names = { csv: "CSV", jsonl: "JSON Lines", xlsx: "Excel (XLSX)" };
  return `${names[format.name] || format.name} (${format.extension})`;
}

// ---- value inputs ------------------------------------------------------------------------
// Each returns one element with a readValue() method: the JSON value, or undefined when empty.

function valueInput(column, op) {
  const id = nextId("filter-value");
  const label = el("label", { for: id }, "Value");
  let wrap;
  if (column.values && (op === "eq" || op === "in")) {
    wrap = op === "in" ? choiceBoxes(column, id) : choiceSelect(column, id, label);
  } else if (column.kind === "boolean") {
    const select = el("select", { id }, el("option", { value: "true" }, "true"), el("option", { value: "false" }, "false"));
    wrap = el("div", { class: "field" }, label, select);
    wrap.readValue = () => select.value === "true";
  } else if (op === "in") {
    const area = el("textarea", { id, rows: 3, spellcheck: "false", "aria-describedby": `${id}-hint` });
    wrap = el("div", { class: "field" }, label, area, el("p", { class: "hint", id: `${id}-hint` }, "One value per line."));
    wrap.readValue = () => {
      const lines = area.value.split("\n").map((l) => l.trim()).filter(Boolean);
      return lines.length ? lines.map((line) => typed(column, line)) : undefined;
    };
  } else {
    const input = el("input", { id, ...inputAttributes(column) });
    wrap = el("div", { class: "field" }, label, input);
    wrap.readValue = () => {
      const text = input.value.trim();
      if (input.validity.badInput) throw new FieldError(`filters.${column.name}.${op}`, "this is not a valid value for the input");
      return text === "" ? undefined : typed(column, text);
    };
  }
  return wrap;
}

function inputAttributes(column) {
  switch (column.kind) {
    case "integer":
      return { type: "text", inputmode: "numeric", autocomplete: "off" };
    case "numeric":
    case "float":
      return { type: "text", inputmode: "decimal", autocomplete: "off" };
    case "date":
      return { type: "date" };
    case "time":
      return { type: "time", step: 1 };
    case "timestamp":
    case "timestamptz":
      return { type: "datetime-local", step: 1 };
    default:
      return { type: "text", autocomplete: "off", spellcheck: "false" };
  }
}

/** The JSON value of one typed entry: integers as BigInt (every digit kept), zoned times in UTC. */
function typed(column, text) {
  if (column.kind === "integer" && WHOLE_NUMBER.test(text)) return BigInt(text);
  if (column.kind === "timestamptz") {
    const when = new Date(text); // a datetime-local value: in this browser's time zone
    if (!Number.isNaN(when.getTime())) return when.toISOString();
  }
  if (column.kind === "timestamp" && /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}$/.test(text)) return `${text}:00`;
  return text; // as typed: the API names what it cannot read
}

function choiceSelect(column, id, label) {
  const select = el("select", { id });
  for (const v of column.values) select.append(el("option", { value: v }, v));
  const wrap = el("div", { class: "field" }, label, select);
  wrap.readValue = () => select.value;
  return wrap;
}

function choiceBoxes(column, id) {
  const group = el("fieldset", { class: "choices", id }, el("legend", {}, "Values"));
  for (const v of column.values) {
    const boxId = nextId("choice");
    group.append(el("span", { class: "choice" }, el("input", { type: "checkbox", id: boxId, value: v }), el("label", { for: boxId }, v)));
  }
  group.readValue = () => {
    const chosen = [...group.querySelectorAll("input:checked")].map((b) => b.value);
    return chosen.length ? chosen : undefined;
  };
  return group;
}
