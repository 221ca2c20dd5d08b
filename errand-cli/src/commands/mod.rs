//! One function per subcommand.

pub(crate) mod audit;
pub(crate) mod cron;
mod dashboard;
mod delete;
mod jobs;
mod migrate;
mod prune;
mod queues;
mod stats;
pub(crate) mod workers;
pub(crate) mod workflows;

pub(crate) use dashboard::{dashboard, dashboard_store};
pub(crate) use jobs::jobs;
pub(crate) use migrate::migrate;
pub(crate) use prune::prune;
pub(crate) use queues::queues;
pub(crate) use stats::stats;
