"""Unit tests of the policy, natively: python3 -m unittest (after ./build.sh, which generates
the bindings in bindings/).

Each test checks one rule of the policy and says which: when you change a rule on purpose,
change its test (and its case in cases.json) to match."""

import sys
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent / "bindings"))

try:
    from policy import decide, resolve
    from wit_world.imports.types import (
        Candidate,
        Conflict,
        Document,
        Resolution_UseElasticsearch,
        Side,
        Stamp,
        Verdict_Keep,
        Verdict_Skip,
    )
except ModuleNotFoundError as missing:
    if missing.name not in ("wit_world", "componentize_py_types"):
        raise
    raise ImportError(
        f"{missing.name} is missing: run ./build.sh first, which writes the bindings the tests "
        "import into bindings/"
    ) from None

ID = "6f1c1b0e-8a8e-4a53-9c3f-4a0e6f1f7c11"


def doc(timestamp, content, index="books"):
    return Document(ID, index, "book", timestamp, Stamp.WRITTEN, content)


class PolicyTest(unittest.TestCase):
    def test_scratch_indices_stay_on_their_side(self):
        scratch = Candidate(Side.ELASTICSEARCH, doc(1, "{}", index="scratch-notes"), False)
        self.assertIsInstance(
            decide(scratch),
            Verdict_Skip,
            "the rule 'documents of scratch-* indices stay on their side' no longer holds: if "
            "you changed it on purpose, change this test and its case in cases.json",
        )
        book = Candidate(Side.CASSANDRA, doc(1, "{}"), False)
        self.assertEqual(
            decide(book),
            Verdict_Keep(),
            "a document of another index no longer takes part: if the policy now skips it on "
            "purpose, change this test",
        )

    def test_the_newer_version_wins(self):
        c = Conflict(
            ID,
            doc(0, '{"title":"Dune"}'),
            True,
            doc(2, '{"title":"Dune","pages":412}'),
            doc(1, '{"title":"Dune (2nd edition)"}'),
        )
        self.assertEqual(
            resolve(c),
            Resolution_UseElasticsearch(),
            "the rule 'the newer version wins a conflict' no longer holds: if you changed it on "
            "purpose, change this test and its case in cases.json",
        )


if __name__ == "__main__":
    unittest.main()
