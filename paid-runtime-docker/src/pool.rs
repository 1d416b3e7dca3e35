//! The warm pool: its bookkeeping, and the slot directories that let a
//! pre-created sandbox take a run's worktree.
//!
//! # How a pooled sandbox gets the worktree
//!
//! A bind mount cannot be added to a running container, so each pooled
//! sandbox is created with its own empty *slot* directory,
//! `<root>/<owner>-<hex>`, bind-mounted at the mount point. When a run
//! claims it:
//!
//! 1. a record `<slot>.json` is written first (container, worktree path,
//!    run, project, the spec's environment; mode 0600), so a crash at any
//!    later point can be undone;
//! 2. every top-level entry of the worktree (`.git` included) is *renamed*
//!    into the slot: O(entries), no copying, because the root is on the
//!    same filesystem (checked; otherwise the claim falls back to a cold
//!    create);
//! 3. the now empty worktree directory is replaced by a symbolic link to
//!    the slot, so host-side git (commit, diff, push) keeps working on the
//!    path the engine knows;
//! 4. the container is renamed `<prefix>-<run id>-<hex>`, since labels
//!    cannot change after creation; the run's environment is applied to
//!    every exec instead of the container's.
//!
//! On [`remove`](paid_core::SandboxRuntime::remove), after the container is
//! gone, the link is replaced by the slot directory itself (one rename), so
//! the worktree is an ordinary directory again. A step that fails is rolled
//! back and the claim falls back to a cold create with the worktree
//! untouched.
//!
//! The sandbox sees exactly what a cold one sees: the worktree's files at
//! the mount point, the only writable mount, with the same permissions
//! (`make_writable` runs on the slot after the move). The slot's parent is
//! mode 0700, so other local users cannot reach a worktree through it. The
//! trade-off: while a pooled sandbox runs, the worktree path is a symbolic
//! link, so host tools that refuse links (or `lstat` the path) see a link;
//! and the pool root must share the worktrees' filesystem.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use paid_core::SandboxSpec;
use serde::{Deserialize, Serialize};

use crate::config::WarmPoolConfig;
use crate::error::DockerError;

/// What a pooled sandbox must match to serve a spec: everything fixed at
/// container creation.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct PoolKey {
    image: String,
    mount_at: String,
    memory_bytes: u64,
    cpus_bits: u64,
    pids: i64,
    tmp_bytes: u64,
}

impl PoolKey {
    /// The key serving `spec`.
    pub(crate) fn of(spec: &SandboxSpec) -> Self {
        Self {
            image: spec.image.clone(),
            mount_at: spec.mount_at.clone(),
            memory_bytes: spec.limits.memory_bytes,
            cpus_bits: spec.limits.cpus.to_bits(),
            pids: spec.limits.pids,
            tmp_bytes: spec.limits.tmp_bytes,
        }
    }
}

/// A ready pooled sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PoolEntry {
    /// Container id.
    pub(crate) id: String,
    /// Index of its endpoint.
    pub(crate) endpoint: usize,
    /// Its slot directory.
    pub(crate) slot: PathBuf,
    /// When it became ready.
    pub(crate) born: Instant,
}

/// How many sandboxes of one image are ready or being created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolStatus {
    /// The image.
    pub image: String,
    /// The mount point.
    pub mount_at: String,
    /// Ready to be claimed.
    pub ready: usize,
    /// Being created.
    pub filling: usize,
}

#[derive(Debug)]
struct Slots {
    template: SandboxSpec,
    ready: VecDeque<PoolEntry>,
    filling: usize,
}

/// The pool's bookkeeping. No I/O: the runtime creates and destroys.
#[derive(Debug)]
pub(crate) struct Pool {
    pub(crate) config: WarmPoolConfig,
    root: Mutex<Option<PathBuf>>,
    keys: Mutex<HashMap<PoolKey, Slots>>,
    closed: std::sync::atomic::AtomicBool,
}

/// What [`Pool::take`] found.
#[derive(Debug, Default)]
pub(crate) struct Taken {
    /// A fresh entry for the caller, if any.
    pub(crate) entry: Option<PoolEntry>,
    /// Entries too old to hand out: destroy them.
    pub(crate) stale: Vec<PoolEntry>,
}

