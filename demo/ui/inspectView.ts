/** Renders an inspected prompt: the decoding of the transformed embeddings and both models' predictions. */
import type { Candidate, InspectResult } from '../inspect';

/** Where each part of the result goes. */
export interface InspectTargets {
  text: HTMLElement;
  decoding: HTMLElement;
  summary: HTMLElement;
  teacherTop: HTMLElement;
  studentTop: HTMLElement;
  teacherContinuation: HTMLElement;
  studentContinuation: HTMLElement;
}

/** Whitespace and control characters made visible in a token chip. */
function visible(s: string): string {
  return s.replace(/ /g, '␣').replace(/\n/g, '↵').replace(/\t/g, '⇥').replace(/\r/g, '␍');
}

function chip(text: string, className: string, title: string): HTMLElement {
  const span = document.createElement('span');
  span.className = className;
  span.textContent = visible(text);
  span.title = title;
  return span;
}

function topTable(candidates: Candidate[], reference: Candidate[]): HTMLElement {
  const table = document.createElement('table');
  table.className = 'top';
  const head = table.createTHead().insertRow();
  for (const h of ['#', 'token', 'probability']) {
    const th = document.createElement('th');
    th.scope = 'col';
    th.textContent = h;
    head.append(th);
  }
  const body = table.createTBody();
  candidates.forEach((c, i) => {
    const row = body.insertRow();
    // Marks the candidates the other model ranks first too: agreement at a glance.
    if (reference[0] && c.id === reference[0].id) row.className = 'agree';
    row.insertCell().textContent = String(i + 1);
    const token = row.insertCell();
    token.append(chip(c.text, 'tok', `id ${c.id}`));
    const p = row.insertCell();
    const bar = document.createElement('span');
    bar.className = 'bar';
    bar.style.width = `${(c.probability * 60).toFixed(1)}%`;
    p.append(bar, ` ${(c.probability * 100).toFixed(1)}%`);
  });
  return table;
}

/** Fills the targets with `result`. */
export function renderInspect(t: InspectTargets, result: InspectResult, prompt: string): void {
  t.text.textContent = prompt;
  t.decoding.replaceChildren(
    ...result.tokens.map((tok) =>
      chip(
        tok.nearestText,
        tok.hidden ? 'tok masked' : 'tok',
        tok.hidden
          ? `typed “${tok.text}” (id ${tok.id}); nearest to the transformed embedding: “${tok.nearestText}” (id ${tok.nearestId})`
          : `typed “${tok.text}” (id ${tok.id}): recovered by the nearest-neighbour attack`,
      ),
    ),
  );
  const hidden = result.tokens.filter((x) => x.hidden).length;
  t.summary.textContent =
    `${hidden} of ${result.tokens.length} positions (${(result.hiddenShare * 100).toFixed(0)}%) do not decode to the typed token` +
    ` (noise seed ${result.seed}${result.truncated ? '; the prompt was cut to fit the model' : ''}).`;
  t.teacherTop.replaceChildren(topTable(result.teacher.top, result.student.top));
  t.studentTop.replaceChildren(topTable(result.student.top, result.teacher.top));
  t.teacherContinuation.textContent = result.teacher.continuation || '(ends at once)';
  t.studentContinuation.textContent = result.student.continuation || '(ends at once)';
}
