use super::*;
use crate::load::RevisionLoad;
use crate::model::{Backend, Protocol, Resource, RouteConfig, Target};
use crate::protocol::NamedResource;
use std::sync::Mutex;

const BE: ResourceType = ResourceType::Backend;
const RC: ResourceType = ResourceType::RouteConfig;

/// A data plane that records what it is given, refuses chosen names, and holds the rest as a
/// real one does (a refused resource keeps its previous version).
pub(crate) struct FakePlane {
    state: Mutex<PlaneState>,
    applied: mpsc::UnboundedSender<Vec<DeltaResponse>>,
    notify: Notify,
}

#[derive(Default)]
struct PlaneState {
    batches: Vec<Vec<DeltaResponse>>,
    /// name → why it is refused.
    refuse: BTreeMap<String, String>,
    loads_taken: u32,
    pokes: Vec<RevisionLoad>,
    held: BTreeMap<ResourceType, BTreeMap<String, String>>,
}

impl FakePlane {
    /// The plane, and every batch it applies as it applies it.
    pub(crate) fn new() -> (Arc<FakePlane>, mpsc::UnboundedReceiver<Vec<DeltaResponse>>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let plane = FakePlane {
            state: Mutex::new(PlaneState::default()),
            applied: tx,
            notify: Notify::new(),
        };
        (Arc::new(plane), rx)
    }

    pub(crate) fn refuse(&self, name: &str, reason: &str) {
        let mut state = self.state.lock().expect("plane lock");
        state.refuse.insert(name.to_string(), reason.to_string());
    }

    /// A request arrived for a Revision at zero.
    pub(crate) fn poke(&self, revision: &str) {
        self.state
            .lock()
            .expect("plane lock")
            .pokes
            .push(RevisionLoad {
                revision: revision.to_string(),
                concurrency: 1.0,
                requests: 1.0,
                held: 0,
            });
        self.notify.notify_one();
    }

    pub(crate) fn batches(&self) -> Vec<Vec<DeltaResponse>> {
        self.state.lock().expect("plane lock").batches.clone()
    }

    /// The report `take_load` returns the `n`th time it is called (from 1).
    pub(crate) fn load_report(n: u32) -> LoadReport {
        LoadReport {
            interval_ms: 1000,
            revisions: vec![RevisionLoad {
                revision: "ns/rev".into(),
                concurrency: f64::from(n),
                requests: 0.0,
                held: 0,
            }],
        }
    }
}

impl DataPlane for FakePlane {
    fn apply(&self, responses: &[DeltaResponse]) -> Vec<Result<(), Rejection>> {
        let mut state = self.state.lock().expect("plane lock");
        state.batches.push(responses.to_vec());
        // The receiver may be gone when a test looks only at `batches`.
        let _ = self.applied.send(responses.to_vec());
        responses
            .iter()
            .map(|response| {
                let refused: Vec<RejectedResource> = response
                    .resources
                    .iter()
                    .filter_map(|r| {
                        state
                            .refuse
                            .get(&r.name)
                            .map(|reason| rejected(r.name.clone(), reason.clone()))
                    })
                    .collect();
                let held = state.held.entry(response.type_).or_default();
                for resource in &response.resources {
                    if !refused.iter().any(|r| r.name == resource.name) {
                        held.insert(resource.name.clone(), resource.version.clone());
                    }
                }
                for name in &response.removed {
                    held.remove(name);
                }
                if refused.is_empty() {
                    Ok(())
                } else {
                    Err(Rejection::new(refused))
                }
            })
            .collect()
    }

    fn held(&self, type_: ResourceType) -> BTreeMap<String, String> {
        let state = self.state.lock().expect("plane lock");
        state.held.get(&type_).cloned().unwrap_or_default()
    }

    fn take_load(&self) -> LoadReport {
        let mut state = self.state.lock().expect("plane lock");
        state.loads_taken += 1;
        FakePlane::load_report(state.loads_taken)
    }

    fn take_pokes(&self) -> Poke {
        let mut state = self.state.lock().expect("plane lock");
        Poke {
            revisions: std::mem::take(&mut state.pokes),
        }
    }