impl Pool {
    /// A pool, or `None` when `config` keeps no sandboxes.
    pub(crate) fn new(config: &WarmPoolConfig) -> Option<Self> {
        (config.per_image > 0).then(|| Self {
            config: config.clone(),
            root: Mutex::new(config.root.clone()),
            keys: Mutex::default(),
            closed: std::sync::atomic::AtomicBool::new(false),
        })
    }

    fn keys(&self) -> std::sync::MutexGuard<'_, HashMap<PoolKey, Slots>> {
        self.keys.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn max_idle(&self) -> Duration {
        Duration::from_secs(self.config.max_idle_secs)
    }

    /// The slot root: configured, or `.paid-warm-pool` beside `worktree`.
    pub(crate) fn root_for(&self, worktree: &Path) -> PathBuf {
        let mut root = self.root.lock().unwrap_or_else(|p| p.into_inner());
        root.get_or_insert_with(|| worktree.parent().unwrap_or(Path::new("/")).join(".paid-warm-pool")).clone()
    }

    /// The slot root if known yet.
    pub(crate) fn root(&self) -> Option<PathBuf> {
        self.root.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Makes the pool keep sandboxes like `spec`; returns their key.
    pub(crate) fn register(&self, spec: &SandboxSpec) -> PoolKey {
        let key = PoolKey::of(spec);
        self.keys().entry(key.clone()).or_insert_with(|| Slots {
            template: spec.clone(),
            ready: VecDeque::new(),
            filling: 0,
        });
        key
    }

    /// Takes a fresh entry for `spec` (registering its key when new).
    pub(crate) fn take(&self, spec: &SandboxSpec) -> Taken {
        let key = self.register(spec);
        let mut keys = self.keys();
        let Some(slots) = keys.get_mut(&key) else { return Taken::default() };
        let mut taken = Taken::default();
        while let Some(entry) = slots.ready.pop_front() {
            if entry.born.elapsed() > self.max_idle() {
                taken.stale.push(entry);
            } else {
                taken.entry = Some(entry);
                break;
            }
        }
        taken
    }

    /// Reserves the creates that bring `key` back to `per_image` and
    /// returns the spec to create them from, with how many.
    pub(crate) fn reserve(&self, key: &PoolKey) -> Option<(SandboxSpec, usize)> {
        if self.is_closed() {
            return None;
        }
        let mut keys = self.keys();
        let slots = keys.get_mut(key)?;
        let deficit = self.config.per_image.saturating_sub(slots.ready.len() + slots.filling);
        slots.filling += deficit;
        (deficit > 0).then(|| (slots.template.clone(), deficit))
    }

    /// Records the end of a create reserved for `key`. Returns the entry
    /// back when the pool was closed meanwhile: the caller destroys it, then
    /// calls [`release`](Self::release), so a drain waits for that too.
    pub(crate) fn finish(&self, key: &PoolKey, created: Option<PoolEntry>) -> Option<PoolEntry> {
        let closed = self.is_closed();
        let mut keys = self.keys();
        let Some(slots) = keys.get_mut(key) else { return created };
        match created {
            Some(entry) if closed => Some(entry),
            created => {
                slots.filling = slots.filling.saturating_sub(1);
                slots.ready.extend(created);
                None
            }
        }
    }

    /// Ends a create whose entry [`finish`](Self::finish) handed back, once
    /// it is destroyed.
    pub(crate) fn release(&self, key: &PoolKey) {
        if let Some(slots) = self.keys().get_mut(key) {
            slots.filling = slots.filling.saturating_sub(1);
        }
    }

    /// Takes every ready entry older than `max_idle_secs` out of the pool.
    pub(crate) fn take_stale(&self) -> Vec<PoolEntry> {
        let max_idle = self.max_idle();
        let mut stale = Vec::new();
        for slots in self.keys().values_mut() {
            let (old, fresh): (Vec<_>, Vec<_>) = slots.ready.drain(..).partition(|e| e.born.elapsed() > max_idle);
            slots.ready = fresh.into();
            stale.extend(old);
        }
        stale
    }

    /// Every key, for refills.
    pub(crate) fn all_keys(&self) -> Vec<PoolKey> {
        self.keys().keys().cloned().collect()
    }

    /// Whether container `id` is a ready entry of this pool.
    pub(crate) fn holds(&self, id: &str) -> bool {
        self.keys().values().any(|slots| slots.ready.iter().any(|e| e.id == id))
    }

    /// Closes the pool (no more refills) and takes every ready entry out.
    /// Returns them and how many creates are still running.
    pub(crate) fn drain(&self, close: bool) -> (Vec<PoolEntry>, usize) {
        if close {
            self.closed.store(true, std::sync::atomic::Ordering::SeqCst);
        }
        let mut keys = self.keys();
        let filling = keys.values().map(|s| s.filling).sum();
        (keys.values_mut().flat_map(|s| s.ready.drain(..)).collect(), filling)
    }

    /// Whether [`drain`](Self::drain) closed the pool.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Reopens a closed pool.
    pub(crate) fn reopen(&self) {
        self.closed.store(false, std::sync::atomic::Ordering::SeqCst);
    }

    /// Ready and filling counts per key.
    pub(crate) fn status(&self) -> Vec<PoolStatus> {
        let mut all: Vec<PoolStatus> = self
            .keys()
            .values()
            .map(|s| PoolStatus {
                image: s.template.image.clone(),
                mount_at: s.template.mount_at.clone(),
                ready: s.ready.len(),
                filling: s.filling,
            })
            .collect();
        all.sort_by(|a, b| (&a.image, &a.mount_at).cmp(&(&b.image, &b.mount_at)));
        all
    }
}

/// What a slot's `<slot>.json` records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SlotRecord {
    /// The container the slot is mounted in.
    pub(crate) container: String,
    /// The worktree moved in, once claimed.
    pub(crate) origin: Option<PathBuf>,
    /// The run that claimed it.
    pub(crate) run_id: Option<String>,
    /// The run's project.
    pub(crate) project_id: Option<String>,
    /// The spec's environment, applied to every exec.
    pub(crate) env: BTreeMap<String, String>,
}

