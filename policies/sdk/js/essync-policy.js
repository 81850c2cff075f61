// Helpers for essync policies written in JavaScript (componentize-js).
//
// The same helpers as the Rust SDK (the `essync-policy` crate), for the values componentize-js
// passes: a document is `{ id, index, docType, timestamp, stamp, content }` (`timestamp` a
// BigInt of UTC milliseconds, `stamp` 'written' or 'observed', `content` the text of a JSON
// object), an absent version is `undefined`, variants are `{ tag, val }`.
//
// - `needs({ baseContent, filters })`: the `about` export, what the policy needs from essync
//   (asked once, at load): `export const about = needs({ baseContent: false });`. `baseContent:
//   true` says that `resolve` merges from the content of a conflict's base: essync then keeps
//   every synced document's content in its ledger, and a conflict's `baseContent` is true when
//   its base carries it. Without it (the default), a conflict's base comes with the content
//   `{}`. `filters: false` says that `filter` keeps every change: essync then never calls it
//   (and ignores what it would answer); the default, `true`, has it asked about every change;
// - `answerEach(batch, decide)`: one `{ tag: 'ok', val }` per item, in order, or
//   `{ tag: 'err', val: reason }` where `decide` threw a `Refusal` (any other exception traps
//   the call, as a panic does in Rust);
// - `contentFields(document)`: the content's top-level fields as a Map (objects inside it are
//   Maps too), its numbers as numbers (below), or a `Refusal`;
// - `parse(text)`: JSON with every number a `JsonNumber`, which keeps its spelling (`.text`)
//   beside its value (`.value`), for the few that need the spelling;
// - `write(value)`: the canonical text of a value from `contentFields` or `parse` (to set a
//   document's content: `{ ...document, content: write(fields) }`);
// - `canonical(text)`: the canonical text of JSON, byte for byte as the Rust SDK writes it (keys
//   sorted by their UTF-8 bytes, no whitespace, one spelling per number), so that two spellings
//   of the same content compare equal;
// - `compare`, `same`, `compareIn`, `lastWriteWins`: the default policy's order of versions and
//   its resolution, as in the Rust SDK's `versions` module.
//
// Numbers in content mean the same in every SDK (tested on the same vectors,
// `policies/sdk/tests/content-vectors.json`): a number written without a fraction or an
// exponent is exact, a `number` when it is a safe integer (`10`) and a `BigInt` past 2^53
// (`9007199254740993n`); any other is a `number`, the nearest double (`1.5`, `2.0`, `1e2`). So
// `fields.get('version') > 9` compares numbers, `1.5 === 1.50`, and a BigInt compares with a
// number as it should (`<`, `>`, `==`; arithmetic mixing them throws a TypeError). `JSON.parse`
// would round 9007199254740993 silently.
//
// essync writes this file into every JavaScript policy that `essync policy new --lang js`
// creates.

/** A policy's refusal to decide on one item: essync reports the reason and asks again later. */
export class Refusal extends Error {}

/** The `about` export of a policy: what it needs from essync. `baseContent` (false unless
 * given) says whether `resolve` reads the content of a conflict's base; `filters` (true unless
 * given) whether `filter` may answer anything but keep (when not, essync never calls it). */
export function needs({ baseContent = false, filters = true } = {}) {
  return { needs: () => ({ baseContent, filters }) };
}

/** Applies `decide` to each item of a batch: the list a `filter` or `resolve` export returns. */
export function answerEach(batch, decide) {
  return batch.map((item) => {
    try {
      return { tag: 'ok', val: decide(item) };
    } catch (e) {
      if (e instanceof Refusal) return { tag: 'err', val: e.message };
      throw e;
    }
  });
}

/** The document's content as a Map of its top-level fields, numbers as numbers (see above); a
 * Refusal when it is not a JSON object. */
export function contentFields(document) {
  let value;
  try {
    value = parse(document.content);
  } catch (e) {
    throw new Refusal(`the content of ${document.id} is not JSON: ${e.message}`);
  }
  if (!(value instanceof Map)) {
    throw new Refusal(`the content of ${document.id} is not a JSON object`);
  }
  return numbersAsValues(value);
}

