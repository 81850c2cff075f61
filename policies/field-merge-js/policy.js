// Example policy in JavaScript: a three-way merge of the top-level fields of a document.
//
// The twin of the Rust example `policies/field-merge`, passing the same cases
// (`../field-merge/cases.json`). Every change takes part. When both sides changed a document
// since the version they last shared (the base), each top-level field is merged on its own:
//
// - a field changed (or added, or removed) on one side only takes that side's value, even when
//   the other side's version is newer as a whole;
// - a field changed on both sides takes the newer version's value (later timestamp, ties broken
//   as the default policy does); a removal counts as a change;
// - the index and the type are merged the same way; the merge has the newer version's
//   timestamp and is written to both sides. When the merge is one side's version, that side's
//   version is used; when both versions are the same, nothing changes.
//
// Without a base (both sides created the document), a key present in both takes the newer
// version's value and a key of one side only is kept. When one side deleted the document and
// the other changed it, the change wins. Content that is not a JSON object is refused.
//
// The merge reads the base's content, so the policy asks essync for it (`about`): essync then
// keeps every synced document's content. A conflict whose base comes without it (`baseContent`
// false: a document synced before this policy was in use) is merged as without a base.
//
// Field values are compared as canonical JSON (`{"a":1.0}` and `{ "a": 1 }` hold the same
// value), as the Rust twin compares them.

import {
  answerEach,
  compareIn,
  contentFields,
  lastWriteWins,
  needs,
  same,
  write,
} from '../sdk/js/essync-policy.js';

// Every change takes part (`filter` keeps each), so essync need not ask it: `filters: false`.
export const about = needs({ baseContent: true, filters: false });

export const filter = {
  filter: (batch) => answerEach(batch, () => ({ tag: 'keep' })),
};

export const resolver = {
  resolve: (batch) => answerEach(batch, resolve),
};

/** Resolves one conflict by merging top-level fields. */
export function resolve(conflict) {
  const { base, baseContent, elasticsearch: es, cassandra } = conflict;
  if (es == null || cassandra == null) return lastWriteWins(conflict);
  const order = compareIn(conflict, es, cassandra);
  if (order === 0) return { tag: 'unchanged' };
  const [newer, older] = order > 0 ? [es, cassandra] : [cassandra, es];
  const merged =
    base == null || !baseContent ? twoWay(newer, older) : threeWay(base, newer, older);
  if (same(merged, es)) return { tag: 'use-elasticsearch' };
  if (same(merged, cassandra)) return { tag: 'use-cassandra' };
  return { tag: 'write', val: merged };
}

/** Each field from the side that changed it; fields both changed from the newer version. */
function threeWay(base, newer, older) {
  const [b, n, o] = [contentFields(base), contentFields(newer), contentFields(older)];
  const content = new Map();
  for (const key of new Set([...b.keys(), ...n.keys(), ...o.keys()])) {
    const value = sameValue(n.get(key), b.get(key)) ? o.get(key) : n.get(key);
    if (value !== undefined) content.set(key, value);
  }
  return {
    ...newer,
    index: newer.index === base.index ? older.index : newer.index,
    docType: newer.docType === base.docType ? older.docType : newer.docType,
    content: write(content),
  };
}

/** Whether two field values (undefined: absent) are the same JSON, however spelled. */
function sameValue(a, b) {
  if (a === undefined || b === undefined) return a === b;
  return write(a) === write(b);
}

/** The newer version, with the top-level keys only the older version has. */
function twoWay(newer, older) {
  const content = contentFields(older);
  for (const [key, value] of contentFields(newer)) content.set(key, value);
  return { ...newer, content: write(content) };
}
