"""Example policy in Python: Cassandra is the source of truth.

The twin of the Rust example `policies/prefer-cassandra`, passing the same cases
(`../prefer-cassandra/cases.json`). Every change takes part. When both sides changed a
document since the base, Cassandra's outcome wins, whatever the timestamps:

- both changed it: Cassandra's version, on both sides (unless both already hold the same);
- Cassandra deleted it while Elasticsearch changed it: it is deleted from Elasticsearch too;
- Elasticsearch deleted it while Cassandra changed it: Cassandra's version comes back.
"""

from essync_policy import answer_each, needs, same
from wit_world import exports
from wit_world.exports.about import PolicyNeeds
from wit_world.imports.types import (
    Conflict,
    Resolution,
    Resolution_Delete,
    Resolution_Unchanged,
    Resolution_UseCassandra,
    Resolution_UseElasticsearch,
    Verdict_Keep,
)


def resolve(conflict: Conflict) -> Resolution:
    """Cassandra wins."""
    es, cassandra = conflict.elasticsearch, conflict.cassandra
    if es is not None and cassandra is not None and same(es, cassandra):
        return Resolution_Unchanged()
    if cassandra is not None:
        return Resolution_UseCassandra()
    if es is not None and conflict.base is not None:
        # Cassandra deleted it: the delete wins.
        return Resolution_Delete()
    if es is not None:
        return Resolution_UseElasticsearch()
    return Resolution_Unchanged()


class About(exports.About):
    def needs(self) -> PolicyNeeds:
        """It never reads the base's content (essync keeps none), and its filter keeps every
        change (essync need not ask it)."""
        return needs(base_content=False, filters=False)


class Filter(exports.Filter):
    def filter(self, batch):
        return answer_each(batch, lambda candidate: Verdict_Keep())


class Resolver(exports.Resolver):
    def resolve(self, batch):
        return answer_each(batch, resolve)