/** A value from `parse` with every JsonNumber replaced by its value. */
function numbersAsValues(value) {
  if (value instanceof JsonNumber) return value.value;
  if (Array.isArray(value)) return value.map(numbersAsValues);
  if (value instanceof Map) {
    for (const [key, item] of value) value.set(key, numbersAsValues(item));
  }
  return value;
}

// JSON, numbers kept as written.

/** A JSON number, as written in the text. */
export class JsonNumber {
  constructor(text) {
    this.text = text;
  }

  /** Whether it is written without a fraction or an exponent. */
  get integer() {
    return !/[.eE]/.test(this.text);
  }

  /** Its value: an integer is exact (a number when safe, else a BigInt); any other number is
   * the nearest double. */
  get value() {
    if (!this.integer) return Number(this.text);
    const integer = BigInt(this.text);
    const number = Number(integer);
    return Number.isSafeInteger(number) ? number : integer;
  }
}

const MAX_DEPTH = 128; // serde_json's nesting limit, so that both refuse the same texts
const NUMBER = /-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/y;
const ESCAPES = { '"': '"', '\\': '\\', '/': '/', b: '\b', f: '\f', n: '\n', r: '\r', t: '\t' };

/** Parses JSON text: objects become Maps (the last of duplicate keys wins), numbers
 * JsonNumbers. Throws a SyntaxError. */
export function parse(text) {
  let i = 0;
  const fail = (what) => {
    throw new SyntaxError(`${what} at character ${i}`);
  };
  const space = () => {
    while (i < text.length && ' \t\n\r'.includes(text[i])) i++;
  };
  const hex4 = () => {
    const digits = text.slice(i, i + 4);
    if (!/^[0-9a-fA-F]{4}$/.test(digits)) fail('invalid \\u escape');
    i += 4;
    return parseInt(digits, 16);
  };
  const string = () => {
    i++; // the opening quote
    let out = '';
    for (;;) {
      if (i >= text.length) fail('unterminated string');
      const c = text[i];
      if (c === '"') {
        i++;
        return out;
      }
      if (c < ' ') fail('control character in a string');
      if (c !== '\\') {
        out += c;
        i++;
        continue;
      }
      const e = text[i + 1];
      i += 2;
      if (e in ESCAPES) {
        out += ESCAPES[e];
      } else if (e === 'u') {
        const unit = hex4();
        if (unit >= 0xdc00 && unit <= 0xdfff) fail('lone trailing surrogate');
        if (unit >= 0xd800 && unit <= 0xdbff) {
          if (text.slice(i, i + 2) !== '\\u') fail('lone leading surrogate');
          i += 2;
          const low = hex4();
          if (low < 0xdc00 || low > 0xdfff) fail('lone leading surrogate');
          out += String.fromCharCode(unit, low);
        } else {
          out += String.fromCharCode(unit);
        }
      } else {
        fail('invalid escape');
      }
    }
  };
  const value = (depth) => {
    space();
    const c = text[i];
    if (c === '{' || c === '[') {
      if (depth <= 1) fail('nested too deeply');
      i++;
      const object = c === '{' ? new Map() : null;
      const array = object ? null : [];
      space();
      if (text[i] === (object ? '}' : ']')) {
        i++;
        return object ?? array;
      }
      for (;;) {
        if (object) {
          space();
          if (text[i] !== '"') fail('expected a key');
          const key = string();
          space();
          if (text[i] !== ':') fail("expected ':'");
          i++;
          object.set(key, value(depth - 1));
        } else {
          array.push(value(depth - 1));
        }
        space();
        if (text[i] === ',') {
          i++;
        } else if (text[i] === (object ? '}' : ']')) {
          i++;
          return object ?? array;
        } else {
          fail(object ? "expected ',' or '}'" : "expected ',' or ']'");
        }
      }
    }
    if (c === '"') return string();
    for (const [word, literal] of [['true', true], ['false', false], ['null', null]]) {
      if (text.startsWith(word, i)) {
        i += word.length;
        return literal;
      }
    }
    NUMBER.lastIndex = i;
    const number = NUMBER.exec(text);
    if (!number) fail('expected a value');
    i += number[0].length;
    return new JsonNumber(number[0]);
  };
  const result = value(MAX_DEPTH);
  space();
  if (i < text.length) fail('trailing characters');
  return result;
}

