"""The Python SDK's content helpers on the vectors every SDK is tested on
(`../tests/content-vectors.json`, read by the Rust and JavaScript SDKs' tests too).

Run here with `python3 -m unittest`. The SDK imports the bindings componentize-py generates
from the WIT: when they are not importable, they are generated into `bindings/` first (with
componentize-py on PATH), and generated again when the WIT is newer.
"""

import json
import shutil
import subprocess
import sys
import unittest
from pathlib import Path

HERE = Path(__file__).resolve().parent
VECTORS = json.loads((HERE.parent / "tests" / "content-vectors.json").read_text("utf-8"))

try:
    import wit_world  # noqa: F401
except ImportError:
    bindings = HERE / "bindings"
    wit = HERE.parent.parent.parent / "wit"
    generated = bindings / "wit_world"
    # Bindings older than the WIT are generated again: the WIT may have changed since.
    if generated.is_dir() and generated.stat().st_mtime < (wit / "policy.wit").stat().st_mtime:
        shutil.rmtree(bindings)
    if not generated.is_dir():
        subprocess.run(
            ["componentize-py", "-d", str(wit), "-w", "policy", "bindings", str(bindings)],
            check=True,
        )
    sys.path.insert(0, str(bindings))

from essync_policy import (  # noqa: E402
    Refusal,
    canonical,
    content_object,
    needs,
    parse,
    write,
)
from wit_world.imports.types import Document, Stamp  # noqa: E402


def document(content):
    return Document("6f1c1b0e-8a8e-4a53-9c3f-4a0e6f1f7c11", "books", "book", 1, Stamp.WRITTEN, content)


def cases(section):
    return VECTORS[section]["cases"]


class Numbers(unittest.TestCase):
    def test_numbers_are_numbers_with_their_exact_spelling_kept(self):
        for case in cases("numbers"):
            with self.subTest(case["name"]):
                value = content_object(document(case["content"]))[case["field"]]
                if case["integer"] is None:
                    self.assertIs(type(value), float)
                else:
                    self.assertIs(type(value), int)
                    self.assertEqual(value, int(case["integer"]))
                self.assertEqual(float(value), float(case["float"]))
                spelled = parse(case["content"])[case["field"]]
                self.assertEqual(spelled.text, case["text"])
                self.assertEqual(spelled.value, value)
                # Written back, the object is the canonical text of the content.
                written = write(content_object(document(case["content"])))
                self.assertEqual(written, canonical(case["content"]))

    def test_numbers_compare_by_value_not_by_spelling(self):
        for case in cases("orders"):
            with self.subTest(case["name"]):
                a = content_object(document(case["a"]))[case["field"]]
                b = content_object(document(case["b"]))[case["field"]]
                self.assertEqual((a > b) - (a < b), case["order"])

    def test_content_that_is_not_an_object_is_refused_with_the_reason(self):
        for case in cases("refused"):
            with self.subTest(case["name"]):
                with self.assertRaises(Refusal) as refused:
                    content_object(document(case["content"]))
                self.assertIn(case["reason"], str(refused.exception))

    def test_the_canonical_form_is_the_same_in_every_sdk(self):
        for case in cases("canonical"):
            with self.subTest(case["name"]):
                self.assertEqual(canonical(case["text"]), case["canonical"])



class Needs(unittest.TestCase):
    def test_a_policy_needs_no_base_content_and_filters_unless_it_says_otherwise(self):
        self.assertFalse(needs().base_content)
        self.assertTrue(needs(base_content=True).base_content)
        # The filter is asked unless the policy says it keeps every change.
        self.assertTrue(needs().filters)
        self.assertFalse(needs(filters=False).filters)


if __name__ == "__main__":
    unittest.main()
