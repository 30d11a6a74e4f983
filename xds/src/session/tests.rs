use super::*;
use crate::cache::Change;
use crate::model::{
    Backend, Certificate, Endpoints, Protocol, Resource, RevisionPolicy, RouteConfig, Target,
};
use crate::protocol::{RejectedResource, Rejection};
use std::collections::HashSet;

const RP: ResourceType = ResourceType::RevisionPolicy;
const BE: ResourceType = ResourceType::Backend;
const EP: ResourceType = ResourceType::Endpoints;
const CERT: ResourceType = ResourceType::Certificate;
const RC: ResourceType = ResourceType::RouteConfig;

/// Content number `id` of a resource of type `type_`; `id_of` reads it back.
fn res(type_: ResourceType, id: u32) -> Resource {
    match type_ {
        ResourceType::RevisionPolicy => Resource::RevisionPolicy(RevisionPolicy {
            container_concurrency: id,
            max_buffered: 0,
            timeout_seconds: 300,
            response_start_timeout_seconds: None,
            idle_timeout_seconds: None,
        }),
        ResourceType::Backend => Resource::Backend(Backend {
            protocol: Protocol::Http1,
            target: Target::Dns {
                host: "example.com".into(),
                port: u16::try_from(id).expect("small ids"),
            },
            revision: None,
        }),
        ResourceType::Endpoints => Resource::Endpoints(Endpoints {
            addresses: vec![std::net::SocketAddr::from((
                [127, 0, 0, 1],
                u16::try_from(id).expect("small ids"),
            ))],
        }),
        ResourceType::Certificate => Resource::Certificate(Certificate {
            secret: id.to_string(),
            cert_pem: String::new(),
            key_pem: String::new(),
            external_hosts: vec![],
            internal_hosts: vec![],
        }),
        ResourceType::RouteConfig => Resource::RouteConfig(RouteConfig {
            owner: id.to_string(),
            ..RouteConfig::default()
        }),
    }
}

fn id_of(resource: &Resource) -> u32 {
    match resource {
        Resource::RevisionPolicy(p) => p.container_concurrency,
        Resource::Backend(b) => match &b.target {
            Target::Dns { port, .. } => u32::from(*port),
            other => panic!("not a test backend: {other:?}"),
        },
        Resource::Endpoints(e) => u32::from(e.addresses[0].port()),
        Resource::Certificate(c) => c.secret.parse().expect("test certificate"),
        Resource::RouteConfig(r) => r.owner.parse().expect("test route config"),
    }
}

fn version(type_: ResourceType, id: u32) -> String {
    res(type_, id).version()
}

fn put(type_: ResourceType, name: &str, id: u32) -> Change {
    Change::put(name, res(type_, id))
}

fn del(type_: ResourceType, name: &str) -> Change {
    Change::Remove(type_, name.to_string())
}

/// Which response of the latest push a request answers.
#[derive(Clone, Debug)]
enum Nonce {
    None,
    Of(usize),
    Unknown,
}

