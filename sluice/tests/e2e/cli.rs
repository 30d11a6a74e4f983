//! The `sluice` binary's tools: `autoscaler simulate`, `crds`, `rbac`.

use std::process::Command;

const SLUICE: &str = env!("CARGO_BIN_EXE_sluice");

/// 60 s at concurrency 140, then idle, with Knative's defaults (target 70 per pod, 60 s stable
/// window, 6 s panic window, 30 s grace).
fn trace() -> String {
    let mut t = String::from("second,concurrency\n");
    for s in 1..=60 {
        t += &format!("{s},140\n");
    }
    for s in 61..=180 {
        t += &format!("{s},0\n");
    }
    t
}

fn simulate(args: &[&str]) -> anyhow::Result<std::process::Output> {
    Ok(Command::new(SLUICE)
        .args(["autoscaler", "simulate"])
        .args(args)
        .output()?)
}

#[test]
fn simulate_replays_a_known_trace() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let trace_path = dir.path().join("trace.csv");
    std::fs::write(&trace_path, trace())?;
    let plot = dir.path().join("plot.svg");
    let out = simulate(&[
        "--trace",
        trace_path.to_str().expect("utf-8"),
        "--format",
        "csv",
        "--plot",
        plot.to_str().expect("utf-8"),
    ])?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let csv = String::from_utf8(out.stdout)?;
    let rows: Vec<&str> = csv.lines().collect();
    assert_eq!(rows[0], "second,desired,stable,panic,panicking");
    assert_eq!(rows.len(), 1 + 90, "one row per 2 s tick");
    let row = |second: u32| {
        rows.iter()
            .copied()
            .find(|r| r.starts_with(&format!("{second},")))
            .expect("row")
    };
    // 140 / 70 = 2 pods, and 2 > 1 ready pod × 200% panic threshold: panic at once.
    assert_eq!(row(2), "2,2,140,140,true");
    // The load stops at 60 s: the panic window (6 s) drains first, panic ends at 64 s.
    assert_eq!(row(62), "62,2,135.333333,93.333333,true");
    assert_eq!(row(64), "64,2,130.666667,46.666667,false");
    // The stable average falls linearly to 70 (1 pod) at 90 s and 0 at 120 s; the last pod
    // goes after the 30 s scale-to-zero grace period.
    assert_eq!(row(90), "90,1,70,0,false");
    assert_eq!(row(150), "150,0,0,0,false");
    let svg = std::fs::read_to_string(&plot)?;
    assert!(
        svg.starts_with("<svg") || svg.starts_with("<?xml"),
        "{}",
        &svg[..40.min(svg.len())]
    );
    Ok(())
}

#[test]
fn simulate_applies_revision_annotations_and_config() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let trace_path = dir.path().join("trace.csv");
    std::fs::write(&trace_path, trace())?;
    let revision = dir.path().join("revision.yaml");
    std::fs::write(
        &revision,
        "apiVersion: sluice.dev/v1alpha1\nkind: Revision\nmetadata:\n  name: r\n  annotations: {autoscaling.knative.dev/target: \"10\", autoscaling.knative.dev/max-scale: \"5\"}\nspec:\n  containerConcurrency: 20\n  responder: {}\n",
    )?;
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: config-autoscaler, namespace: knative-serving}\ndata:\n  container-concurrency-target-percentage: \"100\"\n",
    )?;
    let out = simulate(&[
        "--trace",
        trace_path.to_str().expect("utf-8"),
        "--revision",
        revision.to_str().expect("utf-8"),
        "--config",
        config.to_str().expect("utf-8"),
        "--format",
        "csv",
    ])?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let csv = String::from_utf8(out.stdout)?;
    let desired: Vec<i64> = csv
        .lines()
        .skip(1)
        .filter_map(|l| l.split(',').nth(1)?.parse().ok())
        .collect();
    // Target 10 at 100% utilisation wants 14 pods for 140; max-scale caps it at 5.
    assert_eq!(desired.iter().max(), Some(&5));
    Ok(())
}

#[test]
fn simulate_rejects_a_bad_trace_with_its_line() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let trace_path = dir.path().join("trace.csv");
    std::fs::write(&trace_path, "1,10\n2,ten\n")?;
    let out = simulate(&["--trace", trace_path.to_str().expect("utf-8")])?;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 2"), "{err}");
    Ok(())
}

fn config_autoscaler(target: &str) -> String {
    format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: config-autoscaler, namespace: knative-serving}}\ndata:\n  container-concurrency-target-default: \"{target}\"\n")
}

