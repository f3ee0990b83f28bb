// The timeline as a Gantt chart: one row per step (attempts as bars, with their errors; timers,
// signal waits, children; compensations marked), a row of run events (operator actions,
// cancellation, timeout), all on one time axis. Bars are positioned through the CSSOM
// (the page's CSP forbids inline style attributes).
import { fmtDuration, fmtTime, h } from './dom.js';

function place(bar, start, end, t0, span) {
  const left = ((start - t0) / span) * 100;
  const width = Math.max(((end - start) / span) * 100, 0.4);
  bar.style.setProperty('left', `${Math.min(Math.max(left, 0), 99.6)}%`);
  bar.style.setProperty('width', `${Math.min(width, 100 - Math.max(left, 0))}%`);
  return bar;
}

/** What a run event says, as text. */
export function runEventText(event) {
  const what = event.what || {};
  if (what.event === 'operator') {
    const action = what.action || {};
    const detail = Object.entries(action).filter(([k]) => k !== 'action').map(([k, v]) => `${k}: ${v}`).join(', ');
    return `${action.action} by ${what.actor}${detail ? ` (${detail})` : ''}`;
  }
  if (what.event === 'cancelled') return `cancelled: ${what.reason}`;
  if (what.event === 'timed_out') return `timed out after ${what.timeout_ms} ms`;
  return JSON.stringify(what);
}

/** Draws `description`'s timeline into `container`; clicking a row calls `onSelect(step)`. */
export function renderGantt(container, description, selected, onSelect) {
  const steps = description.timeline.steps;
  const events = description.timeline.run_events || [];
  const now = Date.now();
  const t0 = description.created_at_ms;
  let t1 = description.finished_at_ms || (description.state === 'running' ? now : description.updated_at_ms);
  const seen = (ms) => { if (ms && ms > t1) t1 = ms; };
  for (const step of steps) {
    seen(step.ended_at_ms); seen(step.fire_at_ms);
    for (const attempt of step.attempts || []) { seen(attempt.ended_at_ms); seen(attempt.retry_at_ms); }
  }
  for (const event of events) seen(event.at_ms);
  const span = Math.max(t1 - t0, 1);
  const running = description.state === 'running';

  const rows = steps.map((step) => {
    const track = h('div', { class: 'gantt-track' });
    const start = step.started_at_ms || t0;
    const end = step.ended_at_ms || (running ? now : t1);
    const attempts = step.attempts || [];
    if (attempts.length) {
      for (const attempt of attempts) {
        const s = attempt.started_at_ms || start;
        const e = attempt.ended_at_ms || (attempt.outcome === 'in_flight' && running ? now : s);
        const title = `attempt ${attempt.attempt}: ${attempt.outcome}` +
          (attempt.error ? ` — ${attempt.error.message}` : '') + ` (${fmtDuration(e - s)})`;
        track.append(place(h('div', { class: `bar attempt outcome-${attempt.outcome}`, title, 'data-attempt': attempt.attempt }), s, e, t0, span));
        if (attempt.retry_at_ms && attempt.ended_at_ms) {
          track.append(place(h('div', { class: 'bar retry-wait', title: `retry at ${fmtTime(attempt.retry_at_ms)}` }),
            attempt.ended_at_ms, attempt.retry_at_ms, t0, span));
        }
      }
    } else {
      const until = step.kind === 'timer' && step.fire_at_ms && !step.ended_at_ms ? step.fire_at_ms : end;
      const title = `${step.kind} ${step.status}` +
        (step.fire_at_ms ? ` — fires ${fmtTime(step.fire_at_ms)}` : '') +
        (step.deadline_ms ? ` — deadline ${fmtTime(step.deadline_ms)}` : '') +
        (step.child_id ? ` — child ${step.child_id}` : '') +
        (step.error ? ` — ${step.error.message}` : '');
      track.append(place(h('div', { class: `bar kind-${step.kind} status-${step.status}`, title }), start, until, t0, span));
    }
    const label = h('div', { class: 'gantt-label' },
      h('span', { class: 'step-no' }, `#${step.step}`), ' ',
      step.compensation ? h('span', { class: 'badge compensation', title: 'compensation' }, '↺') : null, ' ',
      h('span', { class: 'step-kind' }, step.kind), ' ',
      h('span', { class: 'step-name' }, step.name || step.child_id || ''), ' ',
      h('span', { class: `badge step-${step.status}` }, step.status));
    const row = h('div', {
      class: `gantt-row${step.step === selected ? ' selected' : ''}${step.compensation ? ' compensation' : ''}`,
      'data-step': step.step,
      'data-status': step.status,
      tabindex: 0,
      title: 'Click to choose this step (fork from it)',
    }, label, track);
    row.addEventListener('click', () => onSelect(step.step));
    return row;
  });

  const markers = h('div', { class: 'gantt-track' }, events.map((event) =>
    place(h('div', { class: 'marker', title: `${fmtTime(event.at_ms)}: ${runEventText(event)}` }), event.at_ms, event.at_ms, t0, span)));
  const eventsRow = h('div', { class: 'gantt-row run-events', 'data-step': 'run' },
    h('div', { class: 'gantt-label' }, 'run events'), markers);
  const axis = h('div', { class: 'gantt-axis' },
    h('span', null, fmtTime(t0)),
    h('span', null, `${fmtDuration(span)}${running ? ' (running)' : ''}`),
    h('span', null, fmtTime(t1)));
  container.replaceChildren(axis, ...rows, eventsRow);
  if (!steps.length) container.append(h('p', { class: 'muted' }, 'No steps journaled yet.'));
}