fn slot_err(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> DockerError {
    let path = path.to_path_buf();
    move |source| DockerError::Slot { op, path, source }
}

/// `<slot>.json`.
pub(crate) fn record_path(slot: &Path) -> PathBuf {
    let mut name = slot.file_name().unwrap_or_default().to_os_string();
    name.push(".json");
    slot.with_file_name(name)
}

/// Creates `root` (mode 0700) and a fresh empty slot in it named `name`,
/// writable for the sandbox user.
pub(crate) fn create_slot(root: &Path, name: &str) -> Result<PathBuf, DockerError> {
    fs::create_dir_all(root).map_err(slot_err("create pool root", root))?;
    fs::set_permissions(root, fs::Permissions::from_mode(0o700)).map_err(slot_err("restrict pool root", root))?;
    let slot = root.join(name);
    fs::create_dir(&slot).map_err(slot_err("create slot", &slot))?;
    fs::set_permissions(&slot, fs::Permissions::from_mode(0o777)).map_err(slot_err("open slot", &slot))?;
    Ok(slot)
}

/// Writes `<slot>.json` atomically, mode 0600.
pub(crate) fn write_record(slot: &Path, record: &SlotRecord) -> Result<(), DockerError> {
    let path = record_path(slot);
    let tmp = path.with_extension("json.tmp");
    let text = serde_json::to_vec_pretty(record).map_err(|e| DockerError::Slot {
        op: "encode slot record",
        path: path.clone(),
        source: io::Error::other(e),
    })?;
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(slot_err("write slot record", &tmp))?;
        file.write_all(&text).map_err(slot_err("write slot record", &tmp))?;
    }
    fs::rename(&tmp, &path).map_err(slot_err("write slot record", &path))
}

/// Reads `<slot>.json`, `None` when there is none.
pub(crate) fn read_record(slot: &Path) -> Result<Option<SlotRecord>, DockerError> {
    let path = record_path(slot);
    match fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| DockerError::Slot {
            op: "read slot record",
            path,
            source: io::Error::new(io::ErrorKind::InvalidData, e),
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(slot_err("read slot record", &path)(e)),
    }
}

