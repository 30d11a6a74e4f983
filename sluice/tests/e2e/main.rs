//! End-to-end tests: the real `sluice` binary, real loopback backends, real sockets.

mod activator;
mod cli;
mod lifecycle;
mod protocols;
mod routing;
mod support;
mod tls;
