//! `GitWorkspaces` against real git repositories: a bare repository in a
//! temporary directory plays the remote.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use git2::{Oid, Repository, Signature};
use paid_core::policy::branch_name;
use paid_core::{CommitRequest, Ids, Project, ProjectId, RepoRef, RunId, SequentialIds, Workspaces, WorktreeRequest};
use paid_github::{GitWorkspaces, GitWorkspacesConfig};
use pretty_assertions::assert_eq;

const TOKEN: &str = "ghp_never_written_anywhere_0123456789";

/// A bare remote with one commit on `main`.
struct Remote {
    _dir: tempfile::TempDir,
    path: PathBuf,
    initial: Oid,
}

impl Remote {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.git");
        let repo = Repository::init_bare(&path).unwrap();
        let initial = commit_files(
            &repo,
            "refs/heads/main",
            None,
            &[("README.md", "# app\n"), ("old.txt", "to be deleted\n"), ("src/lib.rs", "pub fn f() {}\n")],
            "initial",
        );
        repo.set_head("refs/heads/main").unwrap();
        Self { _dir: dir, path, initial }
    }

    fn url(&self) -> String {
        self.path.display().to_string()
    }

    fn branch(&self, branch: &str) -> Option<Oid> {
        Repository::open_bare(&self.path).unwrap().refname_to_id(&format!("refs/heads/{branch}")).ok()
    }

    /// Someone else commits on top of `branch` on the remote.
    fn commit_on(&self, branch: &str, file: &str) -> Oid {
        let repo = Repository::open_bare(&self.path).unwrap();
        let refname = format!("refs/heads/{branch}");
        let parent = repo.refname_to_id(&refname).unwrap();
        commit_files(&repo, &refname, Some(parent), &[(file, "someone else's work\n")], "human commit")
    }
}

/// Commits `files` on top of `parent`'s tree (or an empty tree) and moves `refname`.
fn commit_files(repo: &Repository, refname: &str, parent: Option<Oid>, files: &[(&str, &str)], msg: &str) -> Oid {
    let parent = parent.map(|p| repo.find_commit(p).unwrap());
    let mut index = git2::Index::new().unwrap();
    if let Some(p) = &parent {
        index.read_tree(&p.tree().unwrap()).unwrap();
    }
    for (path, content) in files {
        let blob = repo.blob(content.as_bytes()).unwrap();
        let entry = git2::IndexEntry {
            ctime: git2::IndexTime::new(0, 0),
            mtime: git2::IndexTime::new(0, 0),
            dev: 0,
            ino: 0,
            mode: 0o100644,
            uid: 0,
            gid: 0,
            file_size: content.len() as u32,
            id: blob,
            flags: 0,
            flags_extended: 0,
            path: path.as_bytes().to_vec(),
        };
        index.add(&entry).unwrap();
    }
    let tree = repo.find_tree(index.write_tree_to(repo).unwrap()).unwrap();
    let sig = Signature::now("Someone", "someone@example.com").unwrap();
    let parents: Vec<&git2::Commit<'_>> = parent.iter().collect();
    let oid = repo.commit(None, &sig, &sig, msg, &tree, &parents).unwrap();
    repo.reference(refname, oid, true, msg).unwrap();
    oid
}

struct Setup {
    _root: tempfile::TempDir,
    root: PathBuf,
    ws: GitWorkspaces,
    project: Project,
    ids: SequentialIds,
}

fn setup(remote: &Remote) -> Setup {
    let root = tempfile::tempdir().unwrap();
    let path = root.path().to_path_buf();
    let ws = GitWorkspaces::new(GitWorkspacesConfig::new(&path).token(TOKEN.to_string().into()));
    let ids = SequentialIds::default();
    let project = Project::new(ProjectId(ids.uuid()), RepoRef::new("octo", "app"), remote.url(), chrono::Utc::now());
    Setup { _root: root, root: path, ws, project, ids }
}

impl Setup {
    fn run_id(&self) -> RunId {
        RunId(self.ids.uuid())
    }

