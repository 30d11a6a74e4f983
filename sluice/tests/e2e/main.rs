//! End-to-end tests: the real `sluice` binary, real loopback backends, real sockets.

mod access_log;
mod activator;
mod activator_abuse;
mod chart;
mod churn;
mod cli;
mod drain;
mod fleet;
mod fleet_netns;
mod h2_hostile;
mod hostile_http1;
mod idle;
mod isolation;
mod kubernetes;
mod lifecycle;
mod passive_health;
mod protocols;
mod routing;
mod server_timing;
mod support;
mod tls;
mod xds_hostile;
