"""Helpers for essync policies written in Python (componentize-py).

The same helpers as the Rust SDK (the `essync-policy` crate), for the types that
componentize-py generates from `wit/policy.wit` (`wit_world`):

- `needs(base_content=False, filters=True)`: what the `About` export's `needs` returns, what the policy needs
  from essync (asked once, at load). `base_content=True` says that `resolve` merges from the
  content of a conflict's base: essync then keeps every synced document's content in its
  ledger, and a conflict's `base_content` is true when its base carries it. Without it (the
  default), a conflict's base comes with the content `{}`. `filters=False` says that `filter`
  keeps every change: essync then never calls it (and ignores what it would answer); the
  default, `True`, has it asked about every change;
- `answer_each(batch, decide)`: one `Ok(answer)` per item, in order, or `Err(reason)` where
  `decide` raised `Refusal` (any other exception traps the call, as a panic does in Rust);
- `content_object(document)`: the content as a `dict`, its numbers as numbers (below), or a
  `Refusal` saying why not;
- `parse(text)`: JSON with every number a `JsonNumber`, which keeps its spelling (`.text`)
  beside its value (`.value`), for the few that need the spelling;
- `write(value)`: the canonical text of a value from `content_object` or `parse` (to set a
  document's content: `document.content = write(fields)`);
- `canonical(text)`: the canonical text of JSON, byte for byte what the Rust SDK writes (keys
  sorted, no whitespace, one spelling per number), so that two spellings of the same content
  compare equal;
- `compare`, `same`, `compare_in`, `last_write_wins`: the default policy's order of versions
  and its resolution, as in the Rust SDK's `versions` module.

Numbers in content mean the same in every SDK (tested on the same vectors,
`policies/sdk/tests/content-vectors.json`): a number written without a fraction or an
exponent is an `int`, exact however large (`10`, `9007199254740993`); any other is a `float`,
the nearest double (`1.5`, `2.0`, `1e2`). So `fields["version"] > 9` compares numbers, and
`1.5 == 1.50`. NaN and Infinity are not JSON: content holding them is refused.

essync writes this file into every Python policy that `essync policy new --lang python`
creates.
"""

import json
from decimal import Decimal

from componentize_py_types import Err, Ok
from wit_world.exports.about import PolicyNeeds
from wit_world.imports.types import (
    Conflict,
    Document,
    Resolution,
    Resolution_Unchanged,
    Resolution_UseCassandra,
    Resolution_UseElasticsearch,
    Stamp,
)


def needs(base_content: bool = False, filters: bool = True) -> PolicyNeeds:
    """What the policy needs from essync: `base_content` says whether `resolve` reads the
    content of a conflict's base (a three-way merge does); `filters` whether `filter` may answer
    anything but keep (when not, essync never calls it)."""
    return PolicyNeeds(base_content=base_content, filters=filters)


class Refusal(Exception):
    """A policy's refusal to decide on one item; essync reports the reason and asks again
    on a later round."""


def answer_each(batch, decide):
    """Applies `decide` to each item of a batch: the list a `filter` or `resolve` export
    returns."""
    answers = []
    for item in batch:
        try:
            answers.append(Ok(decide(item)))
        except Refusal as refusal:
            answers.append(Err(str(refusal)))
    return answers


def content_object(document: Document) -> dict:
    """The document's content, parsed: a `dict`, numbers as `int` or `float` (see the module's
    documentation); a `Refusal` when it is not a JSON object."""
    try:
        value = json.loads(document.content, parse_constant=_reject)
    except (ValueError, RecursionError) as e:
        raise Refusal(f"the content of {document.id} is not JSON: {e}") from None
    if not isinstance(value, dict):
        raise Refusal(f"the content of {document.id} is not a JSON object")
    return value


# JSON, numbers kept as written; canonical JSON: what the Rust SDK's `json::canonical` writes.


