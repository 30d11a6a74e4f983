//! `sluice autoscaler simulate`: glue around the pure simulator in
//! `sluice_controller::autoscaler::simulate` (the same decider the gateway runs).

use crate::cli::{SimulateArgs, SimulateFormat};
use anyhow::{bail, Context};
use sluice_controller::autoscaler::{simulate, AutoscalerConfig, RevisionScaling};
use sluice_controller::manifest::parse_file;
use sluice_controller::object::Object;
use std::collections::BTreeMap;
use std::path::Path;

pub fn run(args: SimulateArgs) -> anyhow::Result<()> {
    let trace_text = std::fs::read_to_string(&args.trace)
        .with_context(|| format!("reading {}", args.trace.display()))?;
    let trace = simulate::parse_trace(&trace_text)
        .with_context(|| format!("trace {}", args.trace.display()))?;
    let config = match &args.config {
        Some(path) => {
            let data = match single_object(path)? {
                Object::ConfigMap(map) => map.data,
                other => bail!(
                    "{}: want a ConfigMap, found {}",
                    path.display(),
                    other.kind().as_str()
                ),
            };
            AutoscalerConfig::from_data(&data)
                .with_context(|| format!("config-autoscaler in {}", path.display()))?
        }
        None => {
            AutoscalerConfig::from_data(&BTreeMap::new()).context("config-autoscaler defaults")?
        }
    };
    let (annotations, container_concurrency) = match &args.revision {
        Some(path) => match single_object(path)? {
            Object::Revision(revision) => (
                revision.metadata.annotations.clone(),
                u32::try_from(revision.spec.container_concurrency.unwrap_or(0).max(0))
                    .unwrap_or(u32::MAX),
            ),
            other => bail!(
                "{}: want a Revision, found {}",
                path.display(),
                other.kind().as_str()
            ),
        },
        None => (BTreeMap::new(), 0),
    };
    let spec = RevisionScaling::resolve(&annotations, container_concurrency, &config)
        .context("revision annotations")?;
    let rows = simulate::simulate(&trace, &spec, &config);
    match args.format {
        SimulateFormat::Table => print!("{}", simulate::render_table(&rows)),
        SimulateFormat::Csv => print!("{}", simulate::render_csv(&rows)),
    }
    if let Some(plot) = &args.plot {
        std::fs::write(plot, simulate::render_svg(&trace, &rows))
            .with_context(|| format!("writing {}", plot.display()))?;
    }
    Ok(())
}

/// The one object a manifest file holds.
fn single_object(path: &Path) -> anyhow::Result<Object> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let file = parse_file(path.display().to_string(), &text);
    if let Some(problem) = file.problems.first() {
        bail!("{}: {}", path.display(), problem.message());
    }
    let mut objects = file.objects.into_iter();
    match (objects.next(), objects.next()) {
        (Some(object), None) => Ok(object),
        _ => bail!("{}: want exactly one object", path.display()),
    }
}
