// Unit tests of the policy, natively: `node --test` (Node.js 20 or later).

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { canonical } from '../sdk/js/essync-policy.js';
import { resolve } from './policy.js';

const ID = '6f1c1b0e-8a8e-4a53-9c3f-4a0e6f1f7c11';

const doc = (timestamp, content) => ({
  id: ID,
  index: 'books',
  docType: 'book',
  timestamp: BigInt(timestamp),
  stamp: 'written',
  content,
});

const swapped = (c) => ({ ...c, elasticsearch: c.cassandra, cassandra: c.elasticsearch });
const swap = { 'use-elasticsearch': 'use-cassandra', 'use-cassandra': 'use-elasticsearch' };
const swappedAnswer = (r) => ({ ...r, tag: swap[r.tag] ?? r.tag });

test('a field changed on one side only is taken even from the older version', () => {
  const c = {
    id: ID,
    base: doc(1, '{"title":"Dune","pages":400,"isbn":"1"}'),
    baseContent: true,
    elasticsearch: doc(5, '{"title":"Dune","pages":412,"isbn":"1"}'),
    cassandra: doc(3, '{"title":"Dune (2nd ed.)","pages":400}'),
  };
  assert.deepEqual(resolve(c), {
    tag: 'write',
    val: doc(5, '{"pages":412,"title":"Dune (2nd ed.)"}'),
  });
  assert.deepEqual(swappedAnswer(resolve(swapped(c))), resolve(c));
});

test('a base without its content merges as without a base', () => {
  const c = {
    id: ID,
    base: doc(1, '{}'),
    baseContent: false,
    elasticsearch: doc(5, '{"title":"Dune","pages":412}'),
    cassandra: doc(3, '{"title":"Dune (2nd ed.)","isbn":"1"}'),
  };
  assert.deepEqual(resolve(c), {
    tag: 'write',
    val: doc(5, '{"isbn":"1","pages":412,"title":"Dune"}'),
  });
  assert.deepEqual(swappedAnswer(resolve(swapped(c))), resolve(c));
});

test('a field changed on both sides takes the newer value', () => {
  const c = { id: ID, base: doc(1, '{"v":1}'), baseContent: true, elasticsearch: doc(5, '{"v":2}'), cassandra: doc(3, '{"v":3}') };
  assert.deepEqual(resolve(c), { tag: 'use-elasticsearch' });
});

test('without a base newer values win and lone keys are kept', () => {
  const c = {
    id: ID,
    elasticsearch: doc(2, '{"title":"New","pages":10}'),
    cassandra: doc(1, '{"title":"Old","isbn":"123"}'),
  };
  assert.deepEqual(resolve(c), { tag: 'write', val: doc(2, '{"isbn":"123","pages":10,"title":"New"}') });
});

test('a change beats a delete', () => {
  const c = { id: ID, base: doc(1, '{}'), baseContent: false, cassandra: doc(2, '{"a":1}') };
  assert.deepEqual(resolve(c), { tag: 'use-cassandra' });
});

test('identical versions are left alone however spelled', () => {
  const c = { id: ID, elasticsearch: doc(2, '{"a":1.0,"b":[1e2]}'), cassandra: doc(2, '{ "b": [100], "a": 1 }') };
  assert.deepEqual(resolve(c), { tag: 'unchanged' });
});

test('content that is not an object is refused', () => {
  const c = { id: ID, elasticsearch: doc(2, '[1]'), cassandra: doc(1, '{}') };
  assert.throws(() => resolve(c), /not a JSON object/);
});

test('canonical JSON is what the Rust SDK writes', () => {
  assert.equal(
    canonical(' { "b" : [1.0, 2e0], "a": {"y": "é", "x": null} } '),
    '{"a":{"x":null,"y":"é"},"b":[1,2]}',
  );
  assert.equal(canonical('{"a":"\\u00e9"}'), '{"a":"é"}');
  // The same as the Rust SDK's test of its canonical form.
  assert.equal(
    canonical('[9007199254740993, 1e21, 1e-7, -0.0, -0, 18446744073709551616, 0.1, 1.5e300]'),
    `[9007199254740993,1000000000000000000000,0.0000001,-0,0,18446744073709551616,0.1,15${'0'.repeat(299)}]`,
  );
  assert.equal(
    canonical('{"\uffff":1,"\u{1F600}":2,"a\\u0000":"\\t\\u007f/"}'),
    '{"a\\u0000":"\\t\u007f/","\uffff":1,"\u{1F600}":2}',
  );
  assert.equal(canonical('not json'), 'not json');
});