#[derive(Clone, Debug)]
enum Nack {
    Whole(&'static str),
    Resources(Vec<(&'static str, &'static str)>),
}

#[derive(Clone, Debug)]
struct Req {
    type_: ResourceType,
    subscribe: Vec<&'static str>,
    unsubscribe: Vec<&'static str>,
    initial: Vec<(&'static str, u32)>,
    nonce: Nonce,
    nack: Option<Nack>,
    expect: Progress,
}

/// A request for `type_` that does nothing yet (as a first request: a legacy wildcard).
fn req(type_: ResourceType) -> Req {
    Req {
        type_,
        subscribe: vec![],
        unsubscribe: vec![],
        initial: vec![],
        nonce: Nonce::None,
        nack: None,
        expect: Progress::default(),
    }
}

/// What a sluice proxy opens a type with: subscribe `*`.
fn open(type_: ResourceType) -> Req {
    req(type_).sub(&["*"])
}

impl Req {
    fn sub(mut self, names: &[&'static str]) -> Req {
        self.subscribe.extend(names);
        self
    }
    fn unsub(mut self, names: &[&'static str]) -> Req {
        self.unsubscribe.extend(names);
        self
    }
    fn initial(mut self, held: &[(&'static str, u32)]) -> Req {
        self.initial.extend(held);
        self
    }
    fn ack(mut self, response: usize) -> Req {
        self.nonce = Nonce::Of(response);
        self
    }
    fn nack(mut self, response: usize, rejected: &[(&'static str, &'static str)]) -> Req {
        self.nonce = Nonce::Of(response);
        self.nack = Some(Nack::Resources(rejected.to_vec()));
        self
    }
    fn nack_whole(mut self, response: usize, message: &'static str) -> Req {
        self.nonce = Nonce::Of(response);
        self.nack = Some(Nack::Whole(message));
        self
    }
    fn unknown_nonce(mut self) -> Req {
        self.nonce = Nonce::Unknown;
        self
    }
    fn applied(mut self, seq: u64) -> Req {
        self.expect.applied = Some(seq);
        self
    }
    fn rejections_changed(mut self) -> Req {
        self.expect.rejections_changed = true;
        self
    }
}

/// An expected response: its type, the resources sent (name, content id) and the removals.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Resp {
    type_: ResourceType,
    updated: Vec<(String, u32)>,
    removed: Vec<String>,
}

fn resp(type_: ResourceType, updated: &[(&str, u32)], removed: &[&str]) -> Resp {
    Resp {
        type_,
        updated: updated.iter().map(|(n, id)| (n.to_string(), *id)).collect(),
        removed: removed.iter().map(|n| n.to_string()).collect(),
    }
}

#[derive(Debug)]
enum Step {
    /// Apply a batch to the cache.
    Cache(Vec<Change>),
    /// Send a request and check the progress it reports.
    Req(Req),
    /// Ask for the next push: these responses, in this order, and this `applied`.
    Push(Vec<Resp>, Option<u64>),
    /// ACK every response of the latest push in order; the last ACK reports `applied`.
    AckAll(Option<u64>),
    /// What `rejections()` lists: type, name, content id, reason.
    Rejections(Vec<(ResourceType, &'static str, u32, &'static str)>),
}

struct Scenario {
    name: &'static str,
    steps: Vec<Step>,
}

fn scenario(name: &'static str, steps: Vec<Step>) -> Scenario {
    Scenario { name, steps }
}

struct Harness {
    cache: ResourceCache,
    session: ServerSession,
    last_push: Vec<DeltaResponse>,
    nonces: HashSet<String>,
    node_sent: bool,
}

impl Harness {
    fn new() -> Harness {
        Harness {
            cache: ResourceCache::new(),
            session: ServerSession::new("test"),
            last_push: Vec::new(),
            nonces: HashSet::new(),
            node_sent: false,
        }
    }

    fn request(&mut self, r: &Req) -> Progress {
        let response_nonce = match r.nonce {
            Nonce::None => None,
            Nonce::Of(i) => Some(self.last_push[i].nonce.clone()),
            Nonce::Unknown => Some("no-such-nonce".to_string()),
        };
        let error = r.nack.as_ref().map(|nack| match nack {
            Nack::Whole(message) => Rejection {
                message: message.to_string(),
                resources: vec![],
            },
            Nack::Resources(list) => Rejection::new(
                list.iter()
                    .map(|(name, reason)| RejectedResource {
                        name: name.to_string(),
                        reason: reason.to_string(),
                    })
                    .collect(),
            ),
        });
        let node = (!self.node_sent).then(|| Node {
            id: "proxy-0".into(),
            metadata: BTreeMap::new(),
        });
        self.node_sent = true;
        self.session.on_request(DeltaRequest {
            type_: Some(r.type_),
            node,
            subscribe: r.subscribe.iter().map(|s| s.to_string()).collect(),
            unsubscribe: r.unsubscribe.iter().map(|s| s.to_string()).collect(),
            initial_versions: r
                .initial
                .iter()
                .map(|(name, id)| (name.to_string(), version(r.type_, *id)))
                .collect(),
            response_nonce,
            error,
        })
    }

    /// Runs `next_push` and checks what every response must satisfy whatever the scenario.
    fn push(&mut self, context: &str) -> (Vec<DeltaResponse>, Progress) {
        let (responses, progress) = self.session.next_push(&self.cache);
        for (i, response) in responses.iter().enumerate() {
            assert_eq!(
                response.push_continues,
                i + 1 < responses.len(),
                "{context}: every response but a push's last says more follow"
            );
            assert!(
                self.nonces.insert(response.nonce.clone()),
                "{context}: nonce {} reused",
                response.nonce
            );
            assert_eq!(
                response.system_version,
                self.cache.seq().to_string(),
                "{context}"
            );
            assert!(response.invalid.is_empty(), "{context}");
            assert!(
                response.resources.len() + response.removed.len() <= MAX_PER_RESPONSE,
                "{context}: response too big"
            );
            let mut names = HashSet::new();
            for r in &response.resources {
                assert_eq!(r.resource.type_(), response.type_, "{context}");
                assert_eq!(r.version, r.resource.version(), "{context}: {}", r.name);
                assert!(names.insert(&r.name), "{context}: {} twice", r.name);
            }
        }
        if !responses.is_empty() {
            self.last_push = responses.clone();
        }
        (responses, progress)
    }
}

fn summary(responses: &[DeltaResponse]) -> Vec<Resp> {
    responses
        .iter()
        .map(|r| Resp {
            type_: r.type_,
            updated: r
                .resources
                .iter()
                .map(|n| (n.name.clone(), id_of(&n.resource)))
                .collect(),
            removed: r.removed.clone(),
        })
        .collect()
}

fn run(scenario: &Scenario) {
    let mut h = Harness::new();
    for (i, step) in scenario.steps.iter().enumerate() {
        let context = format!("{} (step {i}: {step:?})", scenario.name);
        match step {
            Step::Cache(changes) => {
                h.cache.apply(changes.clone());
            }
            Step::Req(r) => {
                let progress = h.request(r);
                assert_eq!(progress, r.expect, "{context}");
            }
            Step::Push(want, applied) => {
                let (responses, progress) = h.push(&context);
                assert_eq!(summary(&responses), *want, "{context}");
                assert_eq!(
                    progress,
                    Progress {
                        applied: *applied,
                        rejections_changed: false
                    },
                    "{context}"
                );
                if let Some(seq) = applied {
                    assert_eq!(h.session.applied(), *seq, "{context}");
                }
            }
            Step::AckAll(applied) => {
                let count = h.last_push.len();
                for j in 0..count {
                    let type_ = h.last_push[j].type_;
                    let progress = h.request(&req(type_).ack(j));
                    let want = if j + 1 == count { *applied } else { None };
                    assert_eq!(
                        progress,
                        Progress {
                            applied: want,
                            rejections_changed: false
                        },
                        "{context}: ack {j}"
                    );
                }
                if let Some(seq) = applied {
                    assert_eq!(h.session.applied(), *seq, "{context}");
                }
            }
            Step::Rejections(want) => {
                let want: Vec<Rejected> = want
                    .iter()
                    .map(|(type_, name, id, reason)| Rejected {
                        type_: *type_,
                        name: name.to_string(),
                        version: version(*type_, *id),
                        reason: reason.to_string(),
                    })
                    .collect();
                assert_eq!(h.session.rejections(), want, "{context}");
            }
        }
    }
}

fn scenarios() -> Vec<Scenario> {
    use Step::{AckAll, Cache, Push, Rejections};
    let r = Step::Req;
    vec![
        scenario(
            "opening request gets one response per opened type even when empty",
            vec![
                r(open(RP)),
                r(open(BE)),
                r(open(EP)),
                r(open(CERT)),
                r(open(RC)),
                Push(
                    vec![
                        resp(RP, &[], &[]),
                        resp(BE, &[], &[]),
                        resp(EP, &[], &[]),
                        resp(CERT, &[], &[]),
                        resp(RC, &[], &[]),
                    ],
                    None,
                ),
                AckAll(Some(0)),
                Push(vec![], None),
            ],
        ),
        scenario(
            "only the types the proxy opened are answered",
            vec![
                Cache(vec![put(BE, "a", 1), put(CERT, "c", 1)]),
                r(open(BE)),
                r(open(RC)),
                Push(vec![resp(BE, &[("a", 1)], &[]), resp(RC, &[], &[])], None),
                AckAll(Some(1)),
                Push(vec![], None),
            ],
        ),
        scenario(
            "explicit wildcard gets every resource",
            vec![
                Cache(vec![put(BE, "a", 1), put(BE, "b", 2)]),
                r(open(BE)),
                Push(vec![resp(BE, &[("a", 1), ("b", 2)], &[])], None),
                AckAll(Some(1)),
                Cache(vec![put(BE, "c", 3)]),
                Push(vec![resp(BE, &[("c", 3)], &[])], None),
                AckAll(Some(2)),
            ],
        ),
        scenario(
            "legacy wildcard when never subscribed gets every resource",
            vec![
                Cache(vec![put(BE, "a", 1), put(BE, "b", 2)]),
                r(req(BE)),
                Push(vec![resp(BE, &[("a", 1), ("b", 2)], &[])], None),
                AckAll(Some(1)),
                Cache(vec![put(BE, "c", 3)]),
                Push(vec![resp(BE, &[("c", 3)], &[])], None),
                AckAll(Some(2)),
            ],
        ),
        scenario(
            "legacy wildcard ends with the first explicit subscription",
            vec![
                Cache(vec![put(BE, "a", 1), put(BE, "b", 2)]),
                r(req(BE)),
                Push(vec![resp(BE, &[("a", 1), ("b", 2)], &[])], None),
                AckAll(Some(1)),
                r(req(BE).sub(&["a"])),
                Push(
                    vec![resp(BE, &[("a", 1)], &[]), resp(BE, &[], &["b"])],
                    None,
                ),
                AckAll(Some(1)),
            ],
        ),
        scenario(
            "legacy wildcard ends on unsubscribing the wildcard",
            vec![
                Cache(vec![put(BE, "a", 1)]),
                r(req(BE)),
                Push(vec![resp(BE, &[("a", 1)], &[])], None),
                AckAll(Some(1)),
                r(req(BE).unsub(&["*"])),
                Push(vec![resp(BE, &[], &["a"])], None),
                AckAll(Some(1)),
                Cache(vec![put(BE, "b", 2)]),
                Push(vec![], Some(2)),
            ],
        ),
        scenario(
            "wildcard subscribed and unsubscribed in one request subscribes to nothing",
            vec![
                Cache(vec![put(BE, "a", 1)]),
                r(req(BE).sub(&["*"]).unsub(&["*"])),
                Push(vec![resp(BE, &[], &[])], None),
                AckAll(Some(1)),
                Cache(vec![put(BE, "a", 2), put(BE, "b", 1)]),
                Push(vec![], Some(2)),
                r(req(BE).sub(&["a"])),
                Push(vec![resp(BE, &[("a", 2)], &[])], None),
                AckAll(Some(2)),
            ],
        ),
        scenario(
            "adding the wildcard to explicit names sends the rest",
            vec![
                Cache(vec![put(BE, "a", 1), put(BE, "b", 2)]),
                r(req(BE).sub(&["a"])),
                Push(vec![resp(BE, &[("a", 1)], &[])], None),
                AckAll(Some(1)),
                r(req(BE).sub(&["*"])),
                Push(vec![resp(BE, &[("b", 2)], &[])], None),
                AckAll(Some(1)),
            ],
        ),
        scenario(
            "dropping the wildcard keeps explicit names and removes the rest",
            vec![
                Cache(vec![put(BE, "a", 1), put(BE, "b", 2)]),
                r(open(BE).sub(&["a"])),
                Push(vec![resp(BE, &[("a", 1), ("b", 2)], &[])], None),
                AckAll(Some(1)),
                r(req(BE).unsub(&["*"])),
                Push(vec![resp(BE, &[], &["b"])], None),
                AckAll(Some(1)),
                Cache(vec![put(BE, "a", 3), put(BE, "b", 4)]),
                Push(vec![resp(BE, &[("a", 3)], &[])], None),
                AckAll(Some(2)),
            ],
        ),
        scenario(
            "subscribed name is sent even if the proxy holds that version",
            vec![
                Cache(vec![put(BE, "a", 1)]),
                r(req(BE).sub(&["a"]).initial(&[("a", 1)])),
                Push(vec![resp(BE, &[("a", 1)], &[])], None),
                AckAll(Some(1)),
                // Subscribing again to a name already held: sent again.
                r(req(BE).sub(&["a"])),
                Push(vec![resp(BE, &[("a", 1)], &[])], None),
                AckAll(Some(1)),
            ],
        ),
        scenario(
            "explicit name under a wildcard is sent even if the proxy holds that version",
            vec![
                Cache(vec![put(BE, "a", 1)]),
                r(open(BE).initial(&[("a", 1)])),
                Push(vec![resp(BE, &[], &[])], None),
                AckAll(Some(1)),
                r(req(BE).sub(&["a"])),
                Push(vec![resp(BE, &[("a", 1)], &[])], None),
                AckAll(Some(1)),
            ],
        ),
        scenario(
            "subscribed name that does not exist comes back removed and is pushed once it exists",
            vec![
                r(req(BE).sub(&["x"])),
                r(req(RC).sub(&["y"])),
                Push(vec![resp(RC, &[], &["y"]), resp(BE, &[], &["x"])], None),
                AckAll(Some(0)),
                Cache(vec![put(BE, "x", 1), put(BE, "other", 2)]),
                Push(vec![resp(BE, &[("x", 1)], &[])], None),
                AckAll(Some(1)),
            ],
        ),
        scenario(
            "unsubscribe while the wildcard covers the name resends it",
            vec![
                Cache(vec![put(BE, "a", 1), put(BE, "b", 1)]),
                r(open(BE).sub(&["a"])),
                Push(vec![resp(BE, &[("a", 1), ("b", 1)], &[])], None),
                AckAll(Some(1)),
                r(req(BE).unsub(&["a"])),
                Push(vec![resp(BE, &[("a", 1)], &[])], None),
                AckAll(Some(1)),
            ],
        ),
        scenario(
            "unsubscribe without a wildcard sends nothing and stops updates of that name",
            vec![
                Cache(vec![put(BE, "a", 1), put(BE, "b", 1)]),
                r(req(BE).sub(&["a", "b"])),
                Push(vec![resp(BE, &[("a", 1), ("b", 1)], &[])], None),
                AckAll(Some(1)),
                r(req(BE).unsub(&["a"])),
                Push(vec![], None),
                Cache(vec![put(BE, "a", 2)]),
                Push(vec![], Some(2)),
                Cache(vec![put(BE, "b", 2)]),
                Push(vec![resp(BE, &[("b", 2)], &[])], None),
                AckAll(Some(3)),
            ],
        ),
        scenario(
            "unsubscribing a name never subscribed is ignored",
            vec![
                Cache(vec![put(BE, "a", 1)]),
                r(open(BE)),
                Push(vec![resp(BE, &[("a", 1)], &[])], None),
                AckAll(Some(1)),
                r(req(BE).unsub(&["a", "zzz"])),
                Push(vec![], None),
            ],
        ),
        scenario(
            "nonce echo completes a push and reports the cache sequence as applied",
            vec![
                Cache(vec![put(BE, "a", 1)]),
                r(open(BE)),
                r(open(RC)),
                Push(vec![resp(BE, &[("a", 1)], &[]), resp(RC, &[], &[])], None),
                r(req(RC).ack(1)),
                r(req(BE).ack(0).applied(1)),
                // Answering the same response again records nothing.
                r(req(BE).ack(0)),
                Push(vec![], None),
            ],
        ),
        scenario(
            "only one push is in flight and changes meanwhile are coalesced",
            vec![
                Cache(vec![put(BE, "a", 1)]),
                r(open(BE)),
                Push(vec![resp(BE, &[("a", 1)], &[])], None),
                Cache(vec![put(BE, "a", 2)]),
                Push(vec![], None),
                Cache(vec![put(BE, "a", 3), put(BE, "b", 1)]),
                Push(vec![], None),
                r(req(BE).ack(0).applied(1)),
                Push(vec![resp(BE, &[("a", 3), ("b", 1)], &[])], None),
                AckAll(Some(3)),
            ],
        ),
        scenario(
            "a type opened while a push is in flight is answered with the next push",
            vec![
                Cache(vec![put(BE, "a", 1), put(RC, "r", 1)]),
                r(open(BE)),
                Push(vec![resp(BE, &[("a", 1)], &[])], None),
                r(open(RC)),
                Push(vec![], None),
                r(req(BE).ack(0).applied(1)),
                Push(vec![resp(RC, &[("r", 1)], &[])], None),
                AckAll(Some(1)),
            ],
        ),
        scenario(
            "a change undone before the next push is not sent",
            vec![
                Cache(vec![put(BE, "a", 1), put(BE, "b", 1)]),
                r(open(BE)),
                Push(vec![resp(BE, &[("a", 1), ("b", 1)], &[])], None),
                Cache(vec![put(BE, "a", 2)]),
                Cache(vec![put(BE, "a", 1)]),
                AckAll(Some(1)),
                Push(vec![], Some(3)),
            ],
        ),
        scenario(
            "an unchanged resource is never resent",
            vec![
                Cache(vec![put(BE, "a", 1), put(BE, "b", 1)]),
                r(open(BE)),
                Push(vec![resp(BE, &[("a", 1), ("b", 1)], &[])], None),
                AckAll(Some(1)),
                Cache(vec![put(BE, "a", 1), put(BE, "b", 2)]),
                Push(vec![resp(BE, &[("b", 2)], &[])], None),
                AckAll(Some(2)),
                Push(vec![], None),
            ],
        ),
        scenario(
            "push is make before break",
            vec![
                Cache(vec![
                    put(RP, "p", 1),
                    put(RP, "old", 1),
                    put(BE, "b", 1),
                    put(BE, "old", 1),
                    put(EP, "b", 1),
                    put(EP, "old", 1),
                    put(CERT, "c", 1),
                    put(CERT, "old", 1),
                    put(RC, "r", 1),
                    put(RC, "old", 1),
                ]),
                r(open(RC)),
                r(open(CERT)),
                r(open(EP)),
                r(open(BE)),
                r(open(RP)),
                Push(
                    vec![
                        resp(RP, &[("old", 1), ("p", 1)], &[]),
                        resp(BE, &[("b", 1), ("old", 1)], &[]),
                        resp(EP, &[("b", 1), ("old", 1)], &[]),
                        resp(CERT, &[("c", 1), ("old", 1)], &[]),
                        resp(RC, &[("old", 1), ("r", 1)], &[]),
                    ],
                    None,
                ),
                AckAll(Some(1)),
                Cache(vec![
                    del(RC, "old"),
                    del(CERT, "old"),
                    del(EP, "old"),
                    del(BE, "old"),
                    del(RP, "old"),
                    put(RC, "r", 2),
                    put(CERT, "c", 2),
                    put(EP, "b", 2),
                    put(BE, "b", 2),
                    put(RP, "p", 2),
                ]),
                Push(
                    vec![
                        resp(RP, &[("p", 2)], &[]),
                        resp(BE, &[("b", 2)], &[]),
                        resp(EP, &[("b", 2)], &[]),
                        resp(CERT, &[("c", 2)], &[]),
                        resp(RC, &[("r", 2)], &["old"]),
                        // Removals: referrers before what they refer to.
                        resp(CERT, &[], &["old"]),
                        resp(BE, &[], &["old"]),
                        resp(EP, &[], &["old"]),
                        resp(RP, &[], &["old"]),
                    ],
                    None,
                ),
                AckAll(Some(2)),
            ],
        ),
        scenario(
            "nacked resources are listed and not resent until they change",
            vec![
                Cache(vec![put(BE, "a", 1), put(BE, "b", 1)]),
                r(open(BE)),
                Push(vec![resp(BE, &[("a", 1), ("b", 1)], &[])], None),
                r(req(BE)
                    .nack(0, &[("a", "no such protocol")])
                    .applied(1)
                    .rejections_changed()),
                Rejections(vec![(BE, "a", 1, "no such protocol")]),
                Cache(vec![put(BE, "b", 2)]),
                Push(vec![resp(BE, &[("b", 2)], &[])], None),
                AckAll(Some(2)),
                Rejections(vec![(BE, "a", 1, "no such protocol")]),
                Cache(vec![put(BE, "a", 2)]),
                Push(vec![resp(BE, &[("a", 2)], &[])], None),
                r(req(BE).ack(0).applied(3).rejections_changed()),
                Rejections(vec![]),
            ],
        ),
        scenario(
            "a rejection clears once the resource is removed",
            vec![
                Cache(vec![put(BE, "a", 1), put(BE, "b", 1)]),
                r(open(BE)),
                Push(vec![resp(BE, &[("a", 1), ("b", 1)], &[])], None),
                r(req(BE)
                    .nack(0, &[("a", "bad")])
                    .applied(1)
                    .rejections_changed()),
                Cache(vec![del(BE, "a")]),
                Push(vec![resp(BE, &[], &["a"])], None),
                r(req(BE).ack(0).applied(2).rejections_changed()),
                Rejections(vec![]),
            ],
        ),
        scenario(
            "a rejection clears once the name is unsubscribed",
            vec![
                Cache(vec![put(BE, "a", 1)]),
                r(req(BE).sub(&["a"])),
                Push(vec![resp(BE, &[("a", 1)], &[])], None),
                r(req(BE)
                    .nack(0, &[("a", "bad")])
                    .applied(1)
                    .rejections_changed()),
                Rejections(vec![(BE, "a", 1, "bad")]),
                r(req(BE).unsub(&["a"]).rejections_changed()),
                Rejections(vec![]),
                Push(vec![], None),
            ],
        ),
        scenario(
            "a nack without a list rejects the whole response",
            vec![
                Cache(vec![put(BE, "a", 1), put(BE, "b", 1), put(RC, "r", 1)]),
                r(open(BE)),
                r(open(RC)),
                Push(
                    vec![
                        resp(BE, &[("a", 1), ("b", 1)], &[]),
                        resp(RC, &[("r", 1)], &[]),
                    ],
                    None,
                ),
                r(req(BE).nack_whole(0, "garbled").rejections_changed()),
                r(req(RC).ack(1).applied(1)),
                Rejections(vec![(BE, "a", 1, "garbled"), (BE, "b", 1, "garbled")]),
                Push(vec![], None),
            ],
        ),
        scenario(
            "subscription changes apply even with a stale or unknown nonce",
            vec![
                Cache(vec![put(BE, "a", 1), put(BE, "b", 1)]),
                r(req(BE).sub(&["a"])),
                Push(vec![resp(BE, &[("a", 1)], &[])], None),
                // An unknown nonce neither completes the push nor blocks the subscription.
                r(req(BE).sub(&["b"]).unknown_nonce()),
                Push(vec![], None),
                r(req(BE).ack(0).applied(1)),
                Push(vec![resp(BE, &[("b", 1)], &[])], None),
                // An ACK of a response already answered, carrying a subscription.
                r(req(BE).sub(&["c"]).ack(0).applied(1)),
                Push(vec![resp(BE, &[], &["c"])], None),
                AckAll(Some(1)),
            ],
        ),
        scenario(
            "reconnect sends only what changed and removes what vanished",
            vec![
                Cache(vec![
                    put(BE, "same", 1),
                    put(BE, "changed", 2),
                    put(BE, "new", 3),
                    put(RC, "same", 1),
                ]),
                r(open(BE).initial(&[("same", 1), ("changed", 1), ("vanished", 1)])),
                r(open(RC).initial(&[("same", 1), ("vanished", 1)])),
                Push(
                    vec![
                        resp(BE, &[("changed", 2), ("new", 3)], &[]),
                        resp(RC, &[], &["vanished"]),
                        resp(BE, &[], &["vanished"]),
                    ],
                    None,
                ),
                AckAll(Some(1)),
            ],
        ),
        scenario(
            "reconnect with everything equal gets empty opening responses",
            vec![
                Cache(vec![put(BE, "a", 1), put(RC, "r", 1)]),
                r(open(BE).initial(&[("a", 1)])),
                r(open(RC).initial(&[("r", 1)])),
                Push(vec![resp(BE, &[], &[]), resp(RC, &[], &[])], None),
                AckAll(Some(1)),
            ],
        ),
        scenario(
            "reconnect removes names held but no longer subscribed",
            vec![
                Cache(vec![put(BE, "a", 1), put(BE, "b", 1)]),
                r(req(BE).sub(&["a"]).initial(&[("a", 1), ("b", 1)])),
                Push(
                    vec![resp(BE, &[("a", 1)], &[]), resp(BE, &[], &["b"])],
                    None,
                ),
                AckAll(Some(1)),
            ],
        ),
        scenario(
            "a change to a type never opened sends nothing and still advances applied",
            vec![
                r(open(BE)),
                Push(vec![resp(BE, &[], &[])], None),
                AckAll(Some(0)),
                Cache(vec![put(CERT, "c", 1)]),
                Push(vec![], Some(1)),
                Push(vec![], None),
                // Opened later: everything of that type is compared then.
                r(open(CERT)),
                Push(vec![resp(CERT, &[("c", 1)], &[])], None),
                AckAll(Some(1)),
            ],
        ),
        scenario(
            "removing a resource the proxy never had sends nothing",
            vec![
                Cache(vec![put(BE, "a", 1), put(BE, "b", 1)]),
                r(req(BE).sub(&["a"])),
                Push(vec![resp(BE, &[("a", 1)], &[])], None),
                AckAll(Some(1)),
                Cache(vec![del(BE, "b")]),
                Push(vec![], Some(2)),
            ],
        ),
    ]
}

#[test]
fn session_scenarios() {
    let all = scenarios();
    let mut names = HashSet::new();
    for s in &all {
        assert!(names.insert(s.name), "scenario {} twice", s.name);
    }
    let mut failed = Vec::new();
    for s in &all {
        if std::panic::catch_unwind(|| run(s)).is_err() {
            failed.push(s.name);
        }
    }
    assert!(failed.is_empty(), "failed scenarios: {failed:#?}");
}

#[test]
fn node_is_read_from_the_first_request_that_names_it() {
    let mut session = ServerSession::new("n");
    assert!(session.node().is_none());
    session.on_request(DeltaRequest::default());
    assert!(session.node().is_none());
    let node = |id: &str| Node {
        id: id.into(),
        metadata: BTreeMap::new(),
    };
    session.on_request(DeltaRequest {
        type_: Some(BE),
        node: Some(node("first")),
        ..DeltaRequest::default()
    });
    session.on_request(DeltaRequest {
        type_: Some(RC),
        node: Some(node("second")),
        ..DeltaRequest::default()
    });
    assert_eq!(session.node().map(|n| n.id.as_str()), Some("first"));
}

#[test]
fn responses_are_chunked_at_max_per_response() {
    let mut h = Harness::new();
    let name = |prefix: &str, i: usize| format!("{prefix}{i:05}");
    let backends = 2 * MAX_PER_RESPONSE + 500;
    let vanished_backends = 300;
    let routes = MAX_PER_RESPONSE + 500;
    let vanished_routes = 700;
    let mut changes = Vec::new();
    for i in 0..backends {
        changes.push(put(BE, &name("b", i), 1));
    }
    for i in 0..routes {
        changes.push(put(RC, &name("r", i), 1));
    }
    h.cache.apply(changes);
    let held = |prefix: &str, n: usize, type_: ResourceType| -> BTreeMap<String, String> {
        (0..n)
            .map(|i| (name(prefix, i), version(type_, 2)))
            .collect()
    };
    for (type_, initial) in [
        (BE, held("gone", vanished_backends, BE)),
        (RC, held("gone", vanished_routes, RC)),
    ] {
        h.session.on_request(DeltaRequest {
            type_: Some(type_),
            subscribe: vec!["*".into()],
            initial_versions: initial,
            ..DeltaRequest::default()
        });
    }
    let (responses, _) = h.push("chunking");
    let shape: Vec<(ResourceType, usize, usize)> = responses
        .iter()
        .map(|r| (r.type_, r.resources.len(), r.removed.len()))
        .collect();
    assert_eq!(
        shape,
        vec![
            (BE, MAX_PER_RESPONSE, 0),
            (BE, MAX_PER_RESPONSE, 0),
            (BE, 500, 0),
            (RC, MAX_PER_RESPONSE, 0),
            (RC, 500, 500),
            (RC, 0, 200),
            (BE, 0, vanished_backends),
        ]
    );
    // Every name exactly once, in name order within a type.
    let sent: Vec<&str> = responses
        .iter()
        .filter(|r| r.type_ == BE)
        .flat_map(|r| r.resources.iter().map(|n| n.name.as_str()))
        .collect();
    let want: Vec<String> = (0..backends).map(|i| name("b", i)).collect();
    assert_eq!(sent, want);
    // The push completes only when every chunk is answered.
    let count = responses.len();
    for (i, response) in responses.iter().enumerate() {
        let progress = h.session.on_request(DeltaRequest {
            type_: Some(response.type_),
            response_nonce: Some(response.nonce.clone()),
            ..DeltaRequest::default()
        });
        let want = (i + 1 == count).then_some(1);
        assert_eq!(progress.applied, want, "ack {i}");
    }
}

#[test]
fn session_behind_the_cache_log_compares_everything_once() {
    let mut h = Harness::new();
    h.cache.apply([put(BE, "a", 1), put(BE, "b", 1)]);
    h.request(&open(BE));
    let (first, _) = h.push("open");
    assert_eq!(summary(&first), vec![resp(BE, &[("a", 1), ("b", 1)], &[])]);
    // While the push is in flight the log moves on past what the session has seen.
    for i in 0..(crate::cache::MIN_LOG as u32 + 10) {
        h.cache.apply([put(BE, "a", 2 + i % 2)]);
    }
    h.cache.apply([put(BE, "c", 1)]);
    let seq = h.cache.seq();
    assert!(h.cache.changes_since(1).is_none());
    let progress = h.request(&req(BE).ack(0));
    assert_eq!(progress.applied, Some(1));
    let (next, _) = h.push("catch up");
    let a_now = id_of(&h.cache.get(BE, "a").expect("a").resource);
    assert_eq!(
        summary(&next),
        vec![resp(BE, &[("a", a_now), ("c", 1)], &[])]
    );
    let progress = h.request(&req(BE).ack(0));
    assert_eq!(progress.applied, Some(seq));
}
