// The JavaScript SDK's content helpers on the vectors every SDK is tested on
// (`../tests/content-vectors.json`, read by the Rust and Python SDKs' tests too).
// Run here with `node --test` (Node.js 20 or later).

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';

import { Refusal, canonical, contentFields, needs, parse, write } from './essync-policy.js';

const vectors = JSON.parse(
  readFileSync(new URL('../tests/content-vectors.json', import.meta.url), 'utf-8'),
);
const cases = (section) => vectors[section].cases;

const document = (content) => ({
  id: '6f1c1b0e-8a8e-4a53-9c3f-4a0e6f1f7c11',
  index: 'books',
  docType: 'book',
  timestamp: 1n,
  stamp: 'written',
  content,
});

test('numbers are numbers, with their exact spelling kept', () => {
  for (const c of cases('numbers')) {
    const value = contentFields(document(c.content)).get(c.field);
    if (c.integer === null) {
      assert.equal(typeof value, 'number', c.name);
    } else {
      const exact = BigInt(c.integer);
      const safe = Number.isSafeInteger(Number(exact));
      assert.equal(value, safe ? Number(exact) : exact, c.name);
    }
    assert.equal(Number(value), Number(c.float), c.name);
    const spelled = parse(c.content).get(c.field);
    assert.equal(spelled.text, c.text, c.name);
    assert.equal(spelled.value, value, c.name);
    // Written back, the object is the canonical text of the content.
    assert.equal(write(contentFields(document(c.content))), canonical(c.content), c.name);
  }
});

test('numbers compare by value, not by spelling', () => {
  for (const c of cases('orders')) {
    const a = contentFields(document(c.a)).get(c.field);
    const b = contentFields(document(c.b)).get(c.field);
    assert.equal((a > b) - (a < b), c.order, c.name);
  }
});

test('content that is not an object is refused with the reason', () => {
  for (const c of cases('refused')) {
    assert.throws(
      () => contentFields(document(c.content)),
      (e) => e instanceof Refusal && e.message.includes(c.reason),
      c.name,
    );
  }
});

test('the canonical form is the same in every SDK', () => {
  for (const c of cases('canonical')) {
    assert.equal(canonical(c.text), c.canonical, c.name);
  }
});

test('a policy needs no base content and is asked to filter unless it says otherwise', () => {
  assert.deepEqual(needs().needs(), { baseContent: false, filters: true });
  assert.deepEqual(needs({ baseContent: true }).needs(), { baseContent: true, filters: true });
  assert.deepEqual(needs({ filters: false }).needs(), { baseContent: false, filters: false });
});