/// Moves the worktree's entries into `slot` and leaves a link to the slot
/// at the worktree's path (see the module docs). Rolls back on failure.
pub(crate) fn attach(slot: &Path, worktree: &Path) -> Result<(), DockerError> {
    let meta = fs::symlink_metadata(worktree).map_err(slot_err("read worktree", worktree))?;
    if !meta.is_dir() {
        return Err(DockerError::Slot {
            op: "claim a pooled sandbox",
            path: worktree.to_path_buf(),
            source: io::Error::new(io::ErrorKind::NotADirectory, "the worktree must be a directory, not a link"),
        });
    }
    let slot_meta = fs::metadata(slot).map_err(slot_err("read slot", slot))?;
    if slot_meta.dev() != meta.dev() {
        return Err(DockerError::Slot {
            op: "claim a pooled sandbox",
            path: worktree.to_path_buf(),
            source: io::Error::new(
                io::ErrorKind::CrossesDevices,
                format!("the pool root {} is on another filesystem", slot.parent().unwrap_or(slot).display()),
            ),
        });
    }
    let names: Vec<_> = fs::read_dir(worktree)
        .map_err(slot_err("list worktree", worktree))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()
        .map_err(slot_err("list worktree", worktree))?;
    let mut moved = Vec::with_capacity(names.len());
    let rollback = |moved: &[std::ffi::OsString]| {
        for name in moved {
            if let Err(e) = fs::rename(slot.join(name), worktree.join(name)) {
                tracing::error!(slot = %slot.display(), entry = ?name, error = %e, "could not move an entry back");
            }
        }
    };
    for name in names {
        if let Err(e) = fs::rename(worktree.join(&name), slot.join(&name)) {
            rollback(&moved);
            return Err(slot_err("move worktree entry into slot", &worktree.join(&name))(e));
        }
        moved.push(name);
    }
    if let Err(e) = fs::remove_dir(worktree) {
        rollback(&moved);
        return Err(slot_err("replace worktree by a link", worktree)(e));
    }
    if let Err(e) = std::os::unix::fs::symlink(slot, worktree) {
        let _ = fs::create_dir(worktree);
        rollback(&moved);
        return Err(slot_err("link worktree to slot", worktree)(e));
    }
    Ok(())
}

/// What [`detach`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Detached {
    /// The slot became the worktree directory again.
    Restored,
    /// The worktree was gone or replaced: the slot was deleted.
    Discarded,
}

