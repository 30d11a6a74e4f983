use super::*;
use crate::autoscaler::config::Metric;
use std::collections::BTreeMap;

/// Knative's defaults, cc = 0: target 100 × 0.7 = 70 per pod, stable window 60 s, panic
/// window 6 s, panic at 200 %, grace 30 s, initial scale 1.
fn defaults() -> (RevisionScaling, AutoscalerConfig) {
    let config = AutoscalerConfig::default();
    let spec = RevisionScaling::resolve(&BTreeMap::new(), 0, &config).expect("spec");
    assert_eq!(spec.target_value, 70.0);
    (spec, config)
}

/// `value` at every second in `range`.
fn load(points: &mut Vec<TracePoint>, range: std::ops::RangeInclusive<u64>, value: f64) {
    points.extend(range.map(|second| TracePoint {
        second,
        concurrency: value,
        ready: None,
    }));
}

fn row(
    second: u64,
    desired: i32,
    decided: i32,
    ready: u32,
    stable: f64,
    panic: f64,
    panicking: bool,
) -> SimRow {
    SimRow {
        second,
        desired,
        decided,
        stable,
        panic,
        panicking,
        ready,
    }
}

fn at(rows: &[SimRow], second: u64) -> &SimRow {
    rows.iter()
        .find(|r| r.second == second)
        .expect("a row for every tick")
}

/// 60 s at concurrency 140 (two pods' worth at target 70), then 100 s idle with explicit
/// zeros. Every value is hand-computable:
/// - t=2: partial window, both averages 140 → 2 pods; 2 pods / 1 ready ≥ 200 % → panic;
/// - t=62: stable window 3..62 = 58 × 140 / 60, panic window 57..62 = 4 × 140 / 6;
/// - t=64: panic ends (entered at 2, not renewed since 2 ready pods: 2 + 60 < 64);
/// - stable = (120 − t) × 140 / 60 decays; ⌈stable / 70⌉ reaches 1 at t=90 and 0 at t=120;
/// - at t=120 the PA (active since t=2, for longer than the stable window) turns inactive and
///   keeps its pod; 30 s of grace later, t=150, it scales to zero.
#[test]
fn steady_load_scales_to_two_then_idle_scales_to_zero() {
    let (spec, config) = defaults();
    let mut trace = Vec::new();
    load(&mut trace, 1..=60, 140.0);
    load(&mut trace, 61..=160, 0.0);
    let rows = simulate(&trace, &spec, &config);
    assert_eq!(rows.len(), 80);

    let key_rows = [
        row(2, 2, 2, 1, 140.0, 140.0, true),
        row(4, 2, 2, 2, 140.0, 140.0, true),
        row(60, 2, 2, 2, 140.0, 140.0, true),
        row(62, 2, 2, 2, 135.333333, 93.333333, true),
        row(64, 2, 2, 2, 130.666667, 46.666667, false),
        row(66, 2, 2, 2, 126.0, 0.0, false),
        row(88, 2, 2, 2, 74.666667, 0.0, false),
        row(90, 1, 1, 2, 70.0, 0.0, false),
        row(92, 1, 1, 1, 65.333333, 0.0, false),
        row(118, 1, 1, 1, 4.666667, 0.0, false),
        row(120, 1, 0, 1, 0.0, 0.0, false),
        row(148, 1, 0, 1, 0.0, 0.0, false),
        row(150, 0, 0, 1, 0.0, 0.0, false),
        row(152, 0, 0, 0, 0.0, 0.0, false),
        row(160, 0, 0, 0, 0.0, 0.0, false),
    ];
    for want in &key_rows {
        assert_eq!(at(&rows, want.second), want);
    }

    // Every row, from the closed forms above.
    for r in &rows {
        let t = r.second;
        let stable = match t {
            0..=60 => 140.0,
            61..=119 => round_to_digits(6, ((120 - t) * 140) as f64 / 60.0),
            _ => 0.0,
        };
        let decided = match t {
            0..=89 => 2,
            90..=119 => 1,
            _ => 0,
        };
        let desired = match t {
            0..=89 => 2,
            90..=149 => 1,
            _ => 0,
        };
        assert_eq!(r.stable, stable, "stable at {t}");
        assert_eq!(r.decided, decided, "decided at {t}");
        assert_eq!(r.desired, desired, "desired at {t}");
        assert_eq!(r.panicking, t <= 62, "panicking at {t}");
    }

    let csv = render_csv(&rows);
    let head: Vec<&str> = csv.lines().take(3).collect();
    assert_eq!(
        head,
        [
            "second,desired,stable,panic,panicking",
            "2,2,140,140,true",
            "4,2,140,140,true"
        ]
    );
    assert!(csv.contains("\n62,2,135.333333,93.333333,true\n"));
    assert!(csv.contains("\n64,2,130.666667,46.666667,false\n"));
    assert!(csv.contains("\n150,0,0,0,false\n"));
}

