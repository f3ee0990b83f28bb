// One run: header (state, blocked-on, parent and children, continue-as-new chain), the live Gantt
// timeline, payloads, and the repair actions with confirmation.
import { api, stream } from './api.js';
import { confirmDialog, fmtTime, h, notice, runLink, stateBadge } from './dom.js';
import { renderGantt, runEventText } from './gantt.js';
import { payloadView } from './payload.js';

/** The actions, with the fields each asks for. */
const ACTIONS = [
  { verb: 'pause', label: 'Pause', fields: [{ name: 'reason', label: 'Reason' }] },
  { verb: 'resume', label: 'Resume', fields: [] },
  { verb: 'retry', label: 'Retry', fields: [] },
  { verb: 'cancel', label: 'Cancel', fields: [{ name: 'reason', label: 'Reason' }] },
  { verb: 'terminate', label: 'Terminate', fields: [{ name: 'reason', label: 'Reason' }] },
  {
    verb: 'signal', label: 'Send signal…', fields: [
      { name: 'name', label: 'Signal name' },
      { name: 'payload', label: 'Payload (JSON)', value: 'null', multiline: true },
    ],
  },
  {
    verb: 'fork', label: 'Fork…', fields: [
      { name: 'from_step', label: 'From step (the first step run live; choose one on the timeline)' },
      { name: 'new_id', label: 'New workflow id' },
      { name: 'input', label: 'Replacement input (JSON; empty keeps the original)', multiline: true },
    ],
  },
];

const UNFINISHED = ['running', 'parked'];

/** Whether an action applies to a run in `state` (paused or not); the server has the last word. */
const APPLIES = {
  pause: (state, paused) => UNFINISHED.includes(state) && !paused,
  resume: (state, paused) => !!paused,
  retry: (state) => ['failed', 'parked', 'compensation_failed'].includes(state),
  cancel: (state) => UNFINISHED.includes(state),
  terminate: (state) => UNFINISHED.includes(state),
  signal: (state) => UNFINISHED.includes(state),
  fork: () => true,
};

/** The request body of an action from the dialog's values. */
function actionBody(verb, values) {
  const reason = (values.reason || '').trim();
  switch (verb) {
    case 'pause':
    case 'cancel':
    case 'terminate':
      return reason ? { reason } : {};
    case 'signal':
      return { name: values.name.trim(), payload: JSON.parse(values.payload || 'null') };
    case 'fork': {
      const body = { from_step: Number.parseInt(values.from_step, 10), new_id: values.new_id.trim() };
      if (!Number.isInteger(body.from_step) || body.from_step < 1) throw new Error('The step to fork from is a number from 1.');
      if ((values.input || '').trim()) body.input = JSON.parse(values.input);
      return body;
    }
    default:
      return {};
  }
}

