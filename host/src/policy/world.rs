//! The interface versions a policy may export, and how a component of each is instantiated and
//! called.
//!
//! The current world (`wit/`) is called as it is. Components of the earlier worlds are adapted:
//! their calls receive the current world's items converted down and their answers are converted
//! up. A component of `essync:policy@0.2.0` (`wit/0.2.0`) exports no `about` (it is taken to
//! need the base's content) and its conflicts have no `base-content`; one of `@0.1.0`
//! (`wit/0.1.0`) sees no base and no stamp (the caller never sends it a delete or a conflict
//! with a missing side). Plugin hosts that users trust keep older interfaces alive this way, so
//! a compiled policy does not break when essync is upgraded.

use wasmtime::Store;
use wasmtime::component::{Component, Linker};

use super::error::PolicyError;
use super::sandbox::CallState;
use super::{OLDER_WORLD_VERSIONS, WORLD_VERSION, one_line};

/// Host bindings of the current `essync:policy` world, generated from `wit/`.
pub(super) mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "essync:policy/policy",
    });
}

/// Host bindings of the `essync:policy@0.2.0` world, generated from `wit/0.2.0`.
pub(super) mod bindings_v0_2 {
    wasmtime::component::bindgen!({
        path: "../wit/0.2.0",
        world: "essync:policy/policy",
    });
}

/// Host bindings of the `essync:policy@0.1.0` world, generated from `wit/0.1.0`.
pub(super) mod bindings_v0_1 {
    wasmtime::component::bindgen!({
        path: "../wit/0.1.0",
        world: "essync:policy/policy",
    });
}

use bindings::essync::policy::types as wit;
use bindings::exports::essync::policy::about as wit_about;

use bindings_v0_1::essync::policy::types as old;
use bindings_v0_2::essync::policy::types as v0_2;
/// What a component needs from essync (its `about.needs`).
pub(super) use wit_about::PolicyNeeds;

/// The interfaces a policy of every version exports, without their version.
const EXPORTS: [&str; 2] = ["essync:policy/filter", "essync:policy/resolver"];
/// The interface a policy of the current version exports beside [`EXPORTS`].
const ABOUT: &str = "essync:policy/about";

/// Which world a component was built against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum World {
    /// The current one, [`WORLD_VERSION`].
    Current,
    /// `0.2.0`: no `about` (it needs the base's content), no `base-content` in conflicts.
    V0_2,
    /// `0.1.0`: no base, no stamps, no deletes.
    V0_1,
}

impl World {
    /// What a component of an earlier world needs, which its world says: a 0.2.0 one needs the
    /// base's content (it may merge: it was written when the content was always there); a 0.1.0
    /// one sees no base. Both filter (their world has no way to say they do not). `None` for the
    /// current world, whose components are asked.
    pub fn needs(self) -> Option<PolicyNeeds> {
        match self {
            World::Current => None,
            World::V0_2 => Some(PolicyNeeds {
                base_content: true,
                filters: true,
            }),
            World::V0_1 => Some(PolicyNeeds {
                base_content: false,
                filters: true,
            }),
        }
    }
}

/// A component checked, linked and ready to instantiate.
pub(super) enum Pre {
    Current(bindings::PolicyPre<CallState>),
    V0_2(bindings_v0_2::PolicyPre<CallState>),
    V0_1(bindings_v0_1::PolicyPre<CallState>),
}

/// One instance of a component, in one call's store.
pub(super) enum Instance {
    Current(bindings::Policy),
    V0_2(bindings_v0_2::Policy),
    V0_1(bindings_v0_1::Policy),
}

