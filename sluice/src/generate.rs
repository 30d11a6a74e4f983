//! `sluice crds` and `sluice rbac`: print, or write, the Kubernetes files that
//! `sluice_controller::crd` and `sluice_controller::rbac` generate.

use crate::cli::{CrdsArgs, RbacArgs};
use anyhow::Context;
use sluice_controller::generated::GeneratedFile;
use sluice_controller::{crd, rbac};
use std::io::Write;
use std::path::Path;

pub fn crds(args: &CrdsArgs) -> anyhow::Result<()> {
    match &args.write {
        Some(dir) => write_files(dir, &crd::files()),
        None => print(&crd::yaml()),
    }
}

pub fn rbac(args: &RbacArgs) -> anyhow::Result<()> {
    match &args.write {
        Some(dir) => write_files(dir, &[rbac::rules_file()]),
        None => print(&rbac::yaml(&args.namespace)),
    }
}

fn write_files(dir: &Path, files: &[GeneratedFile]) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    for file in files {
        let path = dir.join(&file.name);
        std::fs::write(&path, &file.contents)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

fn print(text: &str) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .context("writing to stdout")
}
