// {{name}}: an essync policy.
//
// Documents of indices whose name starts with `scratch-` stay on their side. When both sides
// changed a document, the newer version wins (essync's default rule).

import { answerEach, lastWriteWins, needs } from './essync-policy.js';

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

/** What the policy needs from essync. Set `baseContent: true` if `resolve` merges from the
 * content of a conflict's base (`conflict.base.content`): essync then keeps it for every
 * document. Otherwise the base comes with the content `{}` (`conflict.baseContent` is false).
 * `filters` says whether `filter` may answer anything but keep (this one skips scratch indices);
 * a policy that keeps every change says `filters: false`, and essync never asks it. */
export const about = needs({ baseContent: false, filters: true });

export const filter = {
  filter: (batch) => answerEach(batch, decide),
};

export const resolver = {
  resolve: (batch) => answerEach(batch, resolve),
};