/// A steady single pod (70 = one pod's target), then a 6 s spike to 350:
/// - t=32: panic window 27..32 = (4 × 70 + 2 × 350) / 6 = 163.33 → 3 pods for 1 ready → panic;
///   stable 1..32 = (30 × 70 + 2 × 350) / 32 = 87.5 → 2 pods; panic takes the larger: 3;
/// - t=34, 36: panic averages 256.67 and 350 → 4 and 5 pods (below 200 % of the now-ready
///   pods, so panic is not renewed), and the scale only grows;
/// - t=38..92: the spike leaves the panic window but panic holds 5 pods until it has not
///   been renewed for a stable window (32 + 60 < t: t=94);
/// - t=94: stable 35..94 = (2 × 350 + 58 × 70) / 60 = 79.33 → 2 pods, within the 2× scale-down
///   limit of 5 ready; t=96: 70 → 1 pod.
#[test]
fn a_spike_triggers_panic_which_holds_the_scale_for_a_stable_window() {
    let (spec, config) = defaults();
    let mut trace = Vec::new();
    load(&mut trace, 1..=30, 70.0);
    load(&mut trace, 31..=36, 350.0);
    load(&mut trace, 37..=100, 70.0);
    let rows = simulate(&trace, &spec, &config);

    let key_rows = [
        row(2, 1, 1, 1, 70.0, 70.0, false),
        row(30, 1, 1, 1, 70.0, 70.0, false),
        row(32, 3, 3, 1, 87.5, 163.333333, true),
        row(34, 4, 4, 3, 102.941176, 256.666667, true),
        row(36, 5, 5, 4, 116.666667, 350.0, true),
        row(38, 5, 5, 5, 114.210526, 256.666667, true),
        row(92, 5, 5, 5, 88.666667, 70.0, true),
        row(94, 2, 2, 5, 79.333333, 70.0, false),
        row(96, 1, 1, 2, 70.0, 70.0, false),
        row(100, 1, 1, 1, 70.0, 70.0, false),
    ];
    for want in &key_rows {
        assert_eq!(at(&rows, want.second), want);
    }
    for r in &rows {
        let t = r.second;
        let (desired, panicking) = match t {
            0..=30 => (1, false),
            32 => (3, true),
            34 => (4, true),
            36..=92 => (5, true),
            94 => (2, false),
            _ => (1, false),
        };
        assert_eq!((r.desired, r.panicking), (desired, panicking), "at {t}");
    }
}

/// No traffic at all: the initial pod becomes ready, the PA turns active at the first tick,
/// inactive a stable window later, and the pod goes after the grace period: 2 + 60 + 30.
#[test]
fn an_idle_revision_scales_to_zero_after_stable_window_plus_grace() {
    let (spec, config) = defaults();
    let mut trace = Vec::new();
    load(&mut trace, 1..=100, 0.0);
    let rows = simulate(&trace, &spec, &config);
    for r in &rows {
        assert_eq!(r.decided, 0, "at {}", r.second);
        let want = if r.second < 92 { 1 } else { 0 };
        assert_eq!(r.desired, want, "at {}", r.second);
    }
}

#[test]
fn pinned_ready_pods_feed_the_decision() {
    let (spec, config) = defaults();
    let trace = parse_trace(
        "# cold start: no pod ready for 4 s\n1,140,0\n2,140,0\n3,140\n4,140,0\n5,140\n6,140\n",
    )
    .expect("trace");
    let rows = simulate(&trace, &spec, &config);
    let ready: Vec<u32> = rows.iter().map(|r| r.ready).collect();
    assert_eq!(ready, [0, 0, 2]);
    // Zero ready pods count as one for the rate limits; 2 pods for 1 is panic.
    assert_eq!(rows[0].desired, 2);
    assert!(rows[0].panicking);
}

