//! Staging a worktree the agent had, against a racer: a background thread
//! swaps a staged file between a regular file and a symlink to a 45-byte
//! host file (the stand-in for a key or `/proc/self/environ`), with an
//! `ident` attribute on every path, across 50 commits. The host file's
//! bytes never appear in any commit. Also: special files and links that
//! leave the worktree are refused, a huge sparse file is refused without
//! being read, and ignored build output is not counted.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use git2::Repository;
use paid_core::{
    CommitRequest, Ids, Project, ProjectId, RandomIds, RepoRef, RunId, Workspaces, Worktree, WorktreeLimits,
    WorktreeRequest,
};
use paid_github::{GitWorkspaces, GitWorkspacesConfig};

const SECRET: &[u8; 45] = b"HOST-SECRET-0123456789abcdefghijklmnopqrstuv\n";

fn sh(dir: &Path, script: &str) {
    let out = std::process::Command::new("sh")
        .args(["-c", script])
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "T")
        .env("GIT_AUTHOR_EMAIL", "t@localhost")
        .env("GIT_COMMITTER_NAME", "T")
        .env("GIT_COMMITTER_EMAIL", "t@localhost")
        .output()
        .unwrap();
    assert!(out.status.success(), "{script}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A bare remote whose `main` has a README and `* ident` attributes, and a
/// worktree of a run on it.
async fn worktree(dir: &Path) -> (GitWorkspaces, Worktree) {
    let seed = dir.join("seed");
    std::fs::create_dir_all(&seed).unwrap();
    std::fs::write(seed.join("README.md"), "# app\n").unwrap();
    std::fs::write(seed.join(".gitattributes"), "* ident\n").unwrap();
    std::fs::write(seed.join(".gitignore"), "target/\n").unwrap();
    sh(&seed, "git init -q -b main && git add -A && git commit -q -m seed && git clone -q --bare . ../remote.git");
    let ws = GitWorkspaces::new(GitWorkspacesConfig::new(dir.join("ws")));
    let project = Project::new(
        ProjectId(RandomIds.uuid()),
        RepoRef::new("octo", "app"),
        dir.join("remote.git").display().to_string(),
        chrono::Utc::now(),
    );
    ws.ensure_mirror(&project).await.unwrap();
    let wt = ws
        .create_worktree(&WorktreeRequest { project: &project, run_id: RunId(RandomIds.uuid()), branch: "paid/1-race" })
        .await
        .unwrap();
    (ws, wt)
}

fn commit<'a>(wt: &'a Worktree, message: &'a str, limits: WorktreeLimits) -> CommitRequest<'a> {
    CommitRequest { worktree: wt, message, author_name: "Paid", author_email: "paid@localhost", limits }
}

/// Every blob reachable from HEAD's history in the worktree's repository.
fn all_blobs(wt: &Worktree) -> Vec<Vec<u8>> {
    let repo = Repository::open(&wt.path).unwrap();
    let mut walk = repo.revwalk().unwrap();
    walk.push_head().unwrap();
    let mut blobs = Vec::new();
    for oid in walk {
        let tree = repo.find_commit(oid.unwrap()).unwrap().tree().unwrap();
        tree.walk(git2::TreeWalkMode::PreOrder, |_, entry| {
            if let Ok(blob) = entry.to_object(&repo).and_then(|o| o.peel_to_blob()) {
                blobs.push(blob.content().to_vec());
            }
            git2::TreeWalkResult::Ok
        })
        .unwrap();
    }
    blobs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_symlink_swap_race_never_commits_the_host_file() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("host-secret");
    std::fs::write(&secret, SECRET).unwrap();
    let (ws, wt) = worktree(dir.path()).await;

    let stop = Arc::new(AtomicBool::new(false));
    let swaps = Arc::new(AtomicUsize::new(0));
    let racer = std::thread::spawn({
        let (stop, swaps, root, secret) = (stop.clone(), swaps.clone(), wt.path.clone(), secret.clone());
        // The staging file is outside the worktree (same filesystem), so
        // only `victim.txt` changes, by atomic renames.
        let tmp = dir.path().join("victim.tmp");
        move || {
            let victim = root.join("victim.txt");
            while !stop.load(Ordering::Relaxed) {
                std::fs::write(&tmp, "$Id$ harmless\n").unwrap();
                std::fs::rename(&tmp, &victim).unwrap();
                // not an assertion: paces the racing writer so its renames interleave with the snapshot
                std::thread::sleep(std::time::Duration::from_micros(500));
                std::os::unix::fs::symlink(&secret, &tmp).unwrap();
                std::fs::rename(&tmp, &victim).unwrap();
                // not an assertion: paces the racing writer, as above
                std::thread::sleep(std::time::Duration::from_micros(500));
                swaps.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
    let (mut committed, mut refused) = (0, 0);
    for i in 0..50 {
        std::fs::write(wt.path.join("counter.txt"), format!("{i}\n")).unwrap();
        match ws.commit_all(&commit(&wt, &format!("commit {i}"), WorktreeLimits::default())).await {
            Ok(_) => committed += 1,
            // Refusing is safe; what matters is what a commit holds.
            Err(_) => refused += 1,
        }
    }
    stop.store(true, Ordering::Relaxed);
    racer.join().unwrap();
    assert!(swaps.load(Ordering::Relaxed) >= 5, "the racer ran");
    assert_eq!(committed + refused, 50);
    assert!(committed > 0, "some commits were made while racing");
    // Not even a part of it (a read sized by the regular file's `lstat`
    // would take only its first bytes).
    let marker = &SECRET[..12];
    for blob in all_blobs(&wt) {
        assert!(!blob.windows(marker.len()).any(|w| w == marker), "the host file was committed");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsafe_entries_are_refused_and_nothing_is_committed() {
    let dir = tempfile::tempdir().unwrap();
    let (ws, wt) = worktree(dir.path()).await;
    let limits = WorktreeLimits::default();
    let head = |wt: &Worktree| Repository::open(&wt.path).unwrap().head().unwrap().target().unwrap();
    let before = head(&wt);

    // A link that leaves the worktree.
    std::os::unix::fs::symlink("../../../etc/hostname", wt.path.join("leak")).unwrap();
    let err = ws.commit_all(&commit(&wt, "leak", limits)).await.unwrap_err();
    assert!(err.to_string().contains("leak") && err.to_string().contains("outside the worktree"), "{err}");
    std::fs::remove_file(wt.path.join("leak")).unwrap();
    // A FIFO.
    sh(&wt.path, "mkfifo pipe");
    let err = ws.commit_all(&commit(&wt, "fifo", limits)).await.unwrap_err();
    assert!(err.to_string().contains("pipe"), "{err}");
    std::fs::remove_file(wt.path.join("pipe")).unwrap();
    assert_eq!(head(&wt), before, "nothing was committed");

    // A link inside the worktree is committed as a link.
    std::os::unix::fs::symlink("README.md", wt.path.join("readme-link")).unwrap();
    // Ignored build output is neither committed nor counted.
    std::fs::create_dir_all(wt.path.join("target")).unwrap();
    std::fs::File::create(wt.path.join("target/huge")).unwrap().set_len(10 << 30).unwrap();
    // `ident` is not applied: the bytes are stored as written.
    std::fs::write(wt.path.join("id.txt"), "$Id$\n").unwrap();
    ws.check_limits(&wt, &limits).await.unwrap();
    ws.commit_all(&commit(&wt, "ok", limits)).await.unwrap().unwrap();
    let repo = Repository::open(&wt.path).unwrap();
    let tree = repo.head().unwrap().peel_to_tree().unwrap();
    let link = tree.get_name("readme-link").unwrap();
    assert_eq!(link.filemode(), 0o120000);
    assert_eq!(link.to_object(&repo).unwrap().peel_to_blob().unwrap().content(), b"README.md");
    let id = tree.get_name("id.txt").unwrap().to_object(&repo).unwrap().peel_to_blob().unwrap();
    assert_eq!(id.content(), b"$Id$\n");
    assert!(tree.get_name("target").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_sparse_file_and_too_many_files_are_refused_unread() {
    let dir = tempfile::tempdir().unwrap();
    let (ws, wt) = worktree(dir.path()).await;
    let limits = WorktreeLimits::default();
    // 2 GiB apparent, no blocks: refused from its size, never read.
    std::fs::File::create(wt.path.join("big.bin")).unwrap().set_len(2 << 30).unwrap();
    let err = ws.check_limits(&wt, &limits).await.unwrap_err();
    assert_eq!(err.code(), "worktree_limit", "{err}");
    let err = ws.commit_all(&commit(&wt, "big", limits)).await.unwrap_err();
    assert_eq!(err.code(), "worktree_limit", "{err}");
    std::fs::remove_file(wt.path.join("big.bin")).unwrap();
    // More files than the cap.
    let few = WorktreeLimits { files: 50, ..limits };
    std::fs::create_dir_all(wt.path.join("many")).unwrap();
    for i in 0..60 {
        std::fs::write(wt.path.join(format!("many/{i}")), "x").unwrap();
    }
    let err = ws.commit_all(&commit(&wt, "many", few)).await.unwrap_err();
    assert!(err.to_string().contains("more than 50 files"), "{err}");
    ws.commit_all(&commit(&wt, "many", limits)).await.unwrap().unwrap();
}
