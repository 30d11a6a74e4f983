//! The manifest-directory source: watches the directory and feeds only the files that changed
//! to the [`Hub`].
//!
//! - **inotify** (Linux) names the files that changed, so one edit costs one `stat` and one
//!   parse, whatever the directory's size. Kubernetes ConfigMap mounts swap a hidden `..data`
//!   link instead of touching the files; that event (a `..`-name moved in) re-stamps the whole
//!   directory, as does a queue overflow.
//! - **Polling** backs it up: every [`FULL_SCAN_INTERVAL`] the directory is stamped whole
//!   (names, sizes, mtimes, inodes, symlink targets, [`crate::manifest::fingerprint`]) and
//!   compared, which catches what inotify cannot see (network filesystems). Without inotify it
//!   polls every [`POLL_INTERVAL`].
//!
//! Changed files are read and parsed, removed ones dropped, and the result published in one
//! step.

use crate::hub::Hub;
use crate::manifest::{self, DirFingerprint};
use rustix::fs::inotify;
use std::collections::BTreeSet;
use std::mem::MaybeUninit;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::unix::AsyncFd;
use tokio::sync::watch;
use tracing::{debug, warn};

/// Full-scan period without inotify.
pub const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// Full-scan period with inotify (a safety net).
pub const FULL_SCAN_INTERVAL: Duration = Duration::from_secs(1);

pub struct ManifestSource {
    dir: PathBuf,
    hub: Arc<Hub>,
}

/// What the watcher saw.
enum Seen {
    /// These visible names changed.
    Names(BTreeSet<String>),
    /// Something only a full scan can sort out.
    Everything,
}

/// An inotify watch on the directory.
struct Watcher {
    fd: AsyncFd<OwnedFd>,
    buf: Vec<MaybeUninit<u8>>,
}

impl Watcher {
    fn new(dir: &Path) -> std::io::Result<Watcher> {
        let fd = inotify::init(inotify::CreateFlags::CLOEXEC | inotify::CreateFlags::NONBLOCK)?;
        let flags = inotify::WatchFlags::CLOSE_WRITE
            | inotify::WatchFlags::MODIFY
            | inotify::WatchFlags::ATTRIB
            | inotify::WatchFlags::CREATE
            | inotify::WatchFlags::DELETE
            | inotify::WatchFlags::MOVED_FROM
            | inotify::WatchFlags::MOVED_TO
            | inotify::WatchFlags::DELETE_SELF
            | inotify::WatchFlags::MOVE_SELF;
        inotify::add_watch(&fd, dir, flags)?;
        // `new` is deprecated because a `T: AsRawFd` could close its descriptor behind the
        // reactor's back; an `OwnedFd` owns it for the `AsyncFd`'s whole life, so this is sound.
        #[allow(deprecated)]
        let fd = AsyncFd::new(fd)?;
        Ok(Watcher {
            fd,
            buf: vec![MaybeUninit::uninit(); 64 * 1024],
        })
    }

    /// Waits for events, then takes every event already queued.
    async fn next(&mut self) -> std::io::Result<Seen> {
        let mut names = BTreeSet::new();
        let mut everything = false;
        loop {
            let mut ready = self.fd.readable().await?;
            let mut reader = inotify::Reader::new(self.fd.get_ref(), &mut self.buf);
            let mut read_any = false;
            loop {
                match reader.next() {
                    Ok(event) => {
                        read_any = true;
                        let flags = event.events();
                        if flags.intersects(
                            inotify::ReadFlags::QUEUE_OVERFLOW
                                | inotify::ReadFlags::DELETE_SELF
                                | inotify::ReadFlags::MOVE_SELF,
                        ) {
                            everything = true;
                            continue;
                        }
                        let Some(name) =
                            event.file_name().map(|n| n.to_string_lossy().into_owned())
                        else {
                            continue;
                        };
                        if name.starts_with("..") {
                            // A ConfigMap mount's atomic swap.
                            everything |= flags.intersects(
                                inotify::ReadFlags::MOVED_TO | inotify::ReadFlags::CREATE,
                            );
                        } else if !name.starts_with('.') {
                            names.insert(name);
                        }
                    }
                    Err(rustix::io::Errno::AGAIN) => {
                        ready.clear_ready();
                        break;
                    }
                    Err(error) => return Err(error.into()),
                }
            }
            if read_any {
                return Ok(if everything {
                    Seen::Everything
                } else {
                    Seen::Names(names)
                });
            }
        }
    }
}

impl ManifestSource {
    pub fn new(dir: PathBuf, hub: Arc<Hub>) -> Self {
        ManifestSource { dir, hub }
    }

    /// Watches until `shutdown` turns true; `on_first_load` is called once the directory has
    /// been read and published the first time.
    pub async fn run(
        &self,
        on_first_load: Box<dyn FnOnce() + Send>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut last = DirFingerprint::default();
        // Watch before the first read, so nothing between the two is missed.
        let mut watcher = match Watcher::new(&self.dir) {
            Ok(watcher) => Some(watcher),
            Err(error) => {
                warn!(dir = %self.dir.display(), %error, "cannot watch the manifest directory; polling it every {POLL_INTERVAL:?}");
                None
            }
        };
        self.full_scan(&mut last, true);
        on_first_load();
        let period = if watcher.is_some() {
            FULL_SCAN_INTERVAL
        } else {
            POLL_INTERVAL
        };
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.reset();
        loop {
            let seen = tokio::select! {
                seen = async {
                    match watcher.as_mut() {
                        Some(watcher) => watcher.next().await,
                        None => std::future::pending().await,
                    }
                } => seen,
                _ = tick.tick() => Ok(Seen::Everything),
                _ = shutdown.changed() => return,
            };
            match seen {
                Ok(Seen::Everything) => self.full_scan(&mut last, false),
                Ok(Seen::Names(names)) => {
                    let names: Vec<String> = names.into_iter().collect();
                    let (changed, removed) = last.refresh(&self.dir, &names);
                    if !changed.is_empty() || !removed.is_empty() {
                        self.load(changed, removed);
                    }
                }
                Err(error) => {
                    warn!(dir = %self.dir.display(), %error, "manifest directory watch failed; polling it every {POLL_INTERVAL:?}");
                    watcher = None;
                    tick = tokio::time::interval(POLL_INTERVAL);
                }
            }
        }
    }

    /// Stamps the whole directory and loads what differs from `last`. `first`: publish even
    /// if the directory is empty or unreadable, so the first load always completes.
    fn full_scan(&self, last: &mut DirFingerprint, first: bool) {
        let now = match manifest::fingerprint(&self.dir) {
            Ok(now) => now,
            Err(error) => {
                warn!(dir = %self.dir.display(), %error, "cannot read manifest directory; keeping the last config");
                if first {
                    self.load(Vec::new(), Vec::new());
                }
                return;
            }
        };
        let (changed, removed) = last.changes(&now);
        *last = now;
        if first || !changed.is_empty() || !removed.is_empty() {
            self.load(changed, removed);
        }
    }

    fn load(&self, changed: Vec<String>, removed: Vec<String>) {
        debug!(
            changed = changed.len(),
            removed = removed.len(),
            "manifest files changed"
        );
        let files = manifest::load_files(&self.dir, &changed);
        self.hub
            .edit(|controller| controller.apply_manifest_files(files, &removed));
    }
}