#[test]
fn the_trace_drives_an_rps_revision_too() {
    let config = AutoscalerConfig::default();
    let mut annotations = BTreeMap::new();
    annotations.insert(
        "autoscaling.knative.dev/metric".to_string(),
        "rps".to_string(),
    );
    let spec = RevisionScaling::resolve(&annotations, 0, &config).expect("spec");
    assert_eq!((spec.metric, spec.target_value), (Metric::Rps, 140.0));
    let mut trace = Vec::new();
    load(&mut trace, 1..=10, 420.0);
    let rows = simulate(&trace, &spec, &config);
    assert_eq!(rows[0].decided, 3);
}

#[test]
fn an_empty_trace_simulates_nothing() {
    let (spec, config) = defaults();
    assert!(simulate(&[], &spec, &config).is_empty());
}

#[test]
fn traces_parse_with_comments_header_and_optional_ready() {
    let text =
        "# a comment\n\nsecond,concurrency,ready\n1, 2.5\n2,3,1\n  # indented comment\n4,0,\r\n";
    let trace = parse_trace(text).expect("valid");
    assert_eq!(
        trace,
        [
            TracePoint {
                second: 1,
                concurrency: 2.5,
                ready: None
            },
            TracePoint {
                second: 2,
                concurrency: 3.0,
                ready: Some(1)
            },
            TracePoint {
                second: 4,
                concurrency: 0.0,
                ready: None
            },
        ]
    );
}

#[test]
fn bad_trace_lines_are_reported_by_number() {
    let cases: &[(&str, &str)] = &[
        (
            "1,2\n2\n",
            "trace line 2: expected second,concurrency[,ready], got 1 fields",
        ),
        (
            "1,2,3,4\n",
            "trace line 1: expected second,concurrency[,ready], got 4 fields",
        ),
        (
            "# c\n-1,2\n",
            "trace line 2: second \"-1\" is not a whole number",
        ),
        (
            "1,2\nx,3\n",
            "trace line 2: second \"x\" is not a whole number",
        ),
        (
            "1,-2\n",
            "trace line 1: concurrency \"-2\" is not a number of at least 0",
        ),
        (
            "1,NaN\n",
            "trace line 1: concurrency \"NaN\" is not a number of at least 0",
        ),
        (
            "1,2,many\n",
            "trace line 1: ready \"many\" is not a whole number",
        ),
        ("5,2\n5,3\n", "trace line 2: second 5 does not come after 5"),
        (
            "5,2\n\n3,3\n",
            "trace line 3: second 3 does not come after 5",
        ),
        ("# only comments\n", "trace: no samples"),
        ("second,concurrency\n", "trace: no samples"),
    ];
    for &(text, want) in cases {
        let err = parse_trace(text).expect_err(want);
        assert_eq!(err.to_string(), want);
    }
}

fn sample_rows() -> Vec<SimRow> {
    vec![
        row(2, 2, 2, 1, 140.0, 140.0, true),
        row(4, 2, 2, 2, 135.3333333333, 93.3333333333, false),
    ]
}

#[test]
fn csv_has_the_documented_columns() {
    assert_eq!(
        render_csv(&sample_rows()),
        "second,desired,stable,panic,panicking\n2,2,140,140,true\n4,2,135.333333,93.333333,false\n"
    );
}

#[test]
fn table_is_aligned() {
    assert_eq!(
        render_table(&sample_rows()),
        "second  desired  decided  ready      stable       panic  panic\n\
         \x20    2        2        2      1     140.000     140.000  yes\n\
         \x20    4        2        2      2     135.333      93.333  -\n"
    );
}