export async function runPage(main, session, id) {
  const path = `/api/v1/runs/${encodeURIComponent(id)}`;
  let selectedStep = null;
  let latest = null;

  const header = h('section', { id: 'run-header', class: 'run-header' });
  const actionResult = h('div', { id: 'action-result' });
  const actionBar = h('section', { id: 'actions', class: 'actions' });
  const selection = h('span', { id: 'selected-step', class: 'muted' }, 'No step chosen.');
  const gantt = h('div', { id: 'timeline', class: 'gantt' });
  const errors = h('section', { id: 'attempt-errors' });
  const payloads = h('section', { id: 'payloads', class: 'payloads' });
  const live = h('span', { id: 'live', class: 'muted' });

  const buttons = {};
  for (const action of ACTIONS) {
    buttons[action.verb] = h('button', {
      type: 'button',
      id: `action-${action.verb}`,
      class: action.verb === 'terminate' || action.verb === 'cancel' ? 'danger' : '',
      onclick: () => act(action),
    }, action.label);
    actionBar.append(buttons[action.verb]);
  }
  actionBar.append(actionResult);
  if (session.read_only) actionBar.hidden = true;

  main.replaceChildren(
    header,
    actionBar,
    h('h2', null, 'Timeline ', live),
    h('p', null, selection),
    gantt,
    errors,
    h('h2', null, 'Payloads'),
    payloads);

  async function act(action) {
    // The previous action's result would read as this one's while its dialog is open.
    actionResult.replaceChildren();
    const fields = action.fields.map((field) => ({ ...field }));
    if (action.verb === 'fork') {
      fields[0].value = selectedStep === null ? '' : String(selectedStep);
      fields[1].value = `${id}-fork-${Date.now()}`;
    }
    const values = await confirmDialog({
      title: `${action.label.replace('…', '')} ${id}`,
      message: `This ${action.verb} is recorded with your identity (${session.identity}) as its actor.`,
      fields,
      confirmText: action.label.replace('…', ''),
    });
    if (!values) {
      notice(actionResult, 'ok', `${action.verb}: cancelled, nothing was done.`);
      return;
    }
    try {
      const result = await api(`${path}/${action.verb}`, actionBody(action.verb, values));
      if (action.verb === 'fork') {
        actionResult.replaceChildren(h('span', { class: 'notice ok' }, `fork created by ${result.actor}: `, runLink(result.workflow_id)));
      } else {
        notice(actionResult, 'ok', `${action.verb} done by ${result.actor}.`);
      }
      render(await api(path));
    } catch (error) {
      notice(actionResult, 'error', `${action.verb} refused: ${error.message}`);
    }
  }

  function select(step) {
    selectedStep = step;
    selection.textContent = `Step ${step} chosen: “Fork…” starts a new run live from it.`;
    if (latest) renderGantt(gantt, latest, selectedStep, select);
  }

  function render(d) {
    // The read that follows an action can answer after a newer live update: never draw an older
    // state over a newer one (the stream would not resend the newer one, nothing changed since).
    if (latest && d.updated_at_ms < latest.updated_at_ms) return;
    latest = d;
    for (const [verb, button] of Object.entries(buttons)) {
      button.disabled = !APPLIES[verb](d.state, d.paused);
      button.title = button.disabled ? `${verb} does not apply to a ${d.paused ? 'paused ' : ''}${d.state} run` : '';
    }
    const chain = (d.archived_runs || []).map((run) => h('li', null,
      `run ${run.run_no}: ${fmtTime(run.created_at_ms)} → ${fmtTime(run.ended_at_ms)}, ${run.event_count} events, continued as new`));
    if (chain.length) chain.push(h('li', null, `run ${d.run_no}: this run`));
    header.replaceChildren(
      h('h1', null, h('span', { id: 'run-id' }, d.workflow_id), ' ', h('span', { id: 'run-state' }, stateBadge(d.state, d.paused))),
      h('p', { id: 'blocked-on', class: 'blocked-on' }, d.blocked_on_text),
      h('dl', { class: 'meta' },
        h('dt', null, 'Type'), h('dd', { id: 'run-type' }, d.workflow_name),
        h('dt', null, 'Outcome'), h('dd', { id: 'run-outcome' }, d.outcome || '—'),
        h('dt', null, 'Created'), h('dd', null, fmtTime(d.created_at_ms)),
        h('dt', null, 'Updated'), h('dd', null, fmtTime(d.updated_at_ms)),
        h('dt', null, 'Finished'), h('dd', null, fmtTime(d.finished_at_ms)),
        d.deadline_ms ? [h('dt', null, 'Deadline'), h('dd', null, fmtTime(d.deadline_ms))] : null,
        d.paused ? [h('dt', null, 'Paused'), h('dd', { id: 'run-paused' }, `by ${d.paused.by} at ${fmtTime(d.paused.at_ms)}: ${d.paused.reason}`)] : null,
        d.cancel_requested ? [h('dt', null, 'Cancel requested'), h('dd', null, d.cancel_requested)] : null,
        d.lease ? [h('dt', null, 'Lease'), h('dd', null, `${d.lease.node}, epoch ${d.lease.epoch}`)] : null,
        h('dt', null, 'Parent'), h('dd', { id: 'run-parent' }, d.parent_id ? runLink(d.parent_id) : '—'),
        h('dt', null, 'Children'), h('dd', { id: 'run-children' }, d.children.length
          ? h('ul', { class: 'plain' }, d.children.map((child) => h('li', null, runLink(child.workflow_id), ` (${child.workflow_name}, ${child.state || 'unknown'}${child.step ? `, step ${child.step}` : ''})`)))
          : '—'),
        h('dt', null, 'Runs of this id'), h('dd', { id: 'run-chain' }, chain.length ? h('ul', { class: 'plain' }, chain) : `run ${d.run_no} (no earlier run kept)`)));

    renderGantt(gantt, d, selectedStep, select);

    const failed = [];
    for (const step of d.timeline.steps) {
      for (const attempt of step.attempts || []) {
        if (attempt.error) failed.push(h('li', null, `step ${step.step} (${step.name || step.kind}) attempt ${attempt.attempt}: `, h('span', { class: 'error-text' }, attempt.error.message)));
      }
      if (!(step.attempts || []).length && step.error) failed.push(h('li', null, `step ${step.step} (${step.name || step.kind}): `, h('span', { class: 'error-text' }, step.error.message)));
    }
    errors.replaceChildren(...(failed.length ? [h('h3', null, 'Errors'), h('ul', null, failed)] : []));

    const blocks = [payloadView('Input', d.input, 'payload-input')];
    if (d.output) blocks.push(payloadView('Output', d.output, 'payload-output'));
    if (d.error) blocks.push(payloadView(`Error: ${d.error.message}`, d.error.detail, 'payload-error'));
    for (const signal of d.pending_signals || []) blocks.push(payloadView(`Pending signal “${signal.name}” (#${signal.id})`, signal.payload));
    for (const value of d.published_state || []) blocks.push(payloadView(`Published “${value.key}” (step ${value.step})`, value.value));
    for (const step of d.timeline.steps) {
      if (step.output) blocks.push(payloadView(`Step ${step.step} output (${step.name || step.kind})`, step.output));
    }
    if ((d.operator_actions || []).length) {
      blocks.push(h('div', { class: 'payload-block' }, h('h4', null, 'Operator actions'),
        h('ul', { id: 'operator-actions' }, d.operator_actions.map((event) => h('li', null, `${fmtTime(event.at_ms)}: ${runEventText(event)}`)))));
    }
    payloads.replaceChildren(...blocks);
  }

  try {
    render(await api(path));
  } catch (error) {
    notice(header, 'error', error.message);
    actionBar.hidden = true;
    return;
  }
  stream(`${path}/stream`, {
    run: (d) => {
      render(d);
      live.textContent = `live · updated ${fmtTime(Date.now())}`;
    },
    gone: () => notice(live, 'error', 'This run no longer exists.'),
  });
}
