// Small DOM helpers: elements, text and tables, never innerHTML with data.

type Child = Node | string | null | undefined | false;

/** `el("div", {class: "x"}, "text", child)`: an element with attributes and children. */
export function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attributes: Record<string, string> = {},
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    node.setAttribute(name, value);
  }
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    node.append(typeof child === "string" ? document.createTextNode(child) : child);
  }
  return node;
}

/** The element with this id; throws (a programming error) when the page lacks it. */
export function byId<T extends HTMLElement = HTMLElement>(id: string): T {
  const node = document.getElementById(id);
  if (node === null) throw new Error(`the page has no #${id}`);
  return node as T;
}

export type Cell = string | number | boolean | null | undefined;

/** Replaces `table`'s body with `rows` under `headers`; an empty list says so. */
export function fillTable(table: HTMLTableElement, headers: string[], rows: Cell[][],
                          empty = "none"): void {
  table.replaceChildren(
    el("thead", {}, el("tr", {}, ...headers.map((h) => el("th", {}, h)))),
    el("tbody", {}, ...(rows.length
      ? rows.map((row) => el("tr", {}, ...row.map((cell) => el("td", {}, format(cell)))))
      : [el("tr", {}, el("td", { colspan: String(headers.length), class: "empty" }, empty))])),
  );
}

function format(cell: Cell): string {
  if (cell === null || cell === undefined) return "";
  if (typeof cell === "number") return Number.isInteger(cell) ? String(cell) : cell.toFixed(2);
  return String(cell);
}

/** A labelled input for a form. */
export function field(label: string, input: HTMLElement): HTMLLabelElement {
  return el("label", {}, el("span", {}, label), input);
}

export function input(name: string, value: string, attributes: Record<string, string> = {}
): HTMLInputElement {
  return el("input", { name, value, ...attributes });
}

export function select(name: string, options: [string, string][]): HTMLSelectElement {
  return el("select", { name },
    ...options.map(([value, text]) => el("option", { value }, text)));
}

/** A view's section: a heading, a status line and its body. */
export function section(id: string, title: string, ...body: Child[]): HTMLElement {
  return el("section", { id, class: "view" }, el("h2", {}, title), ...body);
}
