//! Replays a load trace through the decider and the scaler, and renders what they did.
//!
//! A trace is CSV, one line per second: `second,concurrency[,ready]`, with `#` comments, blank
//! lines and one header line allowed ([`parse_trace`]). [`simulate`] then runs the clock from
//! second 0 to the trace's last second:
//! - each trace line records one sample at its second (the concurrency value is also used as
//!   the request count, so a trace drives an `rps` revision too); seconds without a line record
//!   nothing, which Knative treats as "no report" (the average holds, see [`super::bucketing`]);
//! - every [`TICK_INTERVAL`] (seconds 2, 4, 6, …) the decider decides
//!   and the scaler reconciles, with the revision reachable;
//! - ready pods are the trace's `ready` at that second when given, otherwise the replicas the
//!   previous reconcile set, as if pods started instantly (the initial scale before the first).
//!
//! There are no pokes (decisions happen on ticks only) and reconcile runs on every tick, which
//! covers its re-enqueues to within two seconds. The decider is created at second 0 with the
//! first line's `ready` (default 0: a new revision has no ready pods yet).

use super::bucketing::round_to_digits;
use super::config::{AutoscalerConfig, RevisionScaling};
use super::decider::{decide, DeciderState, Windows};
use super::scaler::{reconcile, PaState};
use super::TICK_INTERVAL;
use std::fmt::Write as _;
use std::time::Duration;

/// One second of load.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TracePoint {
    pub second: u64,
    /// Time-weighted average in-flight requests over that second.
    pub concurrency: f64,
    /// Ready pods at that second, when the trace pins them.
    pub ready: Option<u32>,
}

/// A trace that could not be parsed.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum InvalidTrace {
    #[error("trace line {line}: {problem}")]
    Line { line: usize, problem: String },
    #[error("trace: no samples")]
    Empty,
}

fn line_error(line: usize, problem: impl Into<String>) -> InvalidTrace {
    InvalidTrace::Line {
        line,
        problem: problem.into(),
    }
}

/// Parses `second,concurrency[,ready]` lines; `#` comments, blank lines and a header line
/// before the first sample are skipped. Seconds must increase strictly.
pub fn parse_trace(csv: &str) -> Result<Vec<TracePoint>, InvalidTrace> {
    let mut points: Vec<TracePoint> = Vec::new();
    let mut header_allowed = true;
    for (index, raw) in csv.lines().enumerate() {
        let line = index + 1;
        let text = raw.trim();
        if text.is_empty() || text.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = text.split(',').map(str::trim).collect();
        if header_allowed
            && fields
                .first()
                .and_then(|f| f.chars().next())
                .is_some_and(char::is_alphabetic)
        {
            header_allowed = false;
            continue;
        }
        header_allowed = false;
        if !(2..=3).contains(&fields.len()) {
            return Err(line_error(
                line,
                format!(
                    "expected second,concurrency[,ready], got {} fields",
                    fields.len()
                ),
            ));
        }
        let second: u64 = fields[0].parse().map_err(|_| {
            line_error(
                line,
                format!("second {:?} is not a whole number", fields[0]),
            )
        })?;
        let concurrency = fields[1]
            .parse::<f64>()
            .ok()
            .filter(|c| c.is_finite() && *c >= 0.0)
            .ok_or_else(|| {
                line_error(
                    line,
                    format!("concurrency {:?} is not a number of at least 0", fields[1]),
                )
            })?;
        let ready = match fields.get(2) {
            None | Some(&"") => None,
            Some(r) => Some(
                r.parse::<u32>()
                    .map_err(|_| line_error(line, format!("ready {r:?} is not a whole number")))?,
            ),
        };
        if let Some(prev) = points.last() {
            if second <= prev.second {
                return Err(line_error(
                    line,
                    format!("second {second} does not come after {}", prev.second),
                ));
            }
        }
        points.push(TracePoint {
            second,
            concurrency,
            ready,
        });
    }
    if points.is_empty() {
        return Err(InvalidTrace::Empty);
    }
    Ok(points)
}

/// One decision tick of a simulation.
#[derive(Clone, Debug, PartialEq)]
pub struct SimRow {
    pub second: u64,
    /// Replicas after the scaler's bounds and scale-to-zero timing: what the deployment is
    /// scaled to.
    pub desired: i32,
    /// The decider's own desired scale, before the scaler.
    pub decided: i32,
    pub stable: f64,
    pub panic: f64,
    pub panicking: bool,
    /// Ready pods used for this decision.
    pub ready: u32,
}

