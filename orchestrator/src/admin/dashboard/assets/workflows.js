// The workflow types: runs counted by state, and recent failures.
import { api, queryString } from './api.js';
import { fmtTime, h, notice, runLink } from './dom.js';

const COLUMNS = ['running', 'paused', 'parked', 'failed', 'compensation_failed', 'completed', 'cancelled', 'terminated', 'total'];

export async function workflowsPage(main) {
  main.replaceChildren(h('h1', null, 'Workflows'), h('p', { class: 'muted' }, 'Loading…'));
  let data;
  try {
    data = await api('/api/v1/workflows/summary');
  } catch (error) {
    notice(main, 'error', error.message);
    return;
  }
  const rows = data.workflows.map((wf) => h('tr', { 'data-type': wf.name },
    h('td', null, h('a', { href: `/${queryString({ type: wf.name })}` }, wf.name)),
    COLUMNS.map((column) => h('td', { class: 'num', 'data-column': column }, String(wf.counts[column]))),
    h('td', { class: 'num', 'data-column': 'failed_last_24h' }, String(wf.failed_last_24h)),
    h('td', null, wf.recent_failures.length
      ? h('ul', { class: 'plain' }, wf.recent_failures.map((run) => h('li', null, runLink(run.workflow_id), ` ${fmtTime(run.updated_at_ms)}: `, h('span', { class: 'error-text' }, run.outcome || ''))))
      : '—')));
  main.replaceChildren(
    h('h1', null, 'Workflows'),
    h('table', { id: 'workflows', class: 'runs' },
      h('thead', null, h('tr', null, h('th', null, 'Type'), COLUMNS.map((c) => h('th', null, c.replace('_', ' '))), h('th', null, 'failed, 24 h'), h('th', null, 'Recent failures'))),
      h('tbody', null, rows)));
  if (!rows.length) main.append(h('p', { class: 'muted' }, 'No workflow type is registered on this engine.'));
}
