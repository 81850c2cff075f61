// Unit tests of the policy, natively: node --test
//
// Each test checks one rule of the policy and says which: when you change a rule on purpose,
// change its test (and its case in cases.json) to match.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { decide, resolve } from './policy.js';

const doc = (timestamp, content, index = 'books') => ({
  id: '6f1c1b0e-8a8e-4a53-9c3f-4a0e6f1f7c11',
  index,
  docType: 'book',
  timestamp: BigInt(timestamp),
  stamp: 'written',
  content,
});

test('scratch indices stay on their side', () => {
  const scratch = { side: 'elasticsearch', document: doc(1, '{}', 'scratch-notes'), deleted: false };
  assert.equal(
    decide(scratch).tag,
    'skip',
    "the rule 'documents of scratch-* indices stay on their side' no longer holds: if you " +
      'changed it on purpose, change this test and its case in cases.json',
  );
  const book = { side: 'cassandra', document: doc(1, '{}'), deleted: false };
  assert.deepEqual(
    decide(book),
    { tag: 'keep' },
    'a document of another index no longer takes part: if the policy now skips it on purpose, ' +
      'change this test',
  );
});

test('the newer version wins', () => {
  const conflict = {
    id: doc(0, '{}').id,
    base: doc(0, '{"title":"Dune"}'),
    elasticsearch: doc(2, '{"title":"Dune","pages":412}'),
    cassandra: doc(1, '{"title":"Dune (2nd edition)"}'),
  };
  assert.deepEqual(
    resolve(conflict),
    { tag: 'use-elasticsearch' },
    "the rule 'the newer version wins a conflict' no longer holds: if you changed it on " +
      'purpose, change this test and its case in cases.json',
  );
});