    async fn worktree(&self, run_id: RunId, branch: &str) -> paid_core::Worktree {
        self.ws.create_worktree(&WorktreeRequest { project: &self.project, run_id, branch }).await.unwrap()
    }

    async fn commit(&self, wt: &paid_core::Worktree, message: &str) -> Option<String> {
        self.ws
            .commit_all(&CommitRequest {
                worktree: wt,
                message,
                author_name: "Paid",
                author_email: "paid@example.com",
                limits: Default::default(),
            })
            .await
            .unwrap()
    }
}

fn write(dir: &Path, file: &str, content: &str) {
    let path = dir.join(file);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, content).unwrap();
}

/// Every file under `dir`, as text where possible.
fn grep_tree(dir: &Path, needle: &str) -> Vec<PathBuf> {
    let mut hits = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else if std::fs::read(&p).unwrap().windows(needle.len()).any(|w| w == needle.as_bytes()) {
                hits.push(p);
            }
        }
    }
    hits
}

#[tokio::test]
async fn mirror_worktree_commit_changed_paths_push() {
    let remote = Remote::new();
    let s = setup(&remote);
    s.ws.ensure_mirror(&s.project).await.unwrap();
    // A second call fetches instead of cloning.
    s.ws.ensure_mirror(&s.project).await.unwrap();
    assert!(s.root.join("mirrors/octo/app.git").is_dir());

    let run = s.run_id();
    let branch = branch_name(12, "Fix the failing test!", "a1b2c3");
    assert_eq!(branch, "paid/12-fix-the-failing-test-a1b2c3");
    let wt = s.worktree(run, &branch).await;
    assert_eq!(wt.path, s.root.join("worktrees").join(run.to_string()));
    assert_eq!(wt.branch, branch);
    assert_eq!(wt.base_commit, remote.initial.to_string());
    assert_eq!(std::fs::read_to_string(wt.path.join("README.md")).unwrap(), "# app\n");

    // Nothing changed yet.
    assert_eq!(s.ws.changed_paths(&wt).await.unwrap(), Vec::<String>::new());
    assert_eq!(s.commit(&wt, "nothing").await, None);

    write(&wt.path, "README.md", "# app\n\nFixed.\n");
    write(&wt.path, "src/new/mod.rs", "pub mod x;\n");
    std::fs::remove_file(wt.path.join("old.txt")).unwrap();
    write(&wt.path, "target/ignored.o", "binary");
    write(&wt.path, ".gitignore", "target/\n");
    let expected = vec![".gitignore", "README.md", "old.txt", "src/new/mod.rs"];
    assert_eq!(s.ws.changed_paths(&wt).await.unwrap(), expected);

    let commit = s.commit(&wt, "Fix #12: Fix the failing test!").await.expect("a commit");
    assert_eq!(s.commit(&wt, "again").await, None, "a clean tree makes no commit");
    // Committed changes still count, relative to the base.
    assert_eq!(s.ws.changed_paths(&wt).await.unwrap(), expected);

    s.ws.push(&s.project, &wt).await.unwrap();
    let pushed = remote.branch(&branch).expect("branch on the remote");
    assert_eq!(pushed.to_string(), commit);
    let repo = Repository::open_bare(&remote.path).unwrap();
    let c = repo.find_commit(pushed).unwrap();
    assert_eq!(c.author().name(), Ok("Paid"));
    assert_eq!(c.message(), Ok("Fix #12: Fix the failing test!"));
    assert_eq!(c.parent_id(0).unwrap(), remote.initial);
    let tree = c.tree().unwrap();
    assert!(tree.get_path(Path::new("old.txt")).is_err(), "the deletion was committed");
    assert!(tree.get_path(Path::new("src/new/mod.rs")).is_ok());
    assert!(tree.get_path(Path::new("target/ignored.o")).is_err(), "ignored files stay out");

    // Pushing the same commit again is a no-op that succeeds.
    s.ws.push(&s.project, &wt).await.unwrap();
    assert_eq!(remote.branch(&branch), Some(pushed));

    // The token was never written anywhere: not in the mirror's config, not in the worktree.
    assert_eq!(grep_tree(&s.root, TOKEN), Vec::<PathBuf>::new());
    let config = std::fs::read_to_string(s.root.join("mirrors/octo/app.git/config")).unwrap();
    assert!(config.contains(&remote.url()), "{config}");
}