#[test]
fn svg_is_self_contained_with_every_series() {
    let (spec, config) = defaults();
    let mut trace = Vec::new();
    load(&mut trace, 1..=30, 70.0);
    load(&mut trace, 31..=36, 350.0);
    load(&mut trace, 37..=100, 70.0);
    let rows = simulate(&trace, &spec, &config);
    let svg = render_svg(&trace, &rows);
    assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
    assert!(svg.trim_end().ends_with("</svg>"));
    for class in ["concurrency", "stable", "panic", "desired", "ready"] {
        assert_eq!(
            svg.matches(&format!("<polyline class=\"{class}\"")).count(),
            1,
            "{class}"
        );
    }
    // One shaded band for the one panic period (t=32..94).
    assert_eq!(panic_periods(&rows, 2.0), [(32.0, 94.0)]);
    assert_eq!(svg.matches("<rect class=\"panic\"").count(), 1);
    for text in [
        "time (s)",
        ">concurrency</text>",
        ">pods</text>",
        ">desired pods</text>",
    ] {
        assert!(svg.contains(text), "{text}");
    }
    assert!(!svg.contains("NaN") && !svg.contains("inf"));
    assert!(!svg.contains("href"), "no external references");
    // Deterministic.
    assert_eq!(svg, render_svg(&trace, &rows));
    // Degenerate inputs render too.
    let empty = render_svg(&[], &[]);
    assert!(empty.contains("</svg>") && !empty.contains("NaN"));
}

#[test]
fn axis_steps_are_round_numbers() {
    assert_eq!(nice_max(100.0, 10.0), (100.0, 10.0));
    assert_eq!(nice_max(163.0, 6.0), (200.0, 50.0));
    assert_eq!(nice_max(350.0, 6.0), (400.0, 100.0));
    assert_eq!(nice_max(5.0, 6.0), (5.0, 1.0));
    assert_eq!(nice_max(0.0, 6.0), (1.0, 0.2));
}

#[test]
fn panic_periods_run_until_the_next_calm_tick() {
    let rows = [
        row(2, 1, 1, 1, 0.0, 0.0, true),
        row(4, 1, 1, 1, 0.0, 0.0, false),
        row(6, 1, 1, 1, 0.0, 0.0, true),
        row(8, 1, 1, 1, 0.0, 0.0, true),
    ];
    assert_eq!(panic_periods(&rows, 2.0), [(2.0, 4.0), (6.0, 10.0)]);
    assert!(panic_periods(&[], 2.0).is_empty());
}

/// The same steady load under target 70 (Knative's default) and target 35: twice the pods.
fn two_targets() -> (Vec<TracePoint>, Vec<SimRow>, Vec<SimRow>) {
    let (spec, config) = defaults();
    let annotations = BTreeMap::from([(
        "autoscaling.knative.dev/target".to_string(),
        "50".to_string(),
    )]);
    let halved = RevisionScaling::resolve(&annotations, 0, &config).expect("spec");
    assert_eq!(halved.target_value, 35.0);
    let mut trace = Vec::new();
    load(&mut trace, 1..=60, 140.0);
    load(&mut trace, 61..=200, 0.0);
    let a = simulate(&trace, &spec, &config);
    let b = simulate(&trace, &halved, &config);
    (trace, a, b)
}

#[test]
fn compared_runs_differ_where_their_targets_do() {
    let (_, a, b) = two_targets();
    assert_eq!(a.len(), b.len());
    // 140 / 70 = 2 pods, 140 / 35 = 4 pods, through the load.
    assert_eq!((at(&a, 30).desired, at(&b, 30).desired), (2, 4));
    let table = render_compare_table(
        Run {
            label: "target-70.yaml",
            rows: &a,
        },
        Run {
            label: "target-35.yaml",
            rows: &b,
        },
    );
    let mut lines = table.lines();
    assert_eq!(lines.next(), Some("A: target-70.yaml"));
    assert_eq!(lines.next(), Some("B: target-35.yaml"));
    let row30 = table
        .lines()
        .find(|l| l.split_whitespace().next() == Some("30"))
        .expect("a row for t=30");
    let fields: Vec<&str> = row30.split_whitespace().collect();
    // second, desired A B, decided A B, ready A B, ...; `*` marks a differing desired scale.
    assert_eq!(&fields[..5], ["30", "2", "4", "2", "4"]);
    assert_eq!(fields.last(), Some(&"*"));
    // Where both agree (idle at the end, both scaled to zero) there is no mark.
    let last = table.lines().last().expect("rows");
    assert!(!last.ends_with('*'), "{last}");
    // One line per tick after the four header lines.
    assert_eq!(table.lines().count(), 4 + a.len());
}

