// Run in the page by tests/browser/test_web_page.py (driver.execute_script): what a person
// needs from every visible control and text, measured rather than looked at.
const visible = (e) => e.getClientRects().length > 0 && getComputedStyle(e).visibility !== "hidden";

// every form control has a label (or an aria-label); every button and link has a name
const unlabeled = [...document.querySelectorAll("input, select, textarea")]
  .filter(visible)
  .filter((e) => !(e.labels && e.labels.length) && !e.getAttribute("aria-label"))
  .map((e) => e.outerHTML);
const unnamed = [...document.querySelectorAll("button, a")]
  .filter(visible)
  .filter((e) => !(e.getAttribute("aria-label") || e.textContent.trim()))
  .map((e) => e.outerHTML);

// WCAG 2 contrast of each element's own text against the first opaque background behind it
const rgb = (c) => c.match(/[0-9.]+/g).map(Number);
const channel = (v) => {
  const s = v / 255;
  return s <= 0.03928 ? s / 12.92 : ((s + 0.055) / 1.055) ** 2.4;
};
const luminance = ([r, g, b]) => 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b);
const background = (e) => {
  for (let node = e; node; node = node.parentElement) {
    const c = rgb(getComputedStyle(node).backgroundColor);
    if (c.length < 4 || c[3] > 0) return c;
  }
  return [255, 255, 255];
};
const low = [];
for (const e of document.querySelectorAll("body *")) {
  const ownText = [...e.childNodes].some((n) => n.nodeType === Node.TEXT_NODE && n.textContent.trim());
  if (!visible(e) || !ownText) continue;
  const a = luminance(rgb(getComputedStyle(e).color));
  const b = luminance(background(e));
  const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
  if (ratio < 4.5) low.push(`${e.tagName} "${e.textContent.trim().slice(0, 30)}" ${ratio.toFixed(2)}`);
}

return {
  unlabeled,
  unnamed,
  low,
  overflow: document.documentElement.scrollWidth - window.innerWidth,
  lang: document.documentElement.lang,
};