#[tokio::test]
async fn create_worktree_is_idempotent_and_reuses_the_branch() {
    let remote = Remote::new();
    let s = setup(&remote);
    s.ws.ensure_mirror(&s.project).await.unwrap();
    let run = s.run_id();
    let wt = s.worktree(run, "paid/1-x-000001").await;
    write(&wt.path, "work.txt", "in progress\n");
    assert_eq!(s.worktree(run, "paid/1-x-000001").await, wt, "the existing worktree is returned as is");
    assert!(wt.path.join("work.txt").exists(), "and left untouched");

    let commit = s.commit(&wt, "work").await.unwrap();
    s.ws.remove(&wt).await.unwrap();
    assert!(!wt.path.exists());
    // Re-created (another worker, or after cleanup): the branch and its commit are reused.
    let again = s.worktree(run, "paid/1-x-000001").await;
    assert_eq!(again, wt);
    assert_eq!(Repository::open(&again.path).unwrap().head().unwrap().target().unwrap().to_string(), commit);
    assert_eq!(s.ws.changed_paths(&again).await.unwrap(), vec!["work.txt"]);

    // A different run may not take a branch another worktree has checked out.
    let err =
        s.ws.create_worktree(&WorktreeRequest { project: &s.project, run_id: s.run_id(), branch: "paid/1-x-000001" })
            .await;
    assert!(err.is_err());
}

#[tokio::test]
async fn remove_deletes_the_directory_and_the_metadata() {
    let remote = Remote::new();
    let s = setup(&remote);
    s.ws.ensure_mirror(&s.project).await.unwrap();
    let run = s.run_id();
    let wt = s.worktree(run, "paid/2-y-000002").await;
    assert!(wt.path.is_dir());
    s.ws.remove(&wt).await.unwrap();
    assert!(!wt.path.exists());
    let mirror = Repository::open_bare(s.root.join("mirrors/octo/app.git")).unwrap();
    assert!(mirror.find_worktree(&run.to_string()).is_err(), "metadata pruned");
    // Idempotent.
    s.ws.remove(&wt).await.unwrap();

    // A path outside the workspaces is refused, never deleted.
    let outside = tempfile::tempdir().unwrap();
    let foreign = paid_core::Worktree { path: outside.path().to_path_buf(), ..wt };
    let err = s.ws.remove(&foreign).await.unwrap_err();
    assert!(matches!(err, paid_core::Error::InvalidInput { .. }), "{err}");
    assert!(outside.path().exists());
}

#[tokio::test]
async fn unreadable_remotes_are_clone_errors_without_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let ws = GitWorkspaces::new(GitWorkspacesConfig::new(dir.path()));
    let missing = dir.path().join("does-not-exist.git").display().to_string();
    let project =
        Project::new(ProjectId(SequentialIds::default().uuid()), RepoRef::new("o", "r"), &missing, chrono::Utc::now());
    match ws.ensure_mirror(&project).await.unwrap_err() {
        paid_core::Error::Clone { url, message } => {
            assert_eq!(url, missing);
            assert!(!message.is_empty());
        }
        other => panic!("expected a clone error, got {other:?}"),
    }
    assert!(!dir.path().join("mirrors/o/r.git").exists(), "no half-made mirror is left");
    assert_eq!(std::fs::read_dir(dir.path().join("mirrors/o")).unwrap().count(), 0);

    // Credentials in a URL never show up in the error: not when the URL is
    // off the forge's host (refused before connecting) ...
    let project = Project { clone_url: "http://user:hunter2@127.0.0.1:9/o/r.git".into(), ..project };
    let err = ws.ensure_mirror(&project).await.unwrap_err();
    assert!(matches!(&err, paid_core::Error::InvalidInput { what, .. } if what == "project.clone_url"), "{err:?}");
    assert!(!format!("{err} {err:?}").contains("hunter2"), "{err:?}");
    // ... nor when the clone fails.
    let on_forge = paid_github::WebOrigin::parse("http://127.0.0.1:9").unwrap();
    let ws = GitWorkspaces::new(GitWorkspacesConfig::new(dir.path()).forge_origin(on_forge));
    let err = ws.ensure_mirror(&project).await.unwrap_err();
    assert!(matches!(&err, paid_core::Error::Clone { url, .. } if url == "http://127.0.0.1:9/o/r.git"), "{err:?}");
    assert!(!format!("{err} {err:?}").contains("hunter2"));
}

