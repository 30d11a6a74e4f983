//! End-to-end tests: the real `sluice` binary, real loopback backends, real sockets.

mod activator;
mod chart;
mod cli;
mod fleet;
mod fleet_netns;
mod h2_hostile;
mod hostile_http1;
mod idle;
mod isolation;
mod kubernetes;
mod lifecycle;
mod protocols;
mod routing;
mod support;
mod tls;
