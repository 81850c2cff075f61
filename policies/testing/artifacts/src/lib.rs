//! The paths of the policy components essync's tests and benchmarks load: the examples, the
//! default policy as a file, and the test-only policies of `policies/testing`, built for
//! `wasm32-wasip2` by this crate's build script. essync's release binary embeds only the default
//! policy; this crate is a dev-dependency, so nothing else is built for a release.

#![deny(missing_docs)]

include!(concat!(env!("OUT_DIR"), "/policies.rs"));