class JsonNumber:
    """A JSON number as it was written (`text`), and its value (`value`: an `int` when written
    without a fraction or an exponent, else a `float`, as `content_object` gives it)."""

    __slots__ = ("text",)

    def __init__(self, text):
        self.text = text

    def __repr__(self):
        return f"JsonNumber({self.text!r})"

    @property
    def integer(self) -> bool:
        """Whether it is written without a fraction or an exponent."""
        return not any(c in self.text for c in ".eE")

    @property
    def value(self):
        return int(self.text) if self.integer else float(self.text)

    def canonical(self) -> str:
        """Its one spelling in canonical JSON."""
        if self.integer:
            # Integers are written in decimal with every digit, past 64 bits too.
            return str(int(self.text))
        try:
            number = float(self.text)
        except OverflowError:
            return self.text
        if number != number or number in (float("inf"), float("-inf")):
            return self.text
        # The shortest digits that read back as the same float, never in exponent form
        # (1e21 is 1000000000000000000000, 1.0 is 1), as Rust writes an f64.
        text = format(Decimal(repr(number)), "f")
        if "." in text:
            text = text.rstrip("0").rstrip(".")
        return text


def _reject(constant):
    raise ValueError(f"{constant} is not JSON")


def parse(text: str):
    """Parses JSON text, every number a `JsonNumber` (its spelling kept). Raises ValueError."""
    return json.loads(
        text,
        parse_int=JsonNumber,
        parse_float=JsonNumber,
        parse_constant=_reject,
    )


def write(value) -> str:
    """The canonical text of a value from `content_object` or `parse` (dicts, lists, strings,
    numbers, booleans, None)."""
    out = []
    _write(value, out)
    return "".join(out)


def _write(value, out):
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, JsonNumber):
        out.append(value.canonical())
    elif isinstance(value, int):
        out.append(JsonNumber(str(value)).canonical())
    elif isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError(f"{value} is not JSON")
        out.append(JsonNumber(repr(value)).canonical())
    elif isinstance(value, str):
        out.append(json.dumps(value, ensure_ascii=False))
    elif isinstance(value, list):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _write(item, out)
        out.append("]")
    else:
        out.append("{")
        # Python orders strings by code point: the order of their UTF-8 bytes.
        for i, key in enumerate(sorted(value)):
            if i:
                out.append(",")
            out.append(json.dumps(key, ensure_ascii=False))
            out.append(":")
            _write(value[key], out)
        out.append("}")


def canonical(text: str) -> str:
    """The canonical text of a JSON text (the text itself when it is not JSON)."""
    try:
        value = parse(text)
    except (ValueError, RecursionError):
        return text
    return write(value)


# The default order of versions: what the Rust SDK's `versions` module does.


def _cmp(a, b) -> int:
    return (a > b) - (a < b)


def compare(a: Document, b: Document) -> int:
    """-1, 0 or 1: the later timestamp is greater; on equal timestamps the canonical content,
    then the index, then the type decide. 0 means both hold the same data."""
    order = _cmp(a.timestamp, b.timestamp)
    if order == 0 and a.content != b.content:
        order = _cmp(canonical(a.content), canonical(b.content))
    return order or _cmp(a.index, b.index) or _cmp(a.doc_type, b.doc_type)


def same(a: Document, b: Document) -> bool:
    """Whether two versions hold the same data."""
    return compare(a, b) == 0


def compare_in(conflict: Conflict, a: Document, b: Document) -> int:
    """`compare`, except that without a base a timestamp its writer set is newer than one
    essync observed."""
    if conflict.base is None:
        order = _cmp(a.stamp == Stamp.WRITTEN, b.stamp == Stamp.WRITTEN)
        if order:
            return order
    return compare(a, b)


def last_write_wins(conflict: Conflict) -> Resolution:
    """The default resolution: the newer version wins; a change wins over a delete."""
    es, cassandra = conflict.elasticsearch, conflict.cassandra
    if es is None and cassandra is None:
        return Resolution_Unchanged()
    if cassandra is None:
        return Resolution_UseElasticsearch()
    if es is None:
        return Resolution_UseCassandra()
    order = compare_in(conflict, es, cassandra)
    if order > 0:
        return Resolution_UseElasticsearch()
    if order < 0:
        return Resolution_UseCassandra()
    return Resolution_Unchanged()
