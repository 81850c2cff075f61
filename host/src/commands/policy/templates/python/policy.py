"""{{name}}: an essync policy.

Documents of indices whose name starts with `scratch-` stay on their side. When both sides
changed a document, the newer version wins (essync's default rule).
"""

from essync_policy import answer_each, last_write_wins, needs
from wit_world import exports
from wit_world.exports.about import PolicyNeeds
from wit_world.imports.types import (
    Candidate,
    Conflict,
    Resolution,
    Verdict,
    Verdict_Keep,
    Verdict_Skip,
)


def decide(candidate: Candidate) -> Verdict:
    """Whether a change takes part (raise essync_policy.Refusal to refuse)."""
    index = candidate.document.index
    if index.startswith("scratch-"):
        return Verdict_Skip(f"{index} is a scratch index")
    return Verdict_Keep()


def resolve(conflict: Conflict) -> Resolution:
    """What both sides hold when both changed a document."""
    return last_write_wins(conflict)


class About(exports.About):
    def needs(self) -> PolicyNeeds:
        """What the policy needs from essync. Say `base_content=True` if `resolve` merges from
        the content of a conflict's base (`conflict.base.content`): essync then keeps it for
        every document. Otherwise the base comes with the content `{}`
        (`conflict.base_content` is false). `filters` says whether `filter` may answer anything
        but keep (this one skips scratch indices); a policy that keeps every change says
        `filters=False`, and essync never asks it."""
        return needs(base_content=False, filters=True)


class Filter(exports.Filter):
    def filter(self, batch):
        return answer_each(batch, decide)


class Resolver(exports.Resolver):
    def resolve(self, batch):
        return answer_each(batch, resolve)