/// Replays `trace` (see the module docs) and returns one row per decision tick.
pub fn simulate(
    trace: &[TracePoint],
    spec: &RevisionScaling,
    config: &AutoscalerConfig,
) -> Vec<SimRow> {
    let mut points = trace.to_vec();
    points.sort_by_key(|p| p.second);
    let Some(last) = points.last().map(|p| p.second) else {
        return Vec::new();
    };
    let tick = TICK_INTERVAL.as_secs();
    let mut windows = Windows::new(spec);
    let mut pa = PaState::new(spec, Duration::ZERO);
    let first_ready = points.first().and_then(|p| p.ready).unwrap_or(0);
    let mut decider = DeciderState::new(spec, first_ready, Duration::ZERO);
    let mut rows = Vec::new();
    let mut next = 0;
    for second in 0..=last {
        let now = Duration::from_secs(second);
        let mut pinned_ready = None;
        while let Some(p) = points.get(next).filter(|p| p.second == second) {
            windows.record(now, p.concurrency, p.concurrency);
            pinned_ready = p.ready.or(pinned_ready);
            next += 1;
        }
        if second == 0 || second % tick != 0 {
            continue;
        }
        let ready = pinned_ready.unwrap_or_else(|| pa.replicas.unwrap_or(1));
        let decision = decide(spec, &mut decider, &windows, ready, true, now);
        reconcile(spec, config, &mut pa, decision.desired, ready, now);
        rows.push(SimRow {
            second,
            desired: i32::try_from(pa.replicas.unwrap_or(1)).unwrap_or(i32::MAX),
            decided: decision.desired,
            stable: decision.stable,
            panic: decision.panic,
            panicking: decision.panicking,
            ready,
        });
    }
    rows
}

/// A fixed-width table for people.
pub fn render_table(rows: &[SimRow]) -> String {
    let mut out = String::from("second  desired  decided  ready      stable       panic  panic\n");
    for r in rows {
        let _ = writeln!(
            out,
            "{:>6}  {:>7}  {:>7}  {:>5}  {:>10.3}  {:>10.3}  {}",
            r.second,
            r.desired,
            r.decided,
            r.ready,
            r.stable,
            r.panic,
            if r.panicking { "yes" } else { "-" }
        );
    }
    out
}

/// `second,desired,stable,panic,panicking`, averages rounded to 6 decimals.
pub fn render_csv(rows: &[SimRow]) -> String {
    let mut out = String::from("second,desired,stable,panic,panicking\n");
    for r in rows {
        write_csv_row(&mut out, r);
    }
    out
}

/// One [`SimRow`]'s CSV columns and the line's end.
fn write_csv_row(out: &mut String, r: &SimRow) {
    let _ = writeln!(
        out,
        "{},{},{},{},{}",
        r.second,
        r.desired,
        round_to_digits(6, r.stable),
        round_to_digits(6, r.panic),
        r.panicking
    );
}

/// One simulation run under a name (a config's file name), for comparisons.
#[derive(Clone, Copy, Debug)]
pub struct Run<'a> {
    pub label: &'a str,
    pub rows: &'a [SimRow],
}

/// Two runs of the same trace side by side, `A` and `B` columns per quantity; a `*` marks the
/// ticks where the desired scales differ. Both runs tick on the same seconds (same trace).
pub fn render_compare_table(a: Run<'_>, b: Run<'_>) -> String {
    let mut out = format!("A: {}\nB: {}\n", a.label, b.label);
    out.push_str(
        "        desired    decided      ready           stable              panic      panic\n",
    );
    out.push_str(
        "second     A    B     A    B     A    B         A         B         A         B    A    B\n",
    );
    let yes = |p: bool| if p { "yes" } else { "-" };
    for (x, y) in a.rows.iter().zip(b.rows) {
        let _ = writeln!(
            out,
            "{:>6}  {:>4} {:>4}  {:>4} {:>4}  {:>4} {:>4}  {:>8.3}  {:>8.3}  {:>8.3}  {:>8.3}  {:>3}  {:>3}{}",
            x.second,
            x.desired,
            y.desired,
            x.decided,
            y.decided,
            x.ready,
            y.ready,
            x.stable,
            y.stable,
            x.panic,
            y.panic,
            yes(x.panicking),
            yes(y.panicking),
            if x.desired != y.desired { "  *" } else { "" }
        );
    }
    out
}

/// [`render_csv`]'s columns after a `config` column naming the run, A's rows then B's.
pub fn render_compare_csv(a: Run<'_>, b: Run<'_>) -> String {
    let mut out = String::from("config,second,desired,stable,panic,panicking\n");
    for run in [a, b] {
        let label = csv_field(run.label);
        for r in run.rows {
            out.push_str(&label);
            out.push(',');
            write_csv_row(&mut out, r);
        }
    }
    out
}

