//! `sluice autoscaler simulate`: glue around the pure simulator in
//! `sluice_controller::autoscaler::simulate` (the same decider the gateway runs).

use crate::cli::{SimulateArgs, SimulateFormat};
use anyhow::{bail, Context};
use sluice_controller::autoscaler::{simulate, AutoscalerConfig, RevisionScaling, Run};
use sluice_controller::manifest::parse_file;
use sluice_controller::object::Object;
use std::collections::BTreeMap;
use std::path::Path;

/// What one run is configured with: `config-autoscaler` and the Revision's scaling inputs.
#[derive(Clone)]
struct Setup {
    config: AutoscalerConfig,
    annotations: BTreeMap<String, String>,
    container_concurrency: u32,
}

impl Setup {
    fn spec(&self, what: &str) -> anyhow::Result<RevisionScaling> {
        RevisionScaling::resolve(&self.annotations, self.container_concurrency, &self.config)
            .with_context(|| format!("{what}: revision annotations"))
    }
}

pub fn run(args: SimulateArgs) -> anyhow::Result<()> {
    let trace_text = std::fs::read_to_string(&args.trace)
        .with_context(|| format!("reading {}", args.trace.display()))?;
    let trace = simulate::parse_trace(&trace_text)
        .with_context(|| format!("trace {}", args.trace.display()))?;
    let config = match &args.config {
        Some(path) => match single_object(path)? {
            Object::ConfigMap(map) => autoscaler_config(path, &map.data)?,
            other => bail!(
                "{}: want a ConfigMap, found {}",
                path.display(),
                other.kind().as_str()
            ),
        },
        None => {
            AutoscalerConfig::from_data(&BTreeMap::new()).context("config-autoscaler defaults")?
        }
    };
    let mut base = Setup {
        config,
        annotations: BTreeMap::new(),
        container_concurrency: 0,
    };
    if let Some(path) = &args.revision {
        match single_object(path)? {
            Object::Revision(revision) => set_revision(&mut base, &revision),
            other => bail!(
                "{}: want a Revision, found {}",
                path.display(),
                other.kind().as_str()
            ),
        }
    }
    let spec = base.spec("--revision")?;
    let rows = simulate::simulate(&trace, &spec, &base.config);
    let Some(compare_path) = &args.compare else {
        match args.format {
            SimulateFormat::Table => print!("{}", simulate::render_table(&rows)),
            SimulateFormat::Csv => print!("{}", simulate::render_csv(&rows)),
        }
        if let Some(plot) = &args.plot {
            write_plot(plot, &simulate::render_svg(&trace, &rows))?;
        }
        return Ok(());
    };
    let other = compare_setup(compare_path, &base)?;
    let other_spec = other.spec(&compare_path.display().to_string())?;
    let other_rows = simulate::simulate(&trace, &other_spec, &other.config);
    let base_label = base_label(&args);
    let other_label = file_name(compare_path);
    let a = Run {
        label: &base_label,
        rows: &rows,
    };
    let b = Run {
        label: &other_label,
        rows: &other_rows,
    };
    match args.format {
        SimulateFormat::Table => print!("{}", simulate::render_compare_table(a, b)),
        SimulateFormat::Csv => print!("{}", simulate::render_compare_csv(a, b)),
    }
    if let Some(plot) = &args.plot {
        write_plot(plot, &simulate::render_compare_svg(&trace, a, b))?;
    }
    Ok(())
}

fn write_plot(path: &Path, svg: &str) -> anyhow::Result<()> {
    std::fs::write(path, svg).with_context(|| format!("writing {}", path.display()))
}

fn autoscaler_config(
    path: &Path,
    data: &BTreeMap<String, String>,
) -> anyhow::Result<AutoscalerConfig> {
    AutoscalerConfig::from_data(data)
        .with_context(|| format!("config-autoscaler in {}", path.display()))
}

fn set_revision(setup: &mut Setup, revision: &sluice_controller::object::Revision) {
    setup.annotations = revision.metadata.annotations.clone();
    setup.container_concurrency =
        u32::try_from(revision.spec.container_concurrency.unwrap_or(0).max(0)).unwrap_or(u32::MAX);
}

/// The second run: the base with what `path` holds (a ConfigMap, a Revision, or one of each)
/// in place of its counterpart.
fn compare_setup(path: &Path, base: &Setup) -> anyhow::Result<Setup> {
    let mut setup = base.clone();
    let (mut configs, mut revisions) = (0, 0);
    for object in objects(path)? {
        match object {
            Object::ConfigMap(map) => {
                configs += 1;
                setup.config = autoscaler_config(path, &map.data)?;
            }
            Object::Revision(revision) => {
                revisions += 1;
                set_revision(&mut setup, &revision);
            }
            other => bail!(
                "{}: want a config-autoscaler ConfigMap or a Revision, found {}",
                path.display(),
                other.kind().as_str()
            ),
        }
    }
    if configs == 0 && revisions == 0 {
        bail!(
            "{}: no objects; want a config-autoscaler ConfigMap, a Revision or both",
            path.display()
        );
    }
    if configs > 1 || revisions > 1 {
        bail!(
            "{}: want at most one ConfigMap and one Revision, found {configs} and {revisions}",
            path.display()
        );
    }
    Ok(setup)
}

/// The first run's name: the files it was configured with, or `defaults`.
fn base_label(args: &SimulateArgs) -> String {
    let files: Vec<String> = [&args.config, &args.revision]
        .into_iter()
        .flatten()
        .map(|p| file_name(p))
        .collect();
    if files.is_empty() {
        "defaults".to_string()
    } else {
        files.join(" + ")
    }
}

fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into(),
    )
}

/// Every object a manifest file holds; a parse problem is an error.
fn objects(path: &Path) -> anyhow::Result<Vec<Object>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let file = parse_file(path.display().to_string(), &text);
    if let Some(problem) = file.problems.first() {
        bail!("{}: {}", path.display(), problem.message());
    }
    Ok(file.objects)
}

/// The one object a manifest file holds.
fn single_object(path: &Path) -> anyhow::Result<Object> {
    let mut objects = objects(path)?.into_iter();
    match (objects.next(), objects.next()) {
        (Some(object), None) => Ok(object),
        _ => bail!("{}: want exactly one object", path.display()),
    }
}
