"""Unit tests of the policy, natively: python3 -m unittest (after ./build.sh, which generates
the bindings in bindings/)."""

import sys
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent / "bindings"))

from policy import decide, resolve  # noqa: E402
from wit_world.imports.types import (  # noqa: E402
    Candidate,
    Conflict,
    Document,
    Resolution_UseElasticsearch,
    Side,
    Stamp,
    Verdict_Keep,
    Verdict_Skip,
)

ID = "6f1c1b0e-8a8e-4a53-9c3f-4a0e6f1f7c11"


def doc(timestamp, content, index="books"):
    return Document(ID, index, "book", timestamp, Stamp.WRITTEN, content)


class PolicyTest(unittest.TestCase):
    def test_scratch_indices_stay_on_their_side(self):
        scratch = Candidate(Side.ELASTICSEARCH, doc(1, "{}", index="scratch-notes"), False)
        self.assertIsInstance(decide(scratch), Verdict_Skip)
        book = Candidate(Side.CASSANDRA, doc(1, "{}"), False)
        self.assertEqual(decide(book), Verdict_Keep())

    def test_the_newer_version_wins(self):
        c = Conflict(
            ID,
            doc(0, '{"title":"Dune"}'),
            doc(2, '{"title":"Dune","pages":412}'),
            doc(1, '{"title":"Dune (2nd edition)"}'),
        )
        self.assertEqual(resolve(c), Resolution_UseElasticsearch())


if __name__ == "__main__":
    unittest.main()