#[test]
fn compare_csv_names_each_run() {
    let rows = sample_rows();
    let csv = render_compare_csv(
        Run {
            label: "a.yaml",
            rows: &rows[..1],
        },
        Run {
            label: "b, \"c\".yaml",
            rows: &rows[1..],
        },
    );
    assert_eq!(
        csv,
        "config,second,desired,stable,panic,panicking\n\
         a.yaml,2,2,140,140,true\n\
         \"b, \"\"c\"\".yaml\",4,2,135.333333,93.333333,false\n"
    );
}

#[test]
fn compare_svg_has_both_decision_lines_and_a_legend_naming_each_config() {
    let (trace, a, b) = two_targets();
    let svg = render_compare_svg(
        &trace,
        Run {
            label: "target-70.yaml",
            rows: &a,
        },
        Run {
            label: "target<35>&.yaml",
            rows: &b,
        },
    );
    assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
    assert!(svg.trim_end().ends_with("</svg>"));
    for class in [
        "concurrency",
        "desired-a",
        "desired-b",
        "stable-a",
        "stable-b",
    ] {
        assert_eq!(
            svg.matches(&format!("<polyline class=\"{class}\"")).count(),
            1,
            "{class}"
        );
    }
    let stroke = |class: &str| {
        let at = svg
            .find(&format!("<polyline class=\"{class}\""))
            .expect("line");
        let rest = &svg[at..];
        let from = rest.find("stroke=\"").expect("stroke") + 8;
        rest[from..from + 7].to_string()
    };
    assert_ne!(stroke("desired-a"), stroke("desired-b"), "distinct colours");
    // The lines differ: B's desired line reaches higher (4 pods against 2).
    let points = |class: &str| {
        let at = svg
            .find(&format!("<polyline class=\"{class}\""))
            .expect("line");
        let rest = &svg[at..];
        let from = rest.find("points=\"").expect("points") + 8;
        let to = from + rest[from..].find('"').expect("end");
        rest[from..to].to_string()
    };
    assert_ne!(points("desired-a"), points("desired-b"));
    assert!(svg.contains(">A: target-70.yaml</text>"), "{svg}");
    assert!(svg.contains(">B: target&lt;35&gt;&amp;.yaml</text>"));
    assert_eq!(svg.matches(">desired pods</text>").count(), 2);
    // Both panic at the start (2 and 4 pods wanted from 1): one band each along the top.
    assert_eq!(svg.matches("<rect class=\"panic-a\"").count(), 1);
    assert_eq!(svg.matches("<rect class=\"panic-b\"").count(), 1);
    assert!(!svg.contains("NaN") && !svg.contains("inf"));
    assert!(!svg.contains("href"), "no external references");
    // A long label keeps its end.
    assert_eq!(legend_label(&"x".repeat(50)).chars().count(), 44);
    assert!(legend_label(&format!("{}/b.yaml", "d".repeat(60))).ends_with("/b.yaml"));
}

/// The value of attribute `name` in one SVG element.
fn attr<'a>(element: &'a str, name: &str) -> &'a str {
    let key = format!(" {name}=\"");
    let from = element
        .find(&key)
        .unwrap_or_else(|| panic!("{name} in {element}"))
        + key.len();
    let len = element[from..].find('"').expect("closing quote");
    &element[from..from + len]
}

fn num(text: &str) -> f64 {
    text.parse()
        .unwrap_or_else(|_| panic!("a number: {text:?}"))
}

/// Every element of the SVG that starts with `prefix`, up to its `>`.
fn elements<'a>(svg: &'a str, prefix: &str) -> Vec<&'a str> {
    svg.match_indices(prefix)
        .map(|(at, _)| {
            let end = svg[at..].find('>').expect("end of element");
            &svg[at..=at + end]
        })
        .collect()
}

/// `(x, y, value)` of every axis label anchored `anchor` (`end`: left axis, `start`: right
/// axis, `middle` at the bottom: time axis).
fn axis_labels(svg: &str, anchor: &str) -> Vec<(f64, f64, f64)> {
    let tag = format!(" text-anchor=\"{anchor}\">");
    svg.lines()
        .flat_map(|line| line.split("<text ").skip(1))
        .filter(|t| t.contains(&tag) && !t.contains("transform"))
        .filter_map(|t| {
            let value = t.split_once('>')?.1.split_once('<')?.0;
            // `attr` wants the space that the split removed.
            let t = format!(" {t}");
            value
                .parse::<f64>()
                .ok()
                .map(|v| (num(attr(&t, "x")), num(attr(&t, "y")), v))
        })
        .collect()
}