/** The canonical text of a JSON value from `contentFields` or `parse` (Maps, arrays, strings,
 * numbers, BigInts, JsonNumbers, booleans, null). */
export function write(value) {
  if (value === null) return 'null';
  if (value === true) return 'true';
  if (value === false) return 'false';
  if (typeof value === 'string') return JSON.stringify(value);
  if (value instanceof JsonNumber) return writeNumber(value.text);
  if (typeof value === 'bigint') return writeNumber(value.toString());
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw new RangeError(`${value} is not JSON`);
    return Object.is(value, -0) ? '-0' : writeNumber(String(value));
  }
  if (Array.isArray(value)) return `[${value.map(write).join(',')}]`;
  const keys = [...value.keys()].sort(compareText);
  return `{${keys.map((key) => `${JSON.stringify(key)}:${write(value.get(key))}`).join(',')}}`;
}

/** The canonical text of a JSON text (the text itself when it is not JSON). */
export function canonical(text) {
  let value;
  try {
    value = parse(text);
  } catch {
    return text;
  }
  return write(value);
}


function writeNumber(text) {
  // Integers are written in decimal with every digit, past 64 bits too.
  if (!/[.eE]/.test(text)) return BigInt(text).toString();
  const number = Number(text);
  if (!Number.isFinite(number)) return text;
  if (Object.is(number, -0)) return '-0';
  // The shortest digits that read back as the same float, never in exponent form (1e21 is
  // 1000000000000000000000, 1.0 is 1), as Rust writes an f64.
  const [mantissa, exponentText] = Math.abs(number).toExponential().split('e');
  const digits = mantissa.replace('.', '');
  const exponent = Number(exponentText);
  let plain;
  if (exponent >= digits.length - 1) {
    plain = digits + '0'.repeat(exponent - digits.length + 1);
  } else if (exponent >= 0) {
    plain = `${digits.slice(0, exponent + 1)}.${digits.slice(exponent + 1)}`;
  } else {
    plain = `0.${'0'.repeat(-exponent - 1)}${digits}`;
  }
  return number < 0 ? `-${plain}` : plain;
}

/** Compares two strings by their UTF-8 bytes (that is, by code points), as Rust does. */
export function compareText(a, b) {
  if (a === b) return 0;
  const x = a[Symbol.iterator]();
  const y = b[Symbol.iterator]();
  for (;;) {
    const p = x.next();
    const q = y.next();
    if (p.done || q.done) return p.done === q.done ? 0 : p.done ? -1 : 1;
    const diff = p.value.codePointAt(0) - q.value.codePointAt(0);
    if (diff !== 0) return diff < 0 ? -1 : 1;
  }
}

// The default order of versions: what the Rust SDK's `versions` module does.

const cmp = (a, b) => (a < b ? -1 : a > b ? 1 : 0);

/** -1, 0 or 1: the later timestamp is greater; on equal timestamps the canonical content, then
 * the index, then the type decide. 0 means both hold the same data. */
export function compare(a, b) {
  return (
    cmp(a.timestamp, b.timestamp) ||
    (a.content === b.content ? 0 : compareText(canonical(a.content), canonical(b.content))) ||
    compareText(a.index, b.index) ||
    compareText(a.docType, b.docType)
  );
}

/** Whether two versions hold the same data. */
export function same(a, b) {
  return compare(a, b) === 0;
}

/** `compare`, except that without a base a timestamp its writer set is newer than one essync
 * observed. */
export function compareIn(conflict, a, b) {
  if (conflict.base == null) {
    const order = cmp(a.stamp === 'written', b.stamp === 'written');
    if (order !== 0) return order;
  }
  return compare(a, b);
}

/** The default resolution: the newer version wins; a change wins over a delete. */
export function lastWriteWins(conflict) {
  const { elasticsearch: es, cassandra } = conflict;
  if (es == null && cassandra == null) return { tag: 'unchanged' };
  if (cassandra == null) return { tag: 'use-elasticsearch' };
  if (es == null) return { tag: 'use-cassandra' };
  const order = compareIn(conflict, es, cassandra);
  if (order > 0) return { tag: 'use-elasticsearch' };
  if (order < 0) return { tag: 'use-cassandra' };
  return { tag: 'unchanged' };
}
