// The dashboard's entry point: who is logged in, then the page the path names.
import { api } from './api.js';
import { h, notice } from './dom.js';
import { loginPage } from './login.js';
import { runsPage } from './runs.js';
import { runPage } from './run.js';
import { workflowsPage } from './workflows.js';

async function main() {
  const main = document.getElementById('main');
  const path = location.pathname;
  if (path === '/login') {
    await loginPage(main);
    return;
  }
  let session;
  try {
    session = await api('/api/v1/session');
  } catch (error) {
    notice(main, 'error', error.message);
    return;
  }
  document.getElementById('who').replaceChildren(h('span', { class: 'muted' }, 'as '), session.identity);
  document.body.dataset.readOnly = session.read_only ? 'true' : 'false';
  document.getElementById('read-only-badge').hidden = !session.read_only;
  const logout = document.getElementById('logout');
  if (session.tokens) {
    logout.hidden = false;
    logout.addEventListener('click', async () => {
      await api('/api/v1/session/logout', {});
      location.assign('/login');
    });
  }
  if (path === '/') {
    await runsPage(main, session);
  } else if (path.startsWith('/runs/')) {
    await runPage(main, session, decodeURIComponent(path.slice('/runs/'.length)));
  } else if (path === '/workflows') {
    await workflowsPage(main, session);
  } else {
    notice(main, 'error', 'No such page.');
  }
}

main();