/// `[x, y, width, height]` of every rectangle that starts with `prefix`.
fn rects(svg: &str, prefix: &str) -> Vec<[f64; 4]> {
    elements(svg, prefix)
        .iter()
        .map(|r| ["x", "y", "width", "height"].map(|name| num(attr(r, name))))
        .collect()
}

fn polyline(svg: &str, class: &str) -> Vec<(f64, f64)> {
    let found = elements(svg, &format!("<polyline class=\"{class}\""));
    assert_eq!(found.len(), 1, "one {class} line");
    attr(found[0], "points")
        .split(' ')
        .map(|p| {
            let (x, y) = p.split_once(',').expect("x,y");
            (num(x), num(y))
        })
        .collect()
}

/// The chart's plot frame and its three axes, read back from the SVG alone.
struct Axes {
    left: f64,
    top: f64,
    width: f64,
    height: f64,
    time_max: f64,
    load_max: f64,
    pods_max: f64,
}

impl Axes {
    /// Reads the frame and the axes, checking that every tick label sits at its value on a
    /// linear scale from 0 (bottom or left edge) to the largest label (top or right edge), at
    /// equal steps.
    fn read(svg: &str) -> Axes {
        let frame = elements(svg, "<rect x=")
            .into_iter()
            .find(|r| r.contains("fill=\"none\""))
            .expect("the plot frame");
        let (left, top) = (num(attr(frame, "x")), num(attr(frame, "y")));
        let (width, height) = (num(attr(frame, "width")), num(attr(frame, "height")));
        let bottom = top + height;
        let scale = |labels: &[(f64, f64, f64)], name: &str| -> f64 {
            assert!(labels.len() >= 2, "{name} axis has ticks");
            assert_eq!(labels[0].2, 0.0, "{name} axis starts at 0");
            let max = labels.last().expect("ticks").2;
            let step = labels[1].2;
            for (i, l) in labels.iter().enumerate() {
                assert_close(l.2, step * i as f64, &format!("{name} tick {i}"));
            }
            max
        };
        let load = axis_labels(svg, "end");
        let load_max = scale(&load, "load");
        for &(x, y, v) in &load {
            assert_close(x, left - 6.0, "load label x");
            assert_close(y - 4.0, bottom - v / load_max * height, "load label height");
        }
        let pods = axis_labels(svg, "start");
        let pods_max = scale(&pods, "pods");
        for &(x, y, v) in &pods {
            assert_close(x, left + width + 6.0, "pods label x");
            assert_close(y - 4.0, bottom - v / pods_max * height, "pods label height");
        }
        let time: Vec<_> = axis_labels(svg, "middle")
            .into_iter()
            .filter(|&(_, y, _)| (y - (bottom + 20.0)).abs() < 0.01)
            .collect();
        let time_max = scale(&time, "time");
        for &(x, _, v) in &time {
            assert_close(x, left + v / time_max * width, "time label x");
        }
        Axes {
            left,
            top,
            width,
            height,
            time_max,
            load_max,
            pods_max,
        }
    }

    /// The frame `[left, top, width, height]` and the axes' tops `[time, load, pods]`.
    fn layout(&self) -> ([f64; 4], [f64; 3]) {
        (
            [self.left, self.top, self.width, self.height],
            [self.time_max, self.load_max, self.pods_max],
        )
    }

    fn x(&self, second: f64) -> f64 {
        self.left + second / self.time_max * self.width
    }

    fn load_y(&self, v: f64) -> f64 {
        self.top + self.height - v / self.load_max * self.height
    }

    fn pods_y(&self, v: f64) -> f64 {
        self.top + self.height - v / self.pods_max * self.height
    }
}

/// Coordinates are written to one decimal.
fn assert_close(got: f64, want: f64, what: &str) {
    assert!((got - want).abs() <= 0.051, "{what}: {got} vs {want}");
}

fn assert_points(got: &[(f64, f64)], want: &[(f64, f64)], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: {got:?} vs {want:?}");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert_close(g.0, w.0, &format!("{what} point {i} x"));
        assert_close(g.1, w.1, &format!("{what} point {i} y"));
    }
}