#[tokio::test]
async fn push_never_overwrites_commits_it_has_not_seen() {
    let remote = Remote::new();
    let s = setup(&remote);
    s.ws.ensure_mirror(&s.project).await.unwrap();
    let branch = "paid/3-z-000003";
    let first = s.worktree(s.run_id(), branch).await;
    write(&first.path, "a.txt", "one\n");
    s.commit(&first, "one").await.unwrap();
    s.ws.push(&s.project, &first).await.unwrap();
    s.ws.remove(&first).await.unwrap();

    // A human pushes to the branch; a follow-up run that did not fetch it
    // commits on the old tip.
    let human = remote.commit_on(branch, "human.txt");
    let follow_up = s.worktree(s.run_id(), branch).await;
    write(&follow_up.path, "b.txt", "two\n");
    s.commit(&follow_up, "two").await.unwrap();
    let err = s.ws.push(&s.project, &follow_up).await.unwrap_err();
    assert!(err.to_string().contains("refusing to overwrite"), "{err}");
    assert!(!err.is_retryable());
    let source = std::error::Error::source(&err).and_then(|e| e.downcast_ref::<paid_github::Error>());
    assert!(
        matches!(source, Some(paid_github::Error::StaleBranch { remote, .. }) if *remote == human.to_string()),
        "{source:?}"
    );
    assert_eq!(remote.branch(branch), Some(human), "the remote is untouched");
}

#[tokio::test]
async fn push_may_rewrite_what_it_pushed_itself() {
    let remote = Remote::new();
    let s = setup(&remote);
    s.ws.ensure_mirror(&s.project).await.unwrap();
    let branch = "paid/4-w-000004";
    let wt = s.worktree(s.run_id(), branch).await;
    write(&wt.path, "a.txt", "one\n");
    s.commit(&wt, "one").await.unwrap();
    s.ws.push(&s.project, &wt).await.unwrap();

    // The run rewrites its own branch (e.g. a rebase): not a fast-forward,
    // but the remote still holds exactly what Paid pushed, so it may go.
    let mirror = Repository::open_bare(s.root.join("mirrors/octo/app.git")).unwrap();
    let rewritten = commit_files(
        &mirror,
        &format!("refs/heads/{branch}"),
        Some(remote.initial),
        &[("a.txt", "one, again\n")],
        "redo",
    );
    s.ws.push(&s.project, &wt).await.unwrap();
    assert_eq!(remote.branch(branch), Some(rewritten));
}

