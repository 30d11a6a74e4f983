//! xDS decoding: arbitrary bytes as every resource type and as both stream messages. Whatever
//! decodes and converts into the model must re-encode to bytes that decode to the same value,
//! and a response's resources are either accepted or listed as invalid, never dropped.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;
use prost_types::Any;
use sluice_xds::protocol::{ControllerMessage, ProxyMessage};
use sluice_xds::wire::proto::sluice::v1 as pb;
use sluice_xds::wire::{decode_resource, encode_resource};
use sluice_xds::ResourceType;

const TYPES: [ResourceType; 5] = [
    ResourceType::RevisionPolicy,
    ResourceType::Backend,
    ResourceType::Endpoints,
    ResourceType::Certificate,
    ResourceType::RouteConfig,
];

fuzz_target!(|data: &[u8]| {
    for type_ in TYPES {
        let any = Any {
            type_url: type_.type_url().to_string(),
            value: data.to_vec(),
        };
        if let Ok(resource) = decode_resource(type_, &any) {
            let again = encode_resource(&resource);
            assert_eq!(again.type_url, any.type_url);
            let back = decode_resource(type_, &again).expect("a re-encoded resource decodes");
            assert_eq!(back, resource, "{type_:?} round trip");
            assert_eq!(back.version(), resource.version());
        }
    }

    if let Ok(message) = pb::ControllerMessage::decode(data) {
        let wire_resources = match &message.message {
            Some(pb::controller_message::Message::Response(r)) => r.resources.len(),
            None => 0,
        };
        if let Ok(decoded) = ControllerMessage::try_from(message) {
            let ControllerMessage::Response(r) = &decoded;
            assert_eq!(
                r.resources.len() + r.invalid.len(),
                wire_resources,
                "every resource is accepted or rejected"
            );
            // Accepted resources re-encode and decode equal (invalid ones are not sent on).
            let mut clean = r.clone();
            clean.invalid.clear();
            let bytes = pb::ControllerMessage::from(ControllerMessage::Response(clean.clone()))
                .encode_to_vec();
            let back = pb::ControllerMessage::decode(bytes.as_slice()).expect("re-encoded");
            let ControllerMessage::Response(back) =
                ControllerMessage::try_from(back).expect("re-encoded converts");
            assert_eq!(back.resources, clean.resources);
            for (a, b) in back.resources.iter().zip(&clean.resources) {
                assert_eq!(a.resource, b.resource, "{} content", a.name);
            }
            assert_eq!(back.removed, clean.removed);
            assert_eq!(back.nonce, clean.nonce);
            assert!(back.invalid.is_empty());
        }
    }

    if let Ok(message) = pb::ProxyMessage::decode(data) {
        if let Ok(decoded) = ProxyMessage::try_from(message) {
            let bytes = pb::ProxyMessage::from(decoded.clone()).encode_to_vec();
            let back = pb::ProxyMessage::decode(bytes.as_slice()).expect("re-encoded");
            let back = ProxyMessage::try_from(back).expect("re-encoded converts");
            assert_eq!(back, decoded, "proxy message round trip");
        }
    }
});
