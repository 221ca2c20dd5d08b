//! One module per page; `actions` and `filter` are what several pages share.

pub(crate) mod actions;
pub(crate) mod audit;
pub(crate) mod chart;
pub(crate) mod counts;
pub(crate) mod cron;
pub(crate) mod filter;
pub(crate) mod job;
pub(crate) mod jobs;
pub(crate) mod metrics;
pub(crate) mod overview;
pub(crate) mod queues;
pub(crate) mod workers;
pub(crate) mod workflows;