    fn poke_notify(&self) -> &Notify {
        &self.notify
    }
}

pub(crate) fn backend(port: u16) -> Resource {
    Resource::Backend(Backend {
        protocol: Protocol::Http1,
        target: Target::Dns {
            host: "example.com".into(),
            port,
        },
        revision: None,
    })
}

pub(crate) fn route(owner: &str) -> Resource {
    Resource::RouteConfig(RouteConfig {
        owner: owner.into(),
        ..RouteConfig::default()
    })
}

fn response(
    type_: ResourceType,
    nonce: &str,
    resources: Vec<NamedResource>,
    removed: &[&str],
) -> DeltaResponse {
    DeltaResponse {
        type_,
        nonce: nonce.into(),
        system_version: "1".into(),
        resources,
        removed: removed.iter().map(|s| s.to_string()).collect(),
        invalid: vec![],
        push_continues: false,
    }
}

fn node() -> Node {
    Node {
        id: "proxy-0".into(),
        metadata: BTreeMap::new(),
    }
}

fn held(plane: &FakePlane, type_: ResourceType) -> Vec<(String, String)> {
    plane.held(type_).into_iter().collect()
}

/// What an answer says: the nonce, and the names it refuses (`None`: an ACK; empty: all).
fn verdicts(acks: &[DeltaRequest]) -> Vec<(String, Option<Vec<String>>)> {
    acks.iter()
        .map(|a| {
            (
                a.response_nonce.clone().expect("answers carry the nonce"),
                a.error
                    .as_ref()
                    .map(|e| e.resources.iter().map(|r| r.name.clone()).collect()),
            )
        })
        .collect()
}

#[test]
fn opening_requests_subscribe_to_everything_and_carry_what_is_held() {
    let (plane, _applied) = FakePlane::new();
    let mut state = ClientState::new(node(), vec![BE, RC]);
    let first = state.opening_requests(plane.as_ref());
    assert_eq!(first.len(), 2);
    for (request, type_) in first.iter().zip([BE, RC]) {
        assert_eq!(request.type_, Some(type_));
        assert_eq!(request.subscribe, vec!["*".to_string()]);
        assert!(request.unsubscribe.is_empty());
        assert!(request.initial_versions.is_empty());
        assert!(request.response_nonce.is_none() && request.error.is_none());
    }
    // Only the first request of a stream names the node.
    assert_eq!(first[0].node, Some(node()));
    assert_eq!(first[1].node, None);

    // a and b are applied at v1; then b's v2 and the new c are refused, d is removed.
    plane.refuse("c", "bad port");
    let a = NamedResource::new("a", backend(1));
    let b1 = NamedResource::new("b", backend(1));
    let d = NamedResource::new("d", backend(4));
    state.handle(
        vec![
            response(BE, "n1", vec![a.clone(), b1.clone(), d], &[]),
            response(RC, "n2", vec![NamedResource::new("r", route("o"))], &[]),
        ],
        plane.as_ref(),
    );
    plane.refuse("b", "bad port");
    let b2 = NamedResource::new("b", backend(2));
    let c = NamedResource::new("c", backend(3));
    let acks = state.handle(
        vec![response(BE, "n3", vec![b2, c], &["d"])],
        plane.as_ref(),
    );
    assert_eq!(
        verdicts(&acks),
        vec![("n3".into(), Some(vec!["b".into(), "c".into()]))]
    );

    // After a reconnect: what the data plane holds, the refused versions left out.
    let again = state.opening_requests(plane.as_ref());
    assert_eq!(
        again[0].initial_versions,
        BTreeMap::from([
            ("a".to_string(), a.version.clone()),
            ("b".to_string(), b1.version.clone()),
        ])
    );
    assert_eq!(again[1].initial_versions.len(), 1);
    assert_eq!(again[0].node, Some(node()));
}

