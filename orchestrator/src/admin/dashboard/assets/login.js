// The login page: trades a token for a session cookie (HttpOnly: script never sees it).
import { api } from './api.js';
import { h, notice } from './dom.js';

/** Where to go after logging in: a path on this server only. */
function nextPath() {
  const next = new URLSearchParams(location.search).get('next') || '/';
  return next.startsWith('/') && !next.startsWith('//') && !next.startsWith('/\\') ? next : '/';
}

export async function loginPage(main) {
  try {
    await api('/api/v1/session');
    location.replace(nextPath());
    return;
  } catch (_) {
    // Not logged in: show the form.
  }
  const token = h('input', { type: 'password', id: 'token', name: 'token', autocomplete: 'current-password', required: true });
  const message = h('div', { id: 'login-message' });
  const form = h('form', { id: 'login', class: 'login' },
    h('h1', null, 'Log in'),
    h('p', { class: 'muted' }, 'Paste an admin token configured on this server. It is exchanged for a session cookie.'),
    h('label', { class: 'field' }, h('span', null, 'Token'), token),
    h('button', { type: 'submit', id: 'login-submit' }, 'Log in'),
    message);
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    try {
      await api('/api/v1/session', { token: token.value });
      location.assign(nextPath());
    } catch (error) {
      notice(message, 'error', error.message);
    }
  });
  main.replaceChildren(form);
  token.focus();
}
