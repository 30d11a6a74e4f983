//! End-to-end tests: the real `sluice` binary, real loopback backends, real sockets.

mod lifecycle;
mod protocols;
mod routing;
mod support;
mod tls;