#[test]
fn every_response_of_a_batch_gets_its_own_ack_or_nack() {
    let (plane, _applied) = FakePlane::new();
    plane.refuse("bad", "no such protocol");
    let mut state = ClientState::new(node(), vec![BE, RC]);
    let batch = vec![
        response(
            BE,
            "n1",
            vec![
                NamedResource::new("bad", backend(1)),
                NamedResource::new("good", backend(2)),
            ],
            &[],
        ),
        response(RC, "n2", vec![NamedResource::new("r", route("o"))], &[]),
        response(BE, "n3", vec![NamedResource::new("other", backend(3))], &[]),
    ];
    let acks = state.handle(batch.clone(), plane.as_ref());
    assert_eq!(
        verdicts(&acks),
        vec![
            ("n1".into(), Some(vec!["bad".into()])),
            ("n2".into(), None),
            ("n3".into(), None),
        ]
    );
    let types: Vec<_> = acks.iter().map(|a| a.type_).collect();
    assert_eq!(types, vec![Some(BE), Some(RC), Some(BE)]);
    let nack = acks[0].error.as_ref().expect("a nack");
    assert_eq!(nack.message, "bad: no such protocol");
    // The batch reached the data plane once, whole.
    assert_eq!(plane.batches(), vec![batch]);
    let names: Vec<String> = held(&plane, BE).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, vec!["good".to_string(), "other".to_string()]);
}

#[test]
fn response_naming_a_resource_twice_is_refused_whole_and_not_applied() {
    let (plane, _applied) = FakePlane::new();
    let mut state = ClientState::new(node(), vec![BE, RC]);
    let keep = NamedResource::new("keep", backend(1));
    state.handle(
        vec![response(BE, "n0", vec![keep.clone()], &[])],
        plane.as_ref(),
    );
    let twice = response(
        BE,
        "n1",
        vec![
            NamedResource::new("a", backend(1)),
            NamedResource::new("a", backend(2)),
        ],
        &["keep"],
    );
    let fine = response(RC, "n2", vec![NamedResource::new("r", route("o"))], &[]);
    let acks = state.handle(vec![twice, fine.clone()], plane.as_ref());
    assert_eq!(
        verdicts(&acks),
        vec![("n1".into(), Some(vec![])), ("n2".into(), None)]
    );
    let nack = acks[0].error.as_ref().expect("a nack");
    assert!(nack.message.contains("a appears twice"), "{}", nack.message);
    // Only the good response reached the data plane; nothing of the refused one is held,
    // and its removal was not applied either.
    assert_eq!(plane.batches().last(), Some(&vec![fine]));
    assert_eq!(held(&plane, BE), vec![("keep".to_string(), keep.version)]);
}

#[test]
fn undecodable_resources_are_nacked_with_what_the_data_plane_refused() {
    let undecodable = || vec![rejected("x", "cannot decode")];
    let table: [(&str, Option<&str>, Vec<&str>); 2] = [
        ("only undecodable resources", None, vec!["x"]),
        ("undecodable and refused", Some("b"), vec!["b", "x"]),
    ];
    for (case, refuse, want) in table {
        let (plane, _applied) = FakePlane::new();
        if let Some(name) = refuse {
            plane.refuse(name, "bad port");
        }
        let mut state = ClientState::new(node(), vec![BE]);
        let mut with_invalid = response(
            BE,
            "n1",
            vec![
                NamedResource::new("a", backend(1)),
                NamedResource::new("b", backend(2)),
            ],
            &[],
        );
        with_invalid.invalid = undecodable();
        let acks = state.handle(vec![with_invalid], plane.as_ref());
        let want: Vec<String> = want.into_iter().map(String::from).collect();
        assert_eq!(verdicts(&acks), vec![("n1".into(), Some(want))], "{case}");
        let nack = acks[0].error.as_ref().expect("a nack");
        assert!(nack.message.contains("x: cannot decode"), "{case}");
        assert!(
            held(&plane, BE).iter().any(|(n, _)| n == "a"),
            "{case}: the rest applies"
        );
    }
}

#[test]
fn removals_drop_what_is_held() {
    let (plane, _applied) = FakePlane::new();
    let mut state = ClientState::new(node(), vec![BE]);
    state.handle(
        vec![response(
            BE,
            "n1",
            vec![
                NamedResource::new("a", backend(1)),
                NamedResource::new("b", backend(2)),
            ],
            &[],
        )],
        plane.as_ref(),
    );
    let acks = state.handle(
        vec![response(BE, "n2", vec![], &["a", "never-held"])],
        plane.as_ref(),
    );
    assert_eq!(verdicts(&acks), vec![("n2".into(), None)]);
    let names: Vec<String> = held(&plane, BE).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, vec!["b".to_string()]);
}