#[tokio::test]
async fn a_follow_up_on_a_fresh_host_starts_from_the_remote_branch() {
    let remote = Remote::new();
    let first = setup(&remote);
    first.ws.ensure_mirror(&first.project).await.unwrap();
    let branch = "paid/5-v-000005";
    let wt = first.worktree(first.run_id(), branch).await;
    write(&wt.path, "a.txt", "one\n");
    let pushed = first.commit(&wt, "one").await.unwrap();
    first.ws.push(&first.project, &wt).await.unwrap();
    let human = remote.commit_on(branch, "human.txt");

    // Another host: no local branch, only the remote's.
    let second = setup(&remote);
    second.ws.ensure_mirror(&second.project).await.unwrap();
    let wt2 = second.worktree(second.run_id(), branch).await;
    assert_eq!(wt2.base_commit, remote.initial.to_string());
    let head = Repository::open(&wt2.path).unwrap().head().unwrap().target().unwrap();
    assert_eq!(head, human);
    assert_ne!(head.to_string(), pushed);
    assert_eq!(second.ws.changed_paths(&wt2).await.unwrap(), vec!["a.txt", "human.txt"]);
    // Building on the human's commit is a fast-forward: the push goes through.
    write(&wt2.path, "b.txt", "two\n");
    let c = second.commit(&wt2, "two").await.unwrap();
    second.ws.push(&second.project, &wt2).await.unwrap();
    assert_eq!(remote.branch(branch).unwrap().to_string(), c);
}

#[tokio::test]
async fn fetch_brings_new_commits_on_the_default_branch() {
    let remote = Remote::new();
    let s = setup(&remote);
    s.ws.ensure_mirror(&s.project).await.unwrap();
    let newer = remote.commit_on("main", "later.txt");
    s.ws.ensure_mirror(&s.project).await.unwrap();
    let wt = s.worktree(s.run_id(), "paid/6-u-000006").await;
    assert_eq!(wt.base_commit, newer.to_string());
    assert!(wt.path.join("later.txt").exists());
}

#[tokio::test]
async fn sweep_removes_old_worktrees_except_kept_runs() {
    let remote = Remote::new();
    let s = setup(&remote);
    s.ws.ensure_mirror(&s.project).await.unwrap();
    let (keep, orphan) = (s.run_id(), s.run_id());
    let kept = s.worktree(keep, "paid/7-a-000007").await;
    let old = s.worktree(orphan, "paid/8-b-000008").await;
    std::fs::create_dir_all(s.root.join("worktrees/not-a-run")).unwrap();

    // Nothing is old enough yet.
    assert_eq!(s.ws.sweep_orphans(&[keep], chrono::Duration::hours(24)).await.unwrap(), Vec::<PathBuf>::new());
    let removed = s.ws.sweep_orphans(&[keep], chrono::Duration::zero()).await.unwrap();
    assert_eq!(removed, vec![old.path.clone()]);
    assert!(kept.path.exists() && !old.path.exists());
    assert!(s.root.join("worktrees/not-a-run").exists(), "directories that are not runs are left alone");
    let mirror = Repository::open_bare(s.root.join("mirrors/octo/app.git")).unwrap();
    assert!(mirror.find_worktree(&orphan.to_string()).is_err());
    assert!(mirror.find_worktree(&keep.to_string()).is_ok());
}

#[tokio::test]
async fn bad_input_is_refused_before_touching_disk() {
    let remote = Remote::new();
    let s = setup(&remote);
    s.ws.ensure_mirror(&s.project).await.unwrap();
    let err =
        s.ws.create_worktree(&WorktreeRequest { project: &s.project, run_id: s.run_id(), branch: "bad..name" }).await;
    assert!(matches!(err, Err(paid_core::Error::InvalidInput { .. })), "{err:?}");
    let project = Project { repo: RepoRef::new("..", "x"), ..s.project.clone() };
    assert!(matches!(s.ws.ensure_mirror(&project).await, Err(paid_core::Error::InvalidInput { .. })));
    let project = Project { default_branch: "trunk".into(), ..s.project.clone() };
    let err =
        s.ws.create_worktree(&WorktreeRequest { project: &project, run_id: s.run_id(), branch: "paid/9-c-000009" })
            .await;
    assert!(
        matches!(&err, Err(paid_core::Error::InvalidInput { message, .. }) if message.contains("trunk")),
        "{err:?}"
    );
    // No mirror yet for another repository.
    let project = Project { repo: RepoRef::new("octo", "other"), ..s.project.clone() };
    let err =
        s.ws.create_worktree(&WorktreeRequest { project: &project, run_id: s.run_id(), branch: "paid/9-c-000009" })
            .await;
    assert!(matches!(err, Err(paid_core::Error::NotFound { entity: "mirror", .. })), "{err:?}");
}