/// A CSV field, quoted (RFC 4180) when it holds a comma, a quote or a line break.
fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

/// A run's name short enough for its legend line: the end of a long one (a path's file name
/// is its end).
fn legend_label(label: &str) -> String {
    const MAX: usize = 44;
    let count = label.chars().count();
    if count <= MAX {
        return label.to_string();
    }
    let tail: String = label.chars().skip(count - (MAX - 1)).collect();
    format!("…{tail}")
}

/// Text for SVG content and attribute values.
fn xml_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

/// A step for about `ticks` axis ticks up to `max`: 1, 2 or 5 times a power of ten.
fn nice_step(max: f64, ticks: f64) -> f64 {
    let raw = (max / ticks).max(f64::MIN_POSITIVE);
    let magnitude = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|&s| s >= raw)
        .unwrap_or(10.0 * magnitude)
}

/// Rounds `max` up to a whole number of `nice_step`s (at least one).
fn nice_max(max: f64, ticks: f64) -> (f64, f64) {
    let max = if max > 0.0 { max } else { 1.0 };
    let step = nice_step(max, ticks);
    ((max / step).ceil().max(1.0) * step, step)
}

/// Formats a coordinate compactly (at most one decimal, no trailing `.0`).
fn coord(v: f64) -> String {
    let r = (v * 10.0).round() / 10.0;
    if r.fract() == 0.0 {
        format!("{}", r as i64)
    } else {
        format!("{r:.1}")
    }
}

/// The tick values `0, step, 2·step, …, max` (`max` is a whole number of steps, from
/// [`nice_max`]); at most 100 of them, so a degenerate step cannot make an endless axis.
fn ticks(max: f64, step: f64) -> impl Iterator<Item = f64> {
    let last = (max / step).round().min(100.0) as u32;
    (0..=last).map(move |i| f64::from(i) * step)
}

