// {{name}}: an essync policy.
//
// Documents of indices whose name starts with `scratch-` stay on their side. When both sides
// changed a document, the newer version wins (essync's default rule).

import { answerEach, lastWriteWins } from './essync-policy.js';

/** Whether a change takes part (throw a Refusal from essync-policy.js to refuse). */
export function decide(candidate) {
  const { index } = candidate.document;
  if (index.startsWith('scratch-')) return { tag: 'skip', val: `${index} is a scratch index` };
  return { tag: 'keep' };
}

/** What both sides hold when both changed a document. */
export function resolve(conflict) {
  return lastWriteWins(conflict);
}

export const filter = {
  filter: (batch) => answerEach(batch, decide),
};

export const resolver = {
  resolve: (batch) => answerEach(batch, resolve),
};
