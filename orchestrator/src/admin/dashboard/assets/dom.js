// DOM helpers. User data only ever reaches the page as text nodes or attribute values set
// through the DOM API: never parsed as markup.

/** Creates an element: `attrs` are attributes (`on*` functions are listeners), children are
 * nodes or text. */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith('on') && typeof value === 'function') {
      el.addEventListener(key.slice(2), value);
    } else if (key === 'class') {
      el.className = value;
    } else if (key === 'value') {
      el.value = value;
    } else {
      el.setAttribute(key, value === true ? '' : String(value));
    }
  }
  append(el, children);
  return el;
}

/** Appends nodes or text to `el`. */
export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** A time in ms since the epoch, as local date and time (or a dash). */
export function fmtTime(ms) {
  if (ms === null || ms === undefined) return '—';
  const d = new Date(ms);
  const pad = (n, w = 2) => String(n).padStart(w, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

/** A duration in ms, short. */
export function fmtDuration(ms) {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60000) return `${(ms / 1000).toFixed(1)} s`;
  if (ms < 3600000) return `${(ms / 60000).toFixed(1)} min`;
  return `${(ms / 3600000).toFixed(1)} h`;
}

/** The link to a run's page. */
export function runLink(id, text) {
  return h('a', { href: `/runs/${encodeURIComponent(id)}`, class: 'run-link' }, text ?? id);
}

/** A state badge. */
export function stateBadge(state, paused) {
  const badge = h('span', { class: `badge state-${state}` }, state);
  return paused ? [badge, ' ', h('span', { class: 'badge paused' }, 'paused')] : badge;
}

/**
 * Asks for confirmation in a modal dialog. `fields`: [{name, label, value, placeholder,
 * multiline}]. Resolves to the fields' values, or null when cancelled.
 */
export function confirmDialog({ title, message, fields = [], confirmText = 'Confirm' }) {
  return new Promise((resolve) => {
    const inputs = {};
    const rows = fields.map((field) => {
      const input = field.multiline
        ? h('textarea', { name: field.name, rows: 4, placeholder: field.placeholder })
        : h('input', { name: field.name, type: 'text', placeholder: field.placeholder });
      input.value = field.value ?? '';
      input.id = `confirm-field-${field.name}`;
      inputs[field.name] = input;
      return h('label', { class: 'field' }, h('span', null, field.label), input);
    });
    const finish = (values) => {
      dialog.close();
      dialog.remove();
      resolve(values);
    };
    const ok = h('button', { type: 'submit', id: 'confirm-ok', class: 'danger' }, confirmText);
    const cancel = h('button', { type: 'button', id: 'confirm-cancel' }, 'Cancel');
    const form = h('form', { method: 'dialog' },
      h('h3', null, title),
      h('p', { id: 'confirm-message' }, message),
      rows,
      h('div', { class: 'buttons' }, cancel, ok));
    const dialog = h('dialog', { id: 'confirm', class: 'confirm' }, form);
    form.addEventListener('submit', (event) => {
      event.preventDefault();
      const values = {};
      for (const [name, input] of Object.entries(inputs)) values[name] = input.value;
      finish(values);
    });
    cancel.addEventListener('click', () => finish(null));
    dialog.addEventListener('cancel', (event) => { event.preventDefault(); finish(null); });
    document.body.append(dialog);
    dialog.showModal();
  });
}

/** A message line: `kind` is 'ok' or 'error'. */
export function notice(el, kind, text) {
  el.replaceChildren(h('span', { class: `notice ${kind}` }, text));
}