/// Undoes [`attach`] once the container is gone: the link at `origin`
/// (when it still points at `slot`) is replaced by the slot directory;
/// otherwise the slot is deleted. The record goes either way.
pub(crate) fn detach(slot: &Path, origin: Option<&Path>) -> Result<Detached, DockerError> {
    let outcome = match origin {
        Some(origin) if fs::read_link(origin).is_ok_and(|target| target == slot) => {
            fs::remove_file(origin).map_err(slot_err("remove worktree link", origin))?;
            fs::rename(slot, origin).map_err(slot_err("move slot back to the worktree", origin))?;
            Detached::Restored
        }
        _ => {
            match fs::remove_dir_all(slot) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(slot_err("delete slot", slot)(e)),
            }
            Detached::Discarded
        }
    };
    match fs::remove_file(record_path(slot)) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(slot_err("delete slot record", &record_path(slot))(e)),
    }
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use paid_core::{ProjectId, ResourceLimits, RunId};
    use uuid::Uuid;

    use super::*;

    fn spec(image: &str, worktree: &Path) -> SandboxSpec {
        SandboxSpec {
            run_id: RunId(Uuid::from_u128(1)),
            project_id: ProjectId(Uuid::from_u128(2)),
            image: image.into(),
            worktree: worktree.to_path_buf(),
            mount_at: "/workspace".into(),
            env: BTreeMap::new(),
            limits: ResourceLimits::default(),
        }
    }

    fn entry(id: &str, age: Duration) -> PoolEntry {
        PoolEntry {
            id: id.into(),
            endpoint: 0,
            slot: PathBuf::from(format!("/pool/{id}")),
            born: Instant::now().checked_sub(age).unwrap(),
        }
    }

    #[test]
    fn keys_separate_what_creation_fixes() {
        let a = spec("img:a", Path::new("/w/1"));
        let mut b = spec("img:a", Path::new("/w/2"));
        b.env.insert("X".into(), "y".into());
        assert_eq!(PoolKey::of(&a), PoolKey::of(&b), "worktree and env are attached at claim time");
        let mut c = a.clone();
        c.limits.memory_bytes = 1 << 30;
        assert_ne!(PoolKey::of(&a), PoolKey::of(&c));
        assert_ne!(PoolKey::of(&a), PoolKey::of(&spec("img:b", Path::new("/w/1"))));
    }

    #[test]
    fn the_pool_refills_to_its_size_and_hands_out_fresh_entries_first_in_first_out() {
        let pool = Pool::new(&WarmPoolConfig { per_image: 2, root: None, max_idle_secs: 60 }).unwrap();
        let s = spec("img", Path::new("/w/1"));
        let key = PoolKey::of(&s);
        assert!(pool.take(&s).entry.is_none(), "empty at first; the key is now known");
        let (template, n) = pool.reserve(&key).unwrap();
        assert_eq!((template.image.as_str(), n), ("img", 2));
        assert!(pool.reserve(&key).is_none(), "both creates are already reserved");
        assert_eq!(pool.finish(&key, Some(entry("a", Duration::ZERO))), None);
        assert_eq!(pool.finish(&key, None), None, "a failed create frees its reservation");
        assert_eq!(
            pool.status()[0],
            PoolStatus { image: "img".into(), mount_at: "/workspace".into(), ready: 1, filling: 0 }
        );
        assert_eq!(pool.reserve(&key).unwrap().1, 1);
        assert_eq!(pool.finish(&key, Some(entry("b", Duration::ZERO))), None);
        assert!(pool.holds("a") && pool.holds("b"));
        assert_eq!(pool.take(&s).entry.unwrap().id, "a");
        assert_eq!(pool.take(&s).entry.unwrap().id, "b");
        assert!(pool.take(&s).entry.is_none());
    }

    #[test]
    fn stale_entries_are_not_handed_out() {
        let pool = Pool::new(&WarmPoolConfig { per_image: 3, root: None, max_idle_secs: 60 }).unwrap();
        let s = spec("img", Path::new("/w/1"));
        let key = PoolKey::of(&s);
        pool.take(&s);
        pool.reserve(&key);
        pool.finish(&key, Some(entry("old", Duration::from_secs(120))));
        pool.finish(&key, Some(entry("new", Duration::ZERO)));
        pool.finish(&key, Some(entry("old2", Duration::from_secs(61))));
        let taken = pool.take(&s);
        assert_eq!(taken.entry.unwrap().id, "new");
        assert_eq!(taken.stale.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(), ["old"]);
        assert_eq!(pool.take_stale().iter().map(|e| e.id.as_str()).collect::<Vec<_>>(), ["old2"]);
        assert_eq!(pool.status()[0].ready, 0);
    }

    #[test]
    fn a_closed_pool_returns_late_entries_and_reserves_nothing() {
        let pool = Pool::new(&WarmPoolConfig { per_image: 1, root: None, max_idle_secs: 60 }).unwrap();
        let s = spec("img", Path::new("/w/1"));
        let key = PoolKey::of(&s);
        pool.take(&s);
        pool.reserve(&key);
        let (drained, filling) = pool.drain(true);
        assert_eq!((drained.len(), filling), (0, 1));
        assert_eq!(pool.finish(&key, Some(entry("late", Duration::ZERO))).unwrap().id, "late");
        assert_eq!(pool.drain(true).1, 1, "still in flight until destroyed");
        pool.release(&key);
        assert_eq!(pool.drain(true).1, 0);
        assert!(pool.reserve(&key).is_none());
        pool.reopen();
        assert_eq!(pool.reserve(&key).unwrap().1, 1);
        assert!(Pool::new(&WarmPoolConfig::default()).is_none(), "per_image 0 keeps no pool");
    }

    #[test]
    fn the_root_defaults_beside_the_first_worktree() {
        let pool = Pool::new(&WarmPoolConfig { per_image: 1, ..Default::default() }).unwrap();
        assert_eq!(pool.root(), None);
        assert_eq!(
            pool.root_for(Path::new("/var/lib/paid/worktrees/r1")),
            Path::new("/var/lib/paid/worktrees/.paid-warm-pool")
        );
        assert_eq!(pool.root_for(Path::new("/elsewhere/r2")), Path::new("/var/lib/paid/worktrees/.paid-warm-pool"));
    }

    fn tree(dir: &Path) {
        fs::create_dir_all(dir.join("src")).unwrap();
        fs::write(dir.join("src/lib.rs"), "fn main() {}\n").unwrap();
        fs::write(dir.join(".git"), "gitdir: /mirror/worktrees/r1\n").unwrap();
        fs::write(dir.join("README"), "hi\n").unwrap();
    }

    fn listing(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> =
            fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        names
    }

    #[test]
    fn attach_moves_the_tree_in_and_detach_moves_it_back() {
        let base = tempfile::tempdir().unwrap();
        let worktree = base.path().join("worktrees/r1");
        tree(&worktree);
        let slot = create_slot(&base.path().join("pool"), "s1").unwrap();
        assert_eq!(fs::metadata(base.path().join("pool")).unwrap().permissions().mode() & 0o777, 0o700);
        let record = SlotRecord {
            container: "c1".into(),
            origin: Some(worktree.clone()),
            run_id: Some("r1".into()),
            project_id: Some("p1".into()),
            env: BTreeMap::from([("K".into(), "v".into())]),
        };
        write_record(&slot, &record).unwrap();
        assert_eq!(read_record(&slot).unwrap(), Some(record));
        assert_eq!(fs::metadata(record_path(&slot)).unwrap().permissions().mode() & 0o777, 0o600);

        attach(&slot, &worktree).unwrap();
        assert_eq!(fs::read_link(&worktree).unwrap(), slot);
        assert_eq!(listing(&slot), [".git", "README", "src"]);
        assert_eq!(fs::read_to_string(worktree.join("src/lib.rs")).unwrap(), "fn main() {}\n", "through the link");
        fs::write(slot.join("new.txt"), "from the sandbox\n").unwrap();

        assert_eq!(detach(&slot, Some(&worktree)).unwrap(), Detached::Restored);
        assert!(fs::symlink_metadata(&worktree).unwrap().is_dir());
        assert_eq!(listing(&worktree), [".git", "README", "new.txt", "src"]);
        assert!(!slot.exists() && !record_path(&slot).exists());
        assert_eq!(detach(&slot, Some(&worktree)).unwrap(), Detached::Discarded, "idempotent");
        assert_eq!(listing(&worktree), [".git", "README", "new.txt", "src"], "a second detach leaves the worktree");
    }

    #[test]
    fn a_worktree_removed_meanwhile_discards_the_slot() {
        let base = tempfile::tempdir().unwrap();
        let worktree = base.path().join("w");
        tree(&worktree);
        let slot = create_slot(&base.path().join("pool"), "s1").unwrap();
        attach(&slot, &worktree).unwrap();
        fs::remove_file(&worktree).unwrap();
        assert_eq!(detach(&slot, Some(&worktree)).unwrap(), Detached::Discarded);
        assert!(!slot.exists() && !worktree.exists());
    }

    #[test]
    fn attach_refuses_links_and_rolls_back() {
        let base = tempfile::tempdir().unwrap();
        let worktree = base.path().join("w");
        tree(&worktree);
        let link = base.path().join("link");
        std::os::unix::fs::symlink(&worktree, &link).unwrap();
        let slot = create_slot(&base.path().join("pool"), "s1").unwrap();
        assert!(matches!(attach(&slot, &link), Err(DockerError::Slot { .. })));

        // A slot that is not empty makes one rename fail (a directory onto a
        // non-empty directory): everything moved so far goes back.
        fs::create_dir_all(slot.join("src/x")).unwrap();
        let err = attach(&slot, &worktree).unwrap_err();
        assert!(matches!(err, DockerError::Slot { op: "move worktree entry into slot", .. }), "{err}");
        assert!(fs::symlink_metadata(&worktree).unwrap().is_dir());
        assert_eq!(listing(&worktree), [".git", "README", "src"]);
    }
}