#[test]
fn ready_only_once_every_type_had_a_first_response() {
    let (plane, _applied) = FakePlane::new();
    plane.refuse("bad", "bad port");
    let mut state = ClientState::new(node(), vec![BE, RC]);
    state.opening_requests(plane.as_ref());
    assert!(!state.ready());
    // Two responses of one type are not a response of each.
    state.handle(vec![response(BE, "n1", vec![], &[])], plane.as_ref());
    state.handle(vec![response(BE, "n2", vec![], &[])], plane.as_ref());
    assert!(!state.ready());
    // An empty first response counts; so does one that is partly refused (the controller
    // would not resend it until it changes, and the rest of it applied).
    state.handle(
        vec![response(
            RC,
            "n3",
            vec![NamedResource::new("bad", route("o"))],
            &[],
        )],
        plane.as_ref(),
    );
    assert!(state.ready());
    // Readiness is not lost on a reconnect: the last config keeps serving.
    state.opening_requests(plane.as_ref());
    assert!(state.ready());
}

#[test]
fn a_first_push_in_several_responses_is_ready_only_after_its_last() {
    let (plane, _applied) = FakePlane::new();
    let mut state = ClientState::new(node(), vec![BE, RC]);
    state.opening_requests(plane.as_ref());
    let part = |type_, nonce: &str, name: &str, push_continues| DeltaResponse {
        push_continues,
        ..response(
            type_,
            nonce,
            vec![NamedResource::new(
                name,
                if type_ == RC {
                    route(name)
                } else {
                    backend(80)
                },
            )],
            &[],
        )
    };
    // Every type has had a response, but the push goes on: not ready, and the parts that came
    // are applied and acknowledged all the same.
    let acks = state.handle(
        vec![part(BE, "n1", "b", true), part(RC, "n2", "r1", true)],
        plane.as_ref(),
    );
    assert_eq!(verdicts(&acks).len(), 2);
    assert!(!state.ready());
    assert_eq!(held(&plane, RC).len(), 1);
    state.handle(vec![part(RC, "n3", "r2", false)], plane.as_ref());
    assert!(state.ready());
    assert_eq!(held(&plane, RC).len(), 2);

    // A stream that broke mid-push does not leave a fresh stream waiting for the rest of it.
    let mut state = ClientState::new(node(), vec![BE]);
    state.opening_requests(plane.as_ref());
    state.handle(vec![part(BE, "n1", "b", true)], plane.as_ref());
    assert!(!state.ready());
    state.opening_requests(plane.as_ref());
    state.handle(vec![part(BE, "m1", "b", false)], plane.as_ref());
    assert!(state.ready());
}

#[test]
fn backoff_doubles_from_the_minimum_to_the_maximum_with_jitter_in_the_upper_half() {
    let options = ClientOptions::new(node(), vec![BE]);
    assert_eq!(options.backoff_min, Duration::from_millis(10));
    assert_eq!(options.backoff_max, Duration::from_secs(15));
    let ms = Duration::from_millis;
    let table: [(u32, Duration); 9] = [
        // After a stream that delivered: from the minimum again.
        (0, ms(10)),
        (1, ms(20)),
        (2, ms(40)),
        (3, ms(80)),
        (10, ms(10_240)),
        (11, ms(15_000)),
        (12, ms(15_000)),
        (100, ms(15_000)),
        (u32::MAX, ms(15_000)),
    ];
    for (failures, ceiling) in table {
        let mut seen = BTreeSet::new();
        for _ in 0..200 {
            let delay = backoff(&options, failures);
            assert!(
                delay >= ceiling / 2 && delay <= ceiling,
                "after {failures} failures: {delay:?} outside [{:?}, {ceiling:?}]",
                ceiling / 2
            );
            seen.insert(delay);
        }
        assert!(seen.len() > 1, "after {failures} failures: no jitter");
    }
}
