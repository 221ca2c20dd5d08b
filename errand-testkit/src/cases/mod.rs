//! The conformance cases, one module per area of the [`errand_core::Store`] contract.
//! Each case takes a fresh store and panics with a message when the store breaks the contract.

pub mod audit;
pub mod cancel_retry;
pub mod claim;
pub mod concurrency;
pub mod insert;
pub mod leader;
pub mod lease;
pub mod list;
pub mod metered;
pub mod outcome;
pub mod presence;
pub mod prune;
pub mod queue;
pub mod result;
pub mod schedule;
pub mod tally;
pub mod unique;
pub mod workflow;