/// The same trace under target 100 (70 at the 70% utilisation default) and target 50 (35).
#[test]
fn simulate_compares_two_configs_in_one_table_csv_and_plot() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let path = |name: &str| dir.path().join(name).to_str().expect("utf-8").to_string();
    std::fs::write(path("trace.csv"), trace())?;
    std::fs::write(path("t100.yaml"), config_autoscaler("100"))?;
    std::fs::write(path("t50.yaml"), config_autoscaler("50"))?;
    let base = [
        "--trace".to_string(),
        path("trace.csv"),
        "--config".into(),
        path("t100.yaml"),
        "--compare".into(),
        path("t50.yaml"),
    ];
    let args = |more: &[&str]| -> Vec<String> {
        base.iter()
            .cloned()
            .chain(more.iter().map(|s| s.to_string()))
            .collect()
    };
    let run = |args: Vec<String>| -> anyhow::Result<String> {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = simulate(&args)?;
        anyhow::ensure!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8(out.stdout)?)
    };

    let plot = path("compare.svg");
    let table = run(args(&["--plot", &plot]))?;
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines[0], "A: t100.yaml");
    assert_eq!(lines[1], "B: t50.yaml");
    let row = |second: &str| -> Vec<&str> {
        lines
            .iter()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .find(|f| f.first() == Some(&second))
            .expect("row")
    };
    // 140 / 70 = 2 pods against 140 / 35 = 4, marked as differing.
    assert_eq!(&row("30")[..3], ["30", "2", "4"]);
    assert_eq!(row("30").last(), Some(&"*"));
    // Both idle at zero by the end: the same, unmarked.
    assert_eq!(&row("180")[..3], ["180", "0", "0"]);
    assert_ne!(row("180").last(), Some(&"*"));

    let svg = std::fs::read_to_string(&plot)?;
    for needle in [
        "<polyline class=\"desired-a\"",
        "<polyline class=\"desired-b\"",
        ">A: t100.yaml</text>",
        ">B: t50.yaml</text>",
    ] {
        assert!(svg.contains(needle), "{needle}");
    }

    let csv = run(args(&["--format", "csv"]))?;
    assert_eq!(
        csv.lines().next(),
        Some("config,second,desired,stable,panic,panicking")
    );
    assert!(
        csv.lines().any(|l| l.starts_with("t100.yaml,30,2,")),
        "{csv}"
    );
    assert!(
        csv.lines().any(|l| l.starts_with("t50.yaml,30,4,")),
        "{csv}"
    );
    assert_eq!(csv.lines().count(), 1 + 2 * 90);
    Ok(())
}

#[test]
fn simulate_compare_rejects_bad_input_by_file() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let path = |name: &str| dir.path().join(name).to_str().expect("utf-8").to_string();
    std::fs::write(path("trace.csv"), trace())?;
    std::fs::write(
        path("service.yaml"),
        "apiVersion: v1\nkind: Service\nmetadata: {name: s, namespace: ns}\nspec:\n  ports: [{port: 80}]\n",
    )?;
    std::fs::write(
        path("two.yaml"),
        config_autoscaler("50") + "---\n" + &config_autoscaler("60"),
    )?;
    std::fs::write(path("empty.yaml"), "# nothing\n")?;
    std::fs::write(
        path("bad-value.yaml"),
        config_autoscaler("100").replace(
            "container-concurrency-target-default: \"100\"",
            "stable-window: \"soon\"",
        ),
    )?;
    let cases = [
        ("missing.yaml", "reading"),
        (
            "service.yaml",
            "want a config-autoscaler ConfigMap or a Revision, found Service",
        ),
        (
            "two.yaml",
            "want at most one ConfigMap and one Revision, found 2 and 0",
        ),
        ("empty.yaml", "no objects"),
        ("bad-value.yaml", "stable-window"),
    ];
    for (file, want) in cases {
        let out = simulate(&["--trace", &path("trace.csv"), "--compare", &path(file)])?;
        assert!(!out.status.success(), "{file}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(file) && err.contains(want), "{file}: {err}");
    }
    Ok(())
}

fn sluice(args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(SLUICE).args(args).output()?;
    anyhow::ensure!(
        out.status.success(),
        "sluice {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8(out.stdout)?)
}

#[test]
fn crds_prints_both_definitions_and_writes_the_committed_files() -> anyhow::Result<()> {
    assert_eq!(sluice(&["crds"])?, sluice_controller::crd::yaml());

    let dir = tempfile::tempdir()?;
    let out = dir.path().join("crds");
    sluice(&["crds", "--write", out.to_str().expect("utf-8")])?;
    let committed = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(sluice_controller::crd::COMMITTED_DIR);
    for name in ["routes.sluice.dev.yaml", "revisions.sluice.dev.yaml"] {
        assert_eq!(
            std::fs::read_to_string(out.join(name))?,
            std::fs::read_to_string(committed.join(name))?,
            "{name}"
        );
    }
    Ok(())
}

#[test]
fn rbac_prints_the_roles_and_writes_the_rules_file() -> anyhow::Result<()> {
    assert_eq!(
        sluice(&["rbac", "--namespace", "gateway"])?,
        sluice_controller::rbac::yaml("gateway")
    );

    let dir = tempfile::tempdir()?;
    sluice(&["rbac", "--write", dir.path().to_str().expect("utf-8")])?;
    let committed = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(sluice_controller::rbac::COMMITTED_DIR)
        .join(sluice_controller::rbac::RULES_FILE);
    assert_eq!(
        std::fs::read_to_string(dir.path().join(sluice_controller::rbac::RULES_FILE))?,
        std::fs::read_to_string(committed)?
    );
    Ok(())
}