impl Pre {
    /// Links the component against the imports of its world.
    pub fn new(
        name: &str,
        engine: &wasmtime::Engine,
        component: &Component,
        world: World,
    ) -> Result<Pre, PolicyError> {
        let unsupported = |e: wasmtime::Error| PolicyError::UnsupportedImport {
            name: name.to_string(),
            reason: one_line(&e),
        };
        let wrong = |e: wasmtime::Error| PolicyError::WrongWorld {
            name: name.to_string(),
            expected: WORLD_VERSION.to_string(),
            reason: one_line(&e),
        };
        let mut linker = Linker::<CallState>::new(engine);
        super::sandbox::add_wasi(&mut linker)?;
        let setup = |e: wasmtime::Error| PolicyError::Engine {
            reason: format!("cannot define the policy imports: {e:#}"),
        };
        match world {
            World::Current => {
                bindings::Policy::add_to_linker::<CallState, wasmtime::component::HasSelf<CallState>>(
                    &mut linker,
                    |state| state,
                )
                .map_err(setup)?;
                let pre = linker.instantiate_pre(component).map_err(unsupported)?;
                Ok(Pre::Current(bindings::PolicyPre::new(pre).map_err(wrong)?))
            }
            World::V0_2 => {
                bindings_v0_2::Policy::add_to_linker::<
                    CallState,
                    wasmtime::component::HasSelf<CallState>,
                >(&mut linker, |state| state)
                .map_err(setup)?;
                let pre = linker.instantiate_pre(component).map_err(unsupported)?;
                Ok(Pre::V0_2(
                    bindings_v0_2::PolicyPre::new(pre).map_err(wrong)?,
                ))
            }
            World::V0_1 => {
                bindings_v0_1::Policy::add_to_linker::<
                    CallState,
                    wasmtime::component::HasSelf<CallState>,
                >(&mut linker, |state| state)
                .map_err(setup)?;
                let pre = linker.instantiate_pre(component).map_err(unsupported)?;
                Ok(Pre::V0_1(
                    bindings_v0_1::PolicyPre::new(pre).map_err(wrong)?,
                ))
            }
        }
    }

    pub fn world(&self) -> World {
        match self {
            Pre::Current(_) => World::Current,
            Pre::V0_2(_) => World::V0_2,
            Pre::V0_1(_) => World::V0_1,
        }
    }

    pub fn instantiate(&self, store: &mut Store<CallState>) -> wasmtime::Result<Instance> {
        Ok(match self {
            Pre::Current(pre) => Instance::Current(pre.instantiate(store)?),
            Pre::V0_2(pre) => Instance::V0_2(pre.instantiate(store)?),
            Pre::V0_1(pre) => Instance::V0_1(pre.instantiate(store)?),
        })
    }
}

impl Instance {
    /// Asks a component of the current world what it needs (see [`World::needs`] for the
    /// others).
    pub fn needs(&self, store: &mut Store<CallState>) -> wasmtime::Result<PolicyNeeds> {
        match self {
            Instance::Current(policy) => policy.essync_policy_about().call_needs(store),
            Instance::V0_2(_) | Instance::V0_1(_) => Err(wasmtime::Error::msg(
                "a component of an earlier world has no needs to ask",
            )),
        }
    }

    /// Calls the component's `filter` on candidates of the current world.
    pub fn filter(
        &self,
        store: &mut Store<CallState>,
        items: &[wit::Candidate],
    ) -> wasmtime::Result<Vec<Result<wit::Verdict, String>>> {
        match self {
            Instance::Current(policy) => policy.essync_policy_filter().call_filter(store, items),
            Instance::V0_2(policy) => {
                let items: Vec<v0_2::Candidate> = items.iter().map(candidate_v0_2).collect();
                let answers = policy.essync_policy_filter().call_filter(store, &items)?;
                Ok(answers
                    .into_iter()
                    .map(|answer| answer.map(verdict_v0_2))
                    .collect())
            }
            Instance::V0_1(policy) => {
                let items: Vec<old::Candidate> = items.iter().map(candidate_down).collect();
                let answers = policy.essync_policy_filter().call_filter(store, &items)?;
                Ok(answers
                    .into_iter()
                    .map(|answer| answer.map(verdict_up))
                    .collect())
            }
        }
    }

