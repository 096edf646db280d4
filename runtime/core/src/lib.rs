//! # meta-protocol-runtime
//!
//! The sans-IO data-plane core shared by the native proxy and the Envoy module: it never
//! touches a socket or a clock. Hosts own I/O and time and pass in what the core needs (the
//! request's metadata, a random number, `now`).
//!
//! | module | what |
//! |---|---|
//! | [`route`] | route configuration (Aeraki's shape) and the first-match [`route::Router`] |
//! | [`lb`] | round robin, random, least request, ring hash and Maglev balancers |
//! | [`resilience`] | circuit breakers, outlier detection, retry policy and budget |
//! | [`mux`] | fresh upstream ids for multiplexing, and in-order release of replies |
//! | [`ratelimit`] | local rate limits: token buckets, per listener or per metadata condition |
//! | [`duration`] | `250ms` / `30s` durations in configuration |
#![forbid(unsafe_code)]

pub mod duration;
pub mod lb;
pub mod mux;
pub mod ratelimit;
pub mod resilience;
pub mod route;