#[cfg(unix)]
#[tokio::test]
async fn mirrors_and_worktrees_are_private_to_the_host_user() {
    use std::os::unix::fs::PermissionsExt;
    let remote = Remote::new();
    let s = setup(&remote);
    // Even a directory left too open (say, by an older version) is tightened.
    std::fs::create_dir_all(s.root.join("worktrees")).unwrap();
    std::fs::set_permissions(s.root.join("worktrees"), std::fs::Permissions::from_mode(0o777)).unwrap();
    s.ws.ensure_mirror(&s.project).await.unwrap();
    s.worktree(s.run_id(), "paid/20-p-000020").await;
    for dir in ["worktrees", "mirrors"] {
        let mode = std::fs::metadata(s.root.join(dir)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{dir} is {mode:o}");
    }
}

/// What a hostile agent can do from inside the sandbox: rewrite the
/// worktree's `.git` to a repository of its own whose `core.worktree` points
/// at host files, hoping the host-side commit picks them up and pushes them.
#[tokio::test]
async fn a_tampered_dot_git_is_never_followed_and_is_restored() {
    let remote = Remote::new();
    let s = setup(&remote);
    s.ws.ensure_mirror(&s.project).await.unwrap();
    let branch = "paid/21-t-000021";
    let wt = s.worktree(s.run_id(), branch).await;
    let genuine = std::fs::read_to_string(wt.path.join(".git")).unwrap();
    assert!(genuine.starts_with("gitdir: ") && genuine.contains("mirrors/octo/app.git/worktrees/"), "{genuine}");

    let host = tempfile::tempdir().unwrap();
    write(host.path(), "secret.txt", "host secret\n");
    let evil = wt.path.join("evil.git");
    let evil_repo = Repository::init_bare(&evil).unwrap();
    evil_repo.config().unwrap().set_str("core.worktree", &host.path().display().to_string()).unwrap();
    evil_repo.config().unwrap().set_bool("core.bare", false).unwrap();
    std::fs::write(wt.path.join(".git"), format!("gitdir: {}\n", evil.display())).unwrap();
    write(&wt.path, "fix.txt", "the real fix\n");

    let paths = s.ws.changed_paths(&wt).await.unwrap();
    assert_eq!(std::fs::read_to_string(wt.path.join(".git")).unwrap(), genuine, "restored");
    assert!(paths.contains(&"fix.txt".to_string()) && !paths.iter().any(|p| p.contains("secret")), "{paths:?}");

    // Tamper again, then commit: the commit lands on the run's branch in the
    // mirror and holds the worktree's files, not the host's.
    std::fs::write(wt.path.join(".git"), format!("gitdir: {}\n", evil.display())).unwrap();
    let commit = s.commit(&wt, "fix").await.unwrap();
    assert_eq!(std::fs::read_to_string(wt.path.join(".git")).unwrap(), genuine);
    let mirror = Repository::open_bare(s.root.join("mirrors/octo/app.git")).unwrap();
    assert_eq!(mirror.refname_to_id(&format!("refs/heads/{branch}")).unwrap().to_string(), commit);
    let tree = mirror.find_commit(Oid::from_str(&commit).unwrap()).unwrap().tree().unwrap();
    assert!(tree.get_path(Path::new("fix.txt")).is_ok());
    assert!(tree.get_path(Path::new("secret.txt")).is_err(), "no host file was committed");
    assert!(Repository::open_bare(&evil).unwrap().head().is_err(), "the planted repository got nothing");

    // A `.git` directory or symlink in its place is replaced too.
    std::fs::remove_file(wt.path.join(".git")).unwrap();
    std::fs::create_dir(wt.path.join(".git")).unwrap();
    write(&wt.path, ".git/HEAD", "ref: refs/heads/main\n");
    assert!(s.ws.changed_paths(&wt).await.unwrap().contains(&"fix.txt".to_string()));
    assert_eq!(std::fs::read_to_string(wt.path.join(".git")).unwrap(), genuine);
    #[cfg(unix)]
    {
        std::fs::remove_file(wt.path.join(".git")).unwrap();
        std::os::unix::fs::symlink(&evil, wt.path.join(".git")).unwrap();
        s.ws.push(&s.project, &wt).await.unwrap();
        assert!(std::fs::symlink_metadata(wt.path.join(".git")).unwrap().is_file());
        assert_eq!(std::fs::read_to_string(wt.path.join(".git")).unwrap(), genuine);
    }
    assert_eq!(remote.branch(branch).unwrap().to_string(), commit);
    // And an untouched `.git` is left exactly as it is.
    let before = std::fs::metadata(wt.path.join(".git")).unwrap().modified().unwrap();
    s.ws.changed_paths(&wt).await.unwrap();
    assert_eq!(std::fs::metadata(wt.path.join(".git")).unwrap().modified().unwrap(), before);
}

#[tokio::test]
async fn forbidden_paths_in_a_real_diff_are_refused_unless_allowed() {
    use paid_core::policy::ForbiddenPaths;
    let remote = Remote::new();
    let s = setup(&remote);
    s.ws.ensure_mirror(&s.project).await.unwrap();
    let wt = s.worktree(s.run_id(), "paid/22-f-000022").await;
    write(&wt.path, ".github/workflows/ci.yml", "on: push\n");
    write(&wt.path, ".env", "TOKEN=x\n");
    write(&wt.path, "id_rsa.key", "-----BEGIN-----\n");
    write(&wt.path, "src/ok.rs", "pub fn ok() {}\n");
    s.commit(&wt, "mixed").await.unwrap();
    let paths = s.ws.changed_paths(&wt).await.unwrap();
    assert_eq!(paths, vec![".env", ".github/workflows/ci.yml", "id_rsa.key", "src/ok.rs"]);

    let refused = ForbiddenPaths::new(&[]).unwrap().check(paths.iter().map(String::as_str)).unwrap_err();
    match refused {
        paid_core::Error::PolicyViolation { paths } => {
            assert_eq!(paths, vec![".env", ".github/workflows/ci.yml", "id_rsa.key"]);
        }
        other => panic!("expected a policy violation, got {other:?}"),
    }
    // A project that allows its workflows still may not push secrets.
    let allowing = ForbiddenPaths::new(&[".github/workflows/**".into()]).unwrap();
    assert_eq!(allowing.violations(paths.iter().map(String::as_str)), vec![".env", "id_rsa.key"]);
    let everything = ForbiddenPaths::new(&[".github/workflows/**".into(), ".env".into(), "*.key".into()]).unwrap();
    assert!(everything.check(paths.iter().map(String::as_str)).is_ok());
}

#[tokio::test]
async fn https_urls_reach_the_tls_transport() {
    // A port nothing listens on: the clone must fail to *connect*, which
    // proves git2 has an https transport (without one it fails at once with
    // "unsupported URL protocol").
    let port = {
        let l = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
        l.local_addr().unwrap().port()
    };
    let dir = tempfile::tempdir().unwrap();
    let url = format!("https://127.0.0.1:{port}/octo/app.git");
    let ws = GitWorkspaces::new(
        GitWorkspacesConfig::new(dir.path())
            .token(TOKEN.to_string().into())
            .forge_origin(paid_github::WebOrigin::parse(&url).unwrap()),
    );
    let project =
        Project::new(ProjectId(SequentialIds::default().uuid()), RepoRef::new("octo", "app"), &url, chrono::Utc::now());
    match ws.ensure_mirror(&project).await.unwrap_err() {
        paid_core::Error::Clone { url: u, message } => {
            assert_eq!(u, url);
            assert!(!message.to_lowercase().contains("unsupported url protocol"), "{message}");
            assert!(message.to_lowercase().contains("connect"), "{message}");
        }
        other => panic!("expected a clone error, got {other:?}"),
    }
}
