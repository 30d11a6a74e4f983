//! Resolving a split's `serviceName`/`servicePort` to a [`Backend`].
//!
//! - The Service port is matched by number (int `servicePort`) or by name (string).
//! - The upstream speaks h2c iff the matched port has `appProtocol: kubernetes.io/h2c` or is
//!   named `http2` or `h2c`.
//! - An `ExternalName` Service is a DNS target on the Service port. Such Services often declare
//!   no ports, so an int `servicePort` that matches none is used as is.
//! - Otherwise the targets are the ready endpoints (`conditions.ready` not false) of every
//!   EndpointSlice labelled `kubernetes.io/service-name=<svc>` in the namespace. Each slice's port
//!   is the slice port named like the Service port (absent == ""), else the int `targetPort`,
//!   else the Service port number. Addresses are sorted and deduplicated; none is a valid
//!   answer (the proxy holds requests until endpoints appear).

use crate::object::{IntOrString, ServicePort};
use crate::store::Store;
use sluice_xds::{Backend, Endpoints, Protocol, Target};
use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};

pub const H2C_APP_PROTOCOL: &str = "kubernetes.io/h2c";

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    #[error("service {namespace}/{service} not found")]
    ServiceNotFound { namespace: String, service: String },
    #[error("service {namespace}/{service} has no port {port}")]
    ServicePortNotFound {
        namespace: String,
        service: String,
        port: IntOrString,
    },
}

impl ResolveError {
    /// The status condition reason.
    pub fn reason(&self) -> &'static str {
        match self {
            ResolveError::ServiceNotFound { .. } => "ServiceNotFound",
            ResolveError::ServicePortNotFound { .. } => "ServicePortNotFound",
        }
    }
}

/// A resolved backend: what the proxy connects to, and, for Endpoints targets, the ready
/// addresses (DNS targets have none).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    pub backend: Backend,
    pub endpoints: Option<Endpoints>,
}

/// Resolves `namespace/service:port` from the store.
pub fn resolve(
    store: &Store,
    namespace: &str,
    service: &str,
    port: &IntOrString,
) -> Result<Resolved, ResolveError> {
    let svc = store
        .service(namespace, service)
        .ok_or_else(|| ResolveError::ServiceNotFound {
            namespace: namespace.to_string(),
            service: service.to_string(),
        })?;
    let matched = svc.spec.ports.iter().find(|p| match port {
        IntOrString::Int(n) => p.port == *n,
        IntOrString::String(name) => p.name.as_deref() == Some(name.as_str()),
    });
    let not_found = || ResolveError::ServicePortNotFound {
        namespace: namespace.to_string(),
        service: service.to_string(),
        port: port.clone(),
    };
    if let Some(host) = svc.spec.external_name() {
        let (number, protocol) = match (matched, port) {
            (Some(p), _) => (p.port, protocol_of(p)),
            (None, IntOrString::Int(n)) => (*n, Protocol::Http1),
            (None, IntOrString::String(_)) => return Err(not_found()),
        };
        let port = u16::try_from(number).map_err(|_| not_found())?;
        return Ok(Resolved {
            backend: Backend {
                protocol,
                revision: None,
                target: Target::Dns {
                    host: host.to_string(),
                    port,
                },
            },
            endpoints: None,
        });
    }
    let matched = matched.ok_or_else(not_found)?;
    Ok(Resolved {
        backend: Backend {
            protocol: protocol_of(matched),
            revision: None,
            target: Target::Endpoints,
        },
        endpoints: Some(Endpoints {
            addresses: ready_endpoints(store, namespace, service, matched),
        }),
    })
}

fn protocol_of(port: &ServicePort) -> Protocol {
    let h2c = port.app_protocol.as_deref() == Some(H2C_APP_PROTOCOL)
        || matches!(port.name.as_deref(), Some("http2" | "h2c"));
    if h2c {
        Protocol::H2c
    } else {
        Protocol::Http1
    }
}

fn ready_endpoints(
    store: &Store,
    namespace: &str,
    service: &str,
    service_port: &ServicePort,
) -> Vec<SocketAddr> {
    let port_name = service_port.name.as_deref().unwrap_or_default();
    let target_port = match service_port.target_port {
        Some(IntOrString::Int(n)) if n != 0 => Some(n),
        _ => None,
    };
    let mut addresses = BTreeSet::new();
    for slice in store.endpoint_slices(namespace, service) {
        let named = slice
            .ports
            .iter()
            .find(|p| p.name.as_deref().unwrap_or_default() == port_name)
            .and_then(|p| p.port);
        let number = named.or(target_port).unwrap_or(service_port.port);
        let Ok(port) = u16::try_from(number) else {
            continue;
        };
        let ready = slice
            .endpoints
            .iter()
            .filter(|e| e.conditions.ready != Some(false));
        for address in ready.flat_map(|e| &e.addresses) {
            if let Ok(ip) = address.parse::<IpAddr>() {
                addresses.insert(SocketAddr::new(ip, port));
            }
        }
    }
    addresses.into_iter().collect()
}
