// The runs page: counts by state, the filtered list (paged by cursor, live), bulk actions.
import { api, queryString, stream } from './api.js';
import { confirmDialog, fmtTime, h, notice, runLink, stateBadge } from './dom.js';

const STATES = ['running', 'parked', 'failed', 'completed', 'cancelled', 'compensation_failed', 'terminated'];
const BULK_VERBS = ['pause', 'resume', 'retry', 'terminate', 'cancel'];
const PAGE_SIZE = 50;

/** The filters in the address bar. */
function readFilters() {
  const search = new URLSearchParams(location.search);
  const status = (search.get('status') || '').split(',').filter((s) => STATES.includes(s));
  return {
    status,
    type: search.get('type') || '',
    id_prefix: search.get('id_prefix') || '',
    error_contains: search.get('error_contains') || '',
    paused: search.get('paused') === 'true' ? 'true' : '',
    created_from_ms: search.get('created_from_ms') || '',
    created_until_ms: search.get('created_until_ms') || '',
  };
}

/** A datetime-local value for a time in ms (local time), or ''. */
function toLocalInput(ms) {
  if (!ms) return '';
  const d = new Date(Number(ms));
  const pad = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

function fromLocalInput(value) {
  if (!value) return '';
  const ms = new Date(value).getTime();
  return Number.isFinite(ms) ? String(ms) : '';
}

export async function runsPage(main, session) {
  let filters = readFilters();
  const cursors = [null]; // cursors[i]: the `after` of page i
  let page = 0;
  let source = null;

  const countsBar = h('div', { id: 'counts', class: 'counts' });
  const tbody = h('tbody');
  const table = h('table', { id: 'runs', class: 'runs' },
    h('thead', null, h('tr', null, ['Workflow id', 'Type', 'State', 'Created', 'Updated', 'Outcome'].map((c) => h('th', null, c)))),
    tbody);
  const pageLabel = h('span', { id: 'page-label' });
  const prev = h('button', { type: 'button', id: 'prev-page' }, '← Previous');
  const next = h('button', { type: 'button', id: 'next-page' }, 'Next →');
  const listMessage = h('div', { id: 'list-message' });
  const live = h('span', { id: 'live', class: 'muted' });

  // The filter form.
  const statusBoxes = STATES.map((state) => {
    const box = h('input', { type: 'checkbox', name: 'status', value: state, id: `filter-status-${state}` });
    box.checked = filters.status.includes(state);
    return h('label', { class: 'check' }, box, state);
  });
  const typeSelect = h('select', { id: 'filter-type', name: 'type' }, h('option', { value: '' }, 'any type'));
  const idPrefix = h('input', { id: 'filter-id-prefix', name: 'id_prefix', placeholder: 'id prefix', value: filters.id_prefix });
  const errorText = h('input', { id: 'filter-error', name: 'error_contains', placeholder: 'error text', value: filters.error_contains });
  const pausedOnly = h('input', { type: 'checkbox', id: 'filter-paused' });
  pausedOnly.checked = filters.paused === 'true';
  const createdFrom = h('input', { type: 'datetime-local', id: 'filter-created-from', value: toLocalInput(filters.created_from_ms) });
  const createdUntil = h('input', { type: 'datetime-local', id: 'filter-created-until', value: toLocalInput(filters.created_until_ms) });
  const form = h('form', { id: 'filters', class: 'filters' },
    h('div', { class: 'row' }, statusBoxes, h('label', { class: 'check' }, pausedOnly, 'paused only')),
    h('div', { class: 'row' },
      typeSelect, idPrefix, errorText,
      h('label', null, 'created from ', createdFrom),
      h('label', null, ' until ', createdUntil),
      h('button', { type: 'submit', id: 'apply-filters' }, 'Apply'),
      h('button', { type: 'button', id: 'clear-filters', onclick: () => { history.replaceState(null, '', '/'); restart(); } }, 'Clear')));
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const chosen = {
      status: statusBoxes.map((label) => label.firstChild).filter((box) => box.checked).map((box) => box.value),
      type: typeSelect.value,
      id_prefix: idPrefix.value.trim(),
      error_contains: errorText.value.trim(),
      paused: pausedOnly.checked ? 'true' : '',
      created_from_ms: fromLocalInput(createdFrom.value),
      created_until_ms: fromLocalInput(createdUntil.value),
    };
    history.replaceState(null, '', `/${queryString(chosen)}`);
    restart();
  });

  // Bulk actions on the filtered set.
  const bulkVerb = h('select', { id: 'bulk-verb' }, BULK_VERBS.map((verb) => h('option', { value: verb }, verb)));
  const bulkReason = h('input', { id: 'bulk-reason', placeholder: 'reason (optional)' });
  const bulkResult = h('div', { id: 'bulk-result' });
  const bulkButton = h('button', { type: 'button', id: 'bulk-start', class: 'danger' }, 'Apply to all matching runs…');
  const bulk = h('section', { id: 'bulk', class: 'bulk actions' },
    h('h3', null, 'Bulk action on every run matching the filters'), bulkVerb, bulkReason, bulkButton, bulkResult);
  if (session.read_only) bulk.hidden = true;
  bulkButton.addEventListener('click', async () => {
    bulkResult.replaceChildren();
    const verb = bulkVerb.value;
    const body = bulkBody();
    if (bulkReason.value.trim() && verb !== 'resume' && verb !== 'retry') body.reason = bulkReason.value.trim();
    try {
      const preview = await api(`/api/v1/bulk/${verb}`, { ...body, dry_run: true });
      const values = await confirmDialog({
        title: `Bulk ${verb}`,
        message: `${preview.matched} runs match the filters (dry run). Apply “${verb}” to them?`,
        confirmText: `${verb} ${preview.matched} runs`,
      });
      if (!values) {
        notice(bulkResult, 'ok', 'Cancelled: nothing was done.');
        return;
      }
      const report = await api(`/api/v1/bulk/${verb}`, body);
      notice(bulkResult, report.failed ? 'error' : 'ok',
        `${verb}: ${report.applied} applied, ${report.skipped} skipped, ${report.failed} failed (of ${report.matched} matched), as ${report.actor}.`);
      await refreshCounts();
    } catch (error) {
      notice(bulkResult, 'error', error.message);
    }
  });

  main.replaceChildren(
    h('h1', null, 'Runs'),
    countsBar,
    form,
    h('div', { class: 'list-head' }, prev, pageLabel, next, live),
    listMessage,
    table,
    bulk);

  prev.addEventListener('click', () => { if (page > 0) { page -= 1; loadPage(); } });
  next.addEventListener('click', () => { if (cursors[page + 1] !== undefined) { page += 1; loadPage(); } });

  function bulkBody() {
    const body = {};
    if (filters.status.length) body.status = filters.status;
    for (const key of ['type', 'id_prefix', 'error_contains', 'created_from_ms', 'created_until_ms']) {
      if (filters[key]) body[key] = filters[key];
    }
    if (filters.paused) body.paused = filters.paused;
    return body;
  }

  function listQuery(extra) {
    return queryString({ ...filters, ...extra });
  }

  async function refreshCounts() {
    try {
      const { status, ...others } = filters;
      const data = await api(`/api/v1/counts${queryString(others)}`);
      renderCounts(data.counts);
    } catch (error) {
      notice(countsBar, 'error', error.message);
    }
  }

  function renderCounts(counts) {
    const button = (name, count, statuses, paused) => h('button', {
      type: 'button',
      id: `count-${name}`,
      class: `count state-${name}`,
      onclick: () => {
        history.replaceState(null, '', `/${queryString({ status: statuses, paused: paused ? 'true' : '' })}`);
        restart();
      },
    }, h('span', { class: 'count-name' }, name.replace('_', ' ')), h('span', { class: 'count-value' }, String(count)));
    countsBar.replaceChildren(
      button('total', counts.total, [], false),
      button('running', counts.running, ['running'], false),
      button('paused', counts.paused, [], true),
      ...STATES.filter((s) => s !== 'running').map((s) => button(s, counts[s], [s], false)));
  }

  function renderRows(data) {
    tbody.replaceChildren(...data.runs.map((run) => h('tr', { 'data-id': run.workflow_id },
      h('td', null, runLink(run.workflow_id)),
      h('td', null, run.workflow_name),
      h('td', null, stateBadge(run.state, run.paused)),
      h('td', null, fmtTime(run.created_at_ms)),
      h('td', null, fmtTime(run.updated_at_ms)),
      h('td', { class: 'outcome' }, run.outcome || ''))));
    if (!data.runs.length) {
      tbody.append(h('tr', null, h('td', { colspan: 6, class: 'muted' }, 'No runs match.')));
    }
    cursors.length = page + 1;
    if (data.next) cursors.push(data.next);
    prev.disabled = page === 0;
    next.disabled = !data.next;
    pageLabel.textContent = `page ${page + 1}`;
  }

  async function loadPage() {
    if (source) source.close();
    const query = listQuery({ limit: PAGE_SIZE, after: cursors[page] || '' });
    try {
      renderRows(await api(`/api/v1/runs${query}`));
      listMessage.replaceChildren();
    } catch (error) {
      notice(listMessage, 'error', error.message);
      return;
    }
    live.textContent = '';
    source = stream(`/api/v1/stream/runs${query}`, {
      runs: (data) => {
        renderRows(data);
        live.textContent = `live · updated ${fmtTime(Date.now())}`;
        refreshCounts();
      },
    });
  }

  function restart() {
    filters = readFilters();
    for (const label of statusBoxes) label.firstChild.checked = filters.status.includes(label.firstChild.value);
    typeSelect.value = filters.type;
    idPrefix.value = filters.id_prefix;
    errorText.value = filters.error_contains;
    pausedOnly.checked = filters.paused === 'true';
    createdFrom.value = toLocalInput(filters.created_from_ms);
    createdUntil.value = toLocalInput(filters.created_until_ms);
    cursors.length = 1;
    page = 0;
    refreshCounts();
    loadPage();
  }

  try {
    const { workflows } = await api('/api/v1/workflows');
    for (const name of workflows) typeSelect.append(h('option', { value: name }, name));
    if (filters.type && !workflows.includes(filters.type)) typeSelect.append(h('option', { value: filters.type }, filters.type));
    typeSelect.value = filters.type;
  } catch (_) {
    // The list still works without the type names.
  }
  setInterval(refreshCounts, 5000);
  restart();
}