/// A pods line holds each decision until the next one, then steps; the last holds one tick
/// (cut at the axis end).
fn step_points(axes: &Axes, rows: &[SimRow], value: fn(&SimRow) -> f64) -> Vec<(f64, f64)> {
    let mut pts = Vec::new();
    for (i, r) in rows.iter().enumerate() {
        if i > 0 {
            pts.push((axes.x(r.second as f64), axes.pods_y(value(&rows[i - 1]))));
        }
        pts.push((axes.x(r.second as f64), axes.pods_y(value(r))));
    }
    let last = rows.last().expect("rows");
    pts.push((
        axes.x((last.second as f64 + 2.0).min(axes.time_max)),
        axes.pods_y(value(last)),
    ));
    pts
}

/// A short hand-made run: load up to 13, pods up to 3, one panic period from t=4 to t=8 and
/// one still open at the last row, which ends on the time axis's last tick.
fn plotted() -> (Vec<TracePoint>, Vec<SimRow>) {
    let loads = [0.0, 3.0, 7.5, 13.0, 9.0, 4.0, 1.0, 0.0, 2.0, 6.0, 5.0];
    let trace = loads
        .iter()
        .enumerate()
        .map(|(s, &concurrency)| TracePoint {
            second: s as u64,
            concurrency,
            ready: None,
        })
        .collect();
    let rows = vec![
        row(2, 1, 1, 1, 1.5, 3.0, false),
        row(4, 3, 3, 1, 5.0, 10.0, true),
        row(6, 2, 3, 3, 6.5, 4.5, true),
        row(8, 0, 2, 2, 4.0, 0.5, false),
        row(10, 1, 1, 0, 3.5, 5.5, true),
    ];
    (trace, rows)
}

#[test]
fn every_plotted_point_lands_where_the_chart_axes_say() {
    let (trace, rows) = plotted();
    let svg = render_svg(&trace, &rows);
    let axes = Axes::read(&svg);
    // The frame leaves room for the title and legend above and the axis labels around it.
    // The axes fit the data with round steps: time 0..10, load 0..15, pods 0..3.
    assert_eq!(
        axes.layout(),
        ([70.0, 56.0, 820.0, 364.0], [10.0, 15.0, 3.0])
    );
    let want: Vec<_> = trace
        .iter()
        .map(|p| (axes.x(p.second as f64), axes.load_y(p.concurrency)))
        .collect();
    assert_points(&polyline(&svg, "concurrency"), &want, "concurrency");
    for (class, value) in [
        ("stable", (|r: &SimRow| r.stable) as fn(&SimRow) -> f64),
        ("panic", |r: &SimRow| r.panic),
    ] {
        let want: Vec<_> = rows
            .iter()
            .map(|r| (axes.x(r.second as f64), axes.load_y(value(r))))
            .collect();
        assert_points(&polyline(&svg, class), &want, class);
    }
    let desired = step_points(&axes, &rows, |r| r.desired as f64);
    assert_points(&polyline(&svg, "desired"), &desired, "desired");
    let ready = step_points(&axes, &rows, |r| r.ready as f64);
    assert_points(&polyline(&svg, "ready"), &ready, "ready");
    // Panic shading spans the plot's height from the panicking decision to the next calm one,
    // and to the axis end for the period still open.
    let bands = rects(&svg, "<rect class=\"panic\"");
    let want = [
        [
            axes.x(4.0),
            axes.top,
            axes.x(8.0) - axes.x(4.0),
            axes.height,
        ],
        [axes.x(10.0), axes.top, 0.0, axes.height],
    ];
    assert_eq!(bands.len(), want.len(), "{bands:?}");
    for (got, want) in bands.iter().zip(&want) {
        for (g, w) in got.iter().zip(want) {
            assert_close(*g, *w, "panic band");
        }
    }
}

