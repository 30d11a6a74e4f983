//! The generated protobuf messages and the `sluice.v1.Discovery` service, from `xds/proto/`
//! (compiled by `build.rs` with protox). The module tree mirrors the proto packages, because the
//! generated code names other packages by relative paths (`super::super::...`).
//!
//! Only [`crate::wire`] and [`crate::grpc`] should use these types: everything else speaks the
//! plain model and protocol types.

// Generated code: its shape is prost's and tonic's, not ours (e.g. an unboxed large oneof).
#![allow(clippy::all)]

pub mod envoy {
    pub mod service {
        pub mod discovery {
            pub mod v3 {
                tonic::include_proto!("envoy.service.discovery.v3");
            }
        }
    }
}

pub mod google {
    pub mod rpc {
        tonic::include_proto!("google.rpc");
    }
}

pub mod sluice {
    pub mod v1 {
        tonic::include_proto!("sluice.v1");
    }
}