/// Formats an axis label value: at most three decimals, none trailing (`5`, `0.5`, `0.125`).
fn label(v: f64) -> String {
    let s = format!("{v:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// `(from, to)` seconds of each run of panicking decisions.
fn panic_periods(rows: &[SimRow], tick: f64) -> Vec<(f64, f64)> {
    let mut periods = Vec::new();
    let mut start: Option<f64> = None;
    for r in rows {
        match (start, r.panicking) {
            (None, true) => start = Some(r.second as f64),
            (Some(from), false) => {
                periods.push((from, r.second as f64));
                start = None;
            }
            _ => {}
        }
    }
    if let (Some(from), Some(last)) = (start, rows.last()) {
        periods.push((from, last.second as f64 + tick));
    }
    periods
}

/// A self-contained SVG line chart: the concurrency trace, the stable and panic averages
/// (left axis), desired and ready pods as step lines (right axis), panic periods shaded.
pub fn render_svg(trace: &[TracePoint], rows: &[SimRow]) -> String {
    plot(trace, &[Run { label: "", rows }])
}

/// Two runs of one trace on one chart: the shared concurrency trace, then per run (its own
/// colour, named in the legend) the desired pods as a step line, the stable average dashed,
/// and its panic periods as a band along the top.
pub fn render_compare_svg(trace: &[TracePoint], a: Run<'_>, b: Run<'_>) -> String {
    plot(trace, &[a, b])
}

/// Per compared run: (class suffix, desired colour, average colour, panic band colour).
const COMPARE_STYLES: [(&str, &str, &str, &str); 2] = [
    ("a", "#1f77b4", "#6baed6", "#9ecae1"),
    ("b", "#d62728", "#f28e8e", "#f4b6b6"),
];

/// One run: [`render_svg`]'s chart. Two: [`render_compare_svg`]'s.
fn plot(trace: &[TracePoint], runs: &[Run<'_>]) -> String {
    const WIDTH: f64 = 960.0;
    const HEIGHT: f64 = 480.0;
    const LEFT: f64 = 70.0;
    const RIGHT: f64 = 70.0;
    const BOTTOM: f64 = 60.0;
    let compare = runs.len() > 1;
    // A comparison's legend takes one line per run.
    let top: f64 = if compare {
        56.0 + 18.0 * runs.len() as f64
    } else {
        56.0
    };
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - top - BOTTOM;
    let all_rows = || runs.iter().flat_map(|run| run.rows.iter());

    let last_second = trace
        .iter()
        .map(|p| p.second)
        .chain(all_rows().map(|r| r.second))
        .max()
        .unwrap_or(0) as f64;
    let (x_max, x_step) = nice_max(last_second, 10.0);
    let load_max = trace
        .iter()
        .map(|p| p.concurrency)
        .chain(all_rows().flat_map(|r| [r.stable, r.panic]))
        .fold(0.0, f64::max);
    let (y_max, y_step) = nice_max(load_max, 6.0);
    let pods_max = all_rows()
        .flat_map(|r| [r.desired.max(0) as f64, r.ready as f64])
        .fold(0.0, f64::max);
    let (p_max, p_step) = nice_max(pods_max.max(1.0), 6.0);

    let x = |s: f64| LEFT + s / x_max * plot_w;
    let y = |v: f64| top + plot_h - v / y_max * plot_h;
    let yp = |v: f64| top + plot_h - v / p_max * plot_h;

    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">"#,
        w = coord(WIDTH),
        h = coord(HEIGHT)
    );
    let _ = writeln!(
        out,
        r#"<rect x="0" y="0" width="{}" height="{}" fill="white"/>"#,
        coord(WIDTH),
        coord(HEIGHT)
    );
    let title = if compare {
        "KPA simulation: two configs on one trace"
    } else {
        "KPA simulation: load, window averages and pods"
    };
    let _ = writeln!(
        out,
        r#"<text x="{}" y="20" text-anchor="middle" font-size="15">{title}</text>"#,
        coord(WIDTH / 2.0)
    );

    // Panic periods: from a panicking decision until the next calm one (or one tick past
    // the last row). One run shades the plot; compared runs each get a band along the top.
    let tick = TICK_INTERVAL.as_secs() as f64;
    for (i, run) in runs.iter().enumerate() {
        let (class, fill, band_y, band_h) = if compare {
            let (suffix, _, _, band) = COMPARE_STYLES[i % COMPARE_STYLES.len()];
            (format!("panic-{suffix}"), band, top + 6.0 * i as f64, 6.0)
        } else {
            ("panic".to_string(), "#f4b6b6", top, plot_h)
        };
        for (from, to) in panic_periods(run.rows, tick) {
            let to = to.min(x_max);
            let _ = writeln!(
                out,
                r#"<rect class="{class}" x="{}" y="{}" width="{}" height="{}" fill="{fill}" fill-opacity="0.5"/>"#,
                coord(x(from)),
                coord(band_y),
                coord(x(to) - x(from)),
                coord(band_h)
            );
        }
    }

    // Grid and axes.
    for v in ticks(y_max, y_step) {
        let _ = writeln!(
            out,
            r##"<line x1="{l}" y1="{y}" x2="{r}" y2="{y}" stroke="#e0e0e0"/><text x="{t}" y="{ty}" text-anchor="end">{v}</text>"##,
            l = coord(LEFT),
            r = coord(LEFT + plot_w),
            y = coord(y(v)),
            t = coord(LEFT - 6.0),
            ty = coord(y(v) + 4.0),
            v = label(v)
        );
    }
    for p in ticks(p_max, p_step) {
        let _ = writeln!(
            out,
            r#"<text x="{}" y="{}" text-anchor="start">{}</text>"#,
            coord(LEFT + plot_w + 6.0),
            coord(yp(p) + 4.0),
            label(p)
        );
    }
    for s in ticks(x_max, x_step) {
        let _ = writeln!(
            out,
            r##"<line x1="{x}" y1="{b}" x2="{x}" y2="{b2}" stroke="#333"/><text x="{x}" y="{ty}" text-anchor="middle">{s}</text>"##,
            x = coord(x(s)),
            b = coord(top + plot_h),
            b2 = coord(top + plot_h + 5.0),
            ty = coord(top + plot_h + 20.0),
            s = label(s)
        );
    }
    let _ = writeln!(
        out,
        r##"<rect x="{}" y="{}" width="{}" height="{}" fill="none" stroke="#333"/>"##,
        coord(LEFT),
        coord(top),
        coord(plot_w),
        coord(plot_h)
    );
    let _ = writeln!(
        out,
        r#"<text x="{}" y="{}" text-anchor="middle">time (s)</text>"#,
        coord(LEFT + plot_w / 2.0),
        coord(HEIGHT - 18.0)
    );
    let _ = writeln!(
        out,
        r#"<text x="18" y="{y}" text-anchor="middle" transform="rotate(-90 18 {y})">concurrency</text>"#,
        y = coord(top + plot_h / 2.0)
    );
    let _ = writeln!(
        out,
        r#"<text x="{x}" y="{y}" text-anchor="middle" transform="rotate(90 {x} {y})">pods</text>"#,
        x = coord(WIDTH - 18.0),
        y = coord(top + plot_h / 2.0)
    );

    // Series.
    let polyline = |out: &mut String, class: &str, color: &str, dash: &str, pts: &[(f64, f64)]| {
        if pts.is_empty() {
            return;
        }
        let points: Vec<String> = pts
            .iter()
            .map(|&(px, py)| format!("{},{}", coord(px), coord(py)))
            .collect();
        let _ = writeln!(
            out,
            r#"<polyline class="{class}" points="{}" fill="none" stroke="{color}" stroke-width="1.5"{dash}/>"#,
            points.join(" ")
        );
    };
    let trace_pts: Vec<(f64, f64)> = trace
        .iter()
        .map(|p| (x(p.second as f64), y(p.concurrency)))
        .collect();
    polyline(&mut out, "concurrency", "#9e9e9e", "", &trace_pts);
    let averages = |rows: &[SimRow], value: fn(&SimRow) -> f64| -> Vec<(f64, f64)> {
        rows.iter()
            .map(|r| (x(r.second as f64), y(value(r))))
            .collect()
    };
    let step = |rows: &[SimRow], value: fn(&SimRow) -> f64| -> Vec<(f64, f64)> {
        let mut pts = Vec::new();
        for (i, r) in rows.iter().enumerate() {
            let v = yp(value(r));
            if i > 0 {
                pts.push((x(r.second as f64), pts.last().map_or(v, |&(_, py)| py)));
            }
            pts.push((x(r.second as f64), v));
        }
        if let Some(r) = rows.last() {
            pts.push((x((r.second as f64 + tick).min(x_max)), yp(value(r))));
        }
        pts
    };
    let dashed = r#" stroke-dasharray="4 3""#;
    if let [run] = runs {
        polyline(
            &mut out,
            "stable",
            "#1f77b4",
            "",
            &averages(run.rows, |r| r.stable),
        );
        polyline(
            &mut out,
            "panic",
            "#ff7f0e",
            "",
            &averages(run.rows, |r| r.panic),
        );
        polyline(
            &mut out,
            "ready",
            "#98df8a",
            dashed,
            &step(run.rows, |r| r.ready as f64),
        );
        polyline(
            &mut out,
            "desired",
            "#2ca02c",
            "",
            &step(run.rows, |r| r.desired.max(0) as f64),
        );
    } else {
        for (i, run) in runs.iter().enumerate() {
            let (suffix, desired, average, _) = COMPARE_STYLES[i % COMPARE_STYLES.len()];
            polyline(
                &mut out,
                &format!("stable-{suffix}"),
                average,
                dashed,
                &averages(run.rows, |r| r.stable),
            );
            polyline(
                &mut out,
                &format!("desired-{suffix}"),
                desired,
                "",
                &step(run.rows, |r| r.desired.max(0) as f64),
            );
        }
    }

    // Legend.
    let swatch = |out: &mut String, lx: f64, ly: f64, color: &str, text: &str| {
        let _ = writeln!(
            out,
            r#"<rect x="{}" y="{}" width="14" height="4" fill="{color}"/><text x="{}" y="{}">{text}</text>"#,
            coord(lx),
            coord(ly - 2.0),
            coord(lx + 18.0),
            coord(ly + 3.0)
        );
    };
    if compare {
        swatch(&mut out, LEFT + 10.0, 40.0, "#9e9e9e", "concurrency");
        for (i, run) in runs.iter().enumerate() {
            let (suffix, desired, average, band) = COMPARE_STYLES[i % COMPARE_STYLES.len()];
            let ly = 58.0 + 18.0 * i as f64;
            let name = xml_escape(&legend_label(run.label));
            let _ = writeln!(
                out,
                r#"<text class="legend-{suffix}" x="{}" y="{}" font-weight="bold">{}: {name}</text>"#,
                coord(LEFT + 10.0),
                coord(ly + 3.0),
                suffix.to_ascii_uppercase()
            );
            swatch(&mut out, LEFT + 340.0, ly, desired, "desired pods");
            swatch(&mut out, LEFT + 475.0, ly, average, "stable average");
            swatch(&mut out, LEFT + 610.0, ly, band, "panic mode");
        }
    } else {
        let legend = [
            ("concurrency", "#9e9e9e"),
            ("stable average", "#1f77b4"),
            ("panic average", "#ff7f0e"),
            ("desired pods", "#2ca02c"),
            ("ready pods", "#98df8a"),
            ("panic mode", "#f4b6b6"),
        ];
        for (i, (name, color)) in legend.iter().enumerate() {
            swatch(&mut out, LEFT + 10.0 + i as f64 * 135.0, 40.0, color, name);
        }
    }
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests;
