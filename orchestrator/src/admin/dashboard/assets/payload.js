// The payload viewer: journaled values as pretty JSON text, large ones collapsed.
import { h } from './dom.js';

/** Values longer than this many characters start collapsed. */
const COLLAPSE_OVER = 2000;

/** The text of a rendered payload (`{"json": v}` or `{"opaque": {...}}`). */
export function payloadText(rendered) {
  if (rendered === null || rendered === undefined) return '';
  if (Object.prototype.hasOwnProperty.call(rendered, 'json')) return JSON.stringify(rendered.json, null, 2);
  if (rendered.opaque) {
    const o = rendered.opaque;
    return `(${o.size} bytes, not shown as JSON: ${o.note})\n${o.hex_prefix}…`;
  }
  return JSON.stringify(rendered, null, 2);
}

/** A labelled payload: text in a <pre>, inside a collapsed <details> when large. */
export function payloadView(label, rendered, id) {
  const text = typeof rendered === 'string' ? rendered : payloadText(rendered);
  const pre = h('pre', { class: 'payload', id }, text);
  if (text.length > COLLAPSE_OVER) {
    return h('details', { class: 'payload-block' },
      h('summary', null, `${label} — ${text.length.toLocaleString()} characters (click to show)`), pre);
  }
  return h('div', { class: 'payload-block' }, h('h4', null, label), pre);
}
