"""Unit tests of the policy, natively: `python3 -m unittest` (after `./build.sh`, which
generates the bindings these tests import)."""

import sys
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent / "bindings"))
sys.path.insert(0, str(Path(__file__).parent.parent / "sdk" / "python"))

from essync_policy import canonical  # noqa: E402
from policy import resolve  # noqa: E402
from wit_world.imports.types import (  # noqa: E402
    Conflict,
    Document,
    Resolution_Delete,
    Resolution_Unchanged,
    Resolution_UseCassandra,
    Resolution_UseElasticsearch,
    Stamp,
)

ID = "6f1c1b0e-8a8e-4a53-9c3f-4a0e6f1f7c11"


def doc(timestamp, content):
    return Document(ID, "books", "book", timestamp, Stamp.WRITTEN, content)


def conflict(elasticsearch, cassandra, base=None):
    return Conflict(ID, base, base is not None, elasticsearch, cassandra)


class PreferCassandra(unittest.TestCase):
    def test_cassandra_wins_even_when_older(self):
        c = conflict(doc(9, '{"a":1}'), doc(1, '{"a":2}'), base=doc(0, "{}"))
        self.assertEqual(resolve(c), Resolution_UseCassandra())

    def test_a_delete_in_cassandra_wins_over_a_change_in_elasticsearch(self):
        c = conflict(doc(9, '{"a":1}'), None, base=doc(0, "{}"))
        self.assertEqual(resolve(c), Resolution_Delete())

    def test_a_change_in_cassandra_wins_over_a_delete_in_elasticsearch(self):
        c = conflict(None, doc(1, '{"a":2}'), base=doc(0, "{}"))
        self.assertEqual(resolve(c), Resolution_UseCassandra())

    def test_a_lone_version_without_base_is_copied_to_the_other_side(self):
        self.assertEqual(resolve(conflict(doc(1, "{}"), None)), Resolution_UseElasticsearch())
        self.assertEqual(resolve(conflict(None, doc(1, "{}"))), Resolution_UseCassandra())
        self.assertEqual(resolve(conflict(None, None)), Resolution_Unchanged())

    def test_identical_versions_are_left_alone_however_spelled(self):
        c = conflict(doc(3, '{"a": 1.0, "b": [2]}'), doc(3, '{"b":[2],"a":1}'))
        self.assertEqual(resolve(c), Resolution_Unchanged())


class Canonical(unittest.TestCase):
    def test_the_canonical_form_is_the_rust_sdks(self):
        # The same as the Rust SDK's test of its canonical form.
        self.assertEqual(
            canonical(
                "[9007199254740993, 1e21, 1e-7, -0.0, -0, 18446744073709551616, 0.1, 1.5e300]"
            ),
            "[9007199254740993,1000000000000000000000,0.0000001,-0,0,18446744073709551616,0.1,15"
            + "0" * 299
            + "]",
        )
        self.assertEqual(
            canonical('{"\uffff":1,"\U0001F600":2,"a\\u0000":"\\t\\u007f/"}'),
            '{"a\\u0000":"\\t\x7f/","\uffff":1,"\U0001F600":2}',
        )
        self.assertEqual(canonical("not json"), "not json")


if __name__ == "__main__":
    unittest.main()