    /// Calls the component's `resolve` on conflicts of the current world.
    pub fn resolve(
        &self,
        store: &mut Store<CallState>,
        items: &[wit::Conflict],
    ) -> wasmtime::Result<Vec<Result<wit::Resolution, String>>> {
        match self {
            Instance::Current(policy) => policy.essync_policy_resolver().call_resolve(store, items),
            Instance::V0_2(policy) => {
                let items: Vec<v0_2::Conflict> = items.iter().map(conflict_v0_2).collect();
                let answers = policy
                    .essync_policy_resolver()
                    .call_resolve(store, &items)?;
                Ok(answers
                    .into_iter()
                    .map(|answer| answer.map(resolution_v0_2))
                    .collect())
            }
            Instance::V0_1(policy) => {
                let items: Vec<old::Conflict> = items.iter().map(conflict_down).collect();
                let answers = policy
                    .essync_policy_resolver()
                    .call_resolve(store, &items)?;
                Ok(answers
                    .into_iter()
                    .map(|answer| answer.map(resolution_up))
                    .collect())
            }
        }
    }
}

/// A document of the current world as a 0.2.0 component sees it (the same fields).
fn document_v0_2(document: &wit::Document) -> v0_2::Document {
    v0_2::Document {
        id: document.id.clone(),
        index: document.index.clone(),
        doc_type: document.doc_type.clone(),
        timestamp: document.timestamp,
        stamp: match document.stamp {
            wit::Stamp::Written => v0_2::Stamp::Written,
            wit::Stamp::Observed => v0_2::Stamp::Observed,
        },
        content: document.content.clone(),
    }
}

fn document_from_v0_2(document: v0_2::Document) -> wit::Document {
    wit::Document {
        id: document.id,
        index: document.index,
        doc_type: document.doc_type,
        timestamp: document.timestamp,
        stamp: match document.stamp {
            v0_2::Stamp::Written => wit::Stamp::Written,
            v0_2::Stamp::Observed => wit::Stamp::Observed,
        },
        content: document.content,
    }
}

fn candidate_v0_2(candidate: &wit::Candidate) -> v0_2::Candidate {
    v0_2::Candidate {
        side: match candidate.side {
            wit::Side::Elasticsearch => v0_2::Side::Elasticsearch,
            wit::Side::Cassandra => v0_2::Side::Cassandra,
        },
        document: document_v0_2(&candidate.document),
        deleted: candidate.deleted,
    }
}

/// A conflict as a 0.2.0 component sees it: without `base-content` (essync keeps the base's
/// content for such a component, so the base carries it unless the document was synced before).
fn conflict_v0_2(conflict: &wit::Conflict) -> v0_2::Conflict {
    v0_2::Conflict {
        id: conflict.id.clone(),
        base: conflict.base.as_ref().map(document_v0_2),
        elasticsearch: conflict.elasticsearch.as_ref().map(document_v0_2),
        cassandra: conflict.cassandra.as_ref().map(document_v0_2),
    }
}

fn verdict_v0_2(verdict: v0_2::Verdict) -> wit::Verdict {
    match verdict {
        v0_2::Verdict::Keep => wit::Verdict::Keep,
        v0_2::Verdict::Transform(document) => wit::Verdict::Transform(document_from_v0_2(document)),
        v0_2::Verdict::Skip(reason) => wit::Verdict::Skip(reason),
    }
}

fn resolution_v0_2(resolution: v0_2::Resolution) -> wit::Resolution {
    match resolution {
        v0_2::Resolution::Unchanged => wit::Resolution::Unchanged,
        v0_2::Resolution::UseElasticsearch => wit::Resolution::UseElasticsearch,
        v0_2::Resolution::UseCassandra => wit::Resolution::UseCassandra,
        v0_2::Resolution::Write(document) => wit::Resolution::Write(document_from_v0_2(document)),
        v0_2::Resolution::Delete => wit::Resolution::Delete,
    }
}

fn document_down(document: &wit::Document) -> old::Document {
    old::Document {
        id: document.id.clone(),
        index: document.index.clone(),
        doc_type: document.doc_type.clone(),
        timestamp: document.timestamp,
        content: document.content.clone(),
    }
}

fn document_up(document: old::Document) -> wit::Document {
    wit::Document {
        id: document.id,
        index: document.index,
        doc_type: document.doc_type,
        timestamp: document.timestamp,
        stamp: wit::Stamp::Written,
        content: document.content,
    }
}

fn candidate_down(candidate: &wit::Candidate) -> old::Candidate {
    old::Candidate {
        side: match candidate.side {
            wit::Side::Elasticsearch => old::Side::Elasticsearch,
            wit::Side::Cassandra => old::Side::Cassandra,
        },
        document: document_down(&candidate.document),
    }
}