#[test]
fn compared_runs_share_the_axes_and_each_gets_a_panic_band_along_the_top() {
    let (trace, rows) = plotted();
    let mut doubled = rows.clone();
    for r in &mut doubled {
        r.desired *= 2;
        r.stable *= 2.0;
        r.panicking = !r.panicking;
    }
    let svg = render_compare_svg(
        &trace,
        Run {
            label: "a.yaml",
            rows: &rows,
        },
        Run {
            label: "b.yaml",
            rows: &doubled,
        },
    );
    let axes = Axes::read(&svg);
    // Two legend lines push the frame down by 18 each.
    // The shared axes fit both runs: B's desired reaches 6.
    assert_eq!(
        axes.layout(),
        ([70.0, 92.0, 820.0, 328.0], [10.0, 15.0, 6.0])
    );
    for (suffix, run) in [("a", &rows), ("b", &doubled)] {
        let want: Vec<_> = run
            .iter()
            .map(|r| (axes.x(r.second as f64), axes.load_y(r.stable)))
            .collect();
        assert_points(&polyline(&svg, &format!("stable-{suffix}")), &want, suffix);
        let want = step_points(&axes, run, |r| r.desired as f64);
        assert_points(&polyline(&svg, &format!("desired-{suffix}")), &want, suffix);
    }
    // A's bands: 4..8 and 10..10; B's (the complement): 2..4 and 8..10, 6 px high, B's below A's.
    let bands = |suffix: &str| rects(&svg, &format!("<rect class=\"panic-{suffix}\""));
    let band = |from: f64, to: f64, y: f64| [axes.x(from), y, axes.x(to) - axes.x(from), 6.0];
    for (suffix, want) in [
        ("a", vec![band(4.0, 8.0, 92.0), band(10.0, 10.0, 92.0)]),
        ("b", vec![band(2.0, 4.0, 98.0), band(8.0, 10.0, 98.0)]),
    ] {
        let got = bands(suffix);
        assert_eq!(got.len(), want.len(), "{suffix}: {got:?}");
        for (g, w) in got.iter().zip(&want) {
            for (a, b) in g.iter().zip(w) {
                assert_close(*a, *b, &format!("panic band {suffix}"));
            }
        }
    }
}

/// The rest of the layout (title, legend, colours, grid) is pinned as a whole: review a change
/// with `cargo insta review`.
#[test]
fn chart_layout_is_unchanged() {
    let (trace, rows) = plotted();
    insta::assert_snapshot!("single", render_svg(&trace, &rows));
    let long = format!("{}/target-35.yaml", "configs".repeat(8));
    insta::assert_snapshot!(
        "compare",
        render_compare_svg(
            &trace,
            Run {
                label: "a & <b>.yaml",
                rows: &rows,
            },
            Run {
                label: &long,
                rows: &rows[1..],
            },
        )
    );
}

#[test]
fn axis_labels_drop_float_noise_and_trailing_zeros() {
    for (value, want) in [
        (0.0, "0"),
        (5.0, "5"),
        (100.0, "100"),
        (0.5, "0.5"),
        (0.125, "0.125"),
        (0.1 + 0.2, "0.3"),
        (2.999_999_999_9, "3"),
    ] {
        assert_eq!(label(value), want, "{value}");
    }
}

#[test]
fn axis_ticks_run_from_zero_to_the_top_and_stay_bounded() {
    let t: Vec<f64> = ticks(1.0, 0.2).collect();
    assert_eq!(t.len(), 6);
    assert_eq!((t[0], t[5]), (0.0, 1.0));
    assert_eq!(label(t[3]), "0.6");
    assert_eq!(
        ticks(400.0, 100.0).collect::<Vec<_>>(),
        [0.0, 100.0, 200.0, 300.0, 400.0]
    );
    // A degenerate step gives a bounded axis, not an endless loop.
    assert_eq!(ticks(10.0, 0.0).count(), 101);
    assert_eq!(ticks(0.0, 0.0).count(), 101);
}

/// When the trace runs on past the last decision, the pods lines hold that decision for one
/// tick and stop there, short of the axis end.
#[test]
fn the_last_decision_holds_for_one_tick() {
    let (mut trace, rows) = plotted();
    load(&mut trace, 11..=15, 1.0);
    let svg = render_svg(&trace, &rows);
    let axes = Axes::read(&svg);
    assert_eq!(axes.time_max, 16.0);
    let desired = polyline(&svg, "desired");
    let end = desired.last().expect("points");
    assert_close(
        end.0,
        axes.x(12.0),
        "the desired line ends one tick after t=10",
    );
    assert_points(
        &desired,
        &step_points(&axes, &rows, |r| r.desired as f64),
        "desired",
    );
}