fn conflict_down(conflict: &wit::Conflict) -> old::Conflict {
    old::Conflict {
        id: conflict.id.clone(),
        elasticsearch: conflict.elasticsearch.as_ref().map(document_down),
        cassandra: conflict.cassandra.as_ref().map(document_down),
    }
}

fn verdict_up(verdict: old::Verdict) -> wit::Verdict {
    match verdict {
        old::Verdict::Keep => wit::Verdict::Keep,
        old::Verdict::Transform(document) => wit::Verdict::Transform(document_up(document)),
        old::Verdict::Skip(reason) => wit::Verdict::Skip(reason),
    }
}

fn resolution_up(resolution: old::Resolution) -> wit::Resolution {
    match resolution {
        old::Resolution::Unchanged => wit::Resolution::Unchanged,
        old::Resolution::UseElasticsearch => wit::Resolution::UseElasticsearch,
        old::Resolution::UseCassandra => wit::Resolution::UseCassandra,
        old::Resolution::Write(document) => wit::Resolution::Write(document_up(document)),
    }
}

/// Checks that the component exports the policy interfaces at a version this essync runs, and
/// returns that version and its world.
pub(super) fn check_exports(
    name: &str,
    exports: &[String],
) -> Result<(String, World), PolicyError> {
    let mut found_version: Option<String> = None;
    for wanted in EXPORTS {
        let found = exports.iter().find(|export| {
            export.as_str() == wanted
                || export
                    .strip_prefix(wanted)
                    .is_some_and(|rest| rest.starts_with('@'))
        });
        let Some(found) = found else {
            return Err(PolicyError::MissingExport {
                name: name.to_string(),
                missing: format!("{wanted}@{WORLD_VERSION}"),
                expected: WORLD_VERSION.to_string(),
                found: if exports.is_empty() {
                    "nothing".to_string()
                } else {
                    exports.join(", ")
                },
            });
        };
        let version = found.split_once('@').map(|(_, v)| v).unwrap_or("");
        match &found_version {
            Some(first) if !compatible(version, first) => {
                return Err(PolicyError::IncompatibleVersion {
                    name: name.to_string(),
                    export: found.clone(),
                    expected: WORLD_VERSION.to_string(),
                });
            }
            Some(_) => {}
            None => found_version = Some(version.to_string()),
        }
    }
    let version = found_version.unwrap_or_default();
    let world = if compatible(&version, WORLD_VERSION) {
        World::Current
    } else if compatible(&version, OLDER_WORLD_VERSIONS[0]) {
        World::V0_2
    } else if compatible(&version, OLDER_WORLD_VERSIONS[1]) {
        World::V0_1
    } else {
        return Err(PolicyError::IncompatibleVersion {
            name: name.to_string(),
            export: format!("essync:policy/filter@{version}"),
            expected: WORLD_VERSION.to_string(),
        });
    };
    if world == World::Current && !exports.iter().any(|e| e == &format!("{ABOUT}@{version}")) {
        return Err(PolicyError::MissingExport {
            name: name.to_string(),
            missing: format!("{ABOUT}@{WORLD_VERSION}"),
            expected: WORLD_VERSION.to_string(),
            found: exports.join(", "),
        });
    }
    Ok((version, world))
}

/// Semantic-versioning compatibility as the component model applies it: the same major
/// version, and for 0.x the same minor version.
pub(super) fn compatible(found: &str, expected: &str) -> bool {
    fn parts(v: &str) -> Option<(u64, u64)> {
        let core = v.split(['-', '+']).next()?;
        let mut numbers = core.split('.');
        let major = numbers.next()?.parse().ok()?;
        let minor = numbers.next()?.parse().ok()?;
        numbers.next()?.parse::<u64>().ok()?;
        Some((major, minor))
    }
    match (parts(found), parts(expected)) {
        (Some((0, found_minor)), Some((0, expected_minor))) => found_minor == expected_minor,
        (Some((found_major, _)), Some((expected_major, _))) => found_major == expected_major,
        _ => false,
    }
}
