use globset::{Glob, GlobSet, GlobSetBuilder};

use crate::{Error, Result};

/// Paths no agent change may touch unless the project allows them
/// (`project.allowed_paths`).
///
/// Patterns are [`globset`] globs over relative, `/`-separated paths; `*`
/// also matches `/`, and `**/x` matches `x` at the root too. They cover:
///
/// - git's own data and the files that change how git reads the tree:
///   `.git/`, `.gitattributes` and `.gitmodules`, at any depth;
/// - secrets: `.env*`, `*.key`, `*.pem`, `*.secret`, `credentials.*` and
///   `id_rsa*`, at any depth;
/// - CI and repository automation, which runs with the repository's
///   credentials once merged (or, for some, once pushed): everything under
///   `.github/` (Actions, Dependabot, CODEOWNERS, ...), GitLab CI
///   (`.gitlab-ci.yml`, `.gitlab/`), CircleCI (`.circleci/`), Buildkite
///   (`.buildkite/`), Jenkins (`Jenkinsfile`), Azure Pipelines
///   (`azure-pipelines.yml`, `.azure-pipelines/`), Travis, Bitbucket
///   Pipelines, Drone and AppVeyor, and the other places GitHub reads
///   `CODEOWNERS` from.
pub const DEFAULT_FORBIDDEN: &[&str] = &[
    // git
    ".git/**",
    "**/.git/**",
    "**/.gitattributes",
    "**/.gitmodules",
    // secrets
    ".env*",
    "**/.env*",
    "**/*.key",
    "**/*.pem",
    "**/*.secret",
    "**/credentials.*",
    "**/id_rsa*",
    // CI and repository automation
    ".github/**",
    ".gitlab-ci.yml",
    ".gitlab/**",
    ".circleci/**",
    ".buildkite/**",
    "Jenkinsfile",
    "azure-pipelines.yml",
    "azure-pipelines.yaml",
    ".azure-pipelines/**",
    ".travis.yml",
    "bitbucket-pipelines.yml",
    ".drone.yml",
    "appveyor.yml",
    ".appveyor.yml",
    "CODEOWNERS",
    "docs/CODEOWNERS",
];

/// The forbidden-paths policy: [`DEFAULT_FORBIDDEN`] minus the project's
/// allowed patterns.
#[derive(Debug, Clone)]
pub struct ForbiddenPaths {
    forbidden: GlobSet,
    allowed: GlobSet,
}

impl ForbiddenPaths {
    /// The default policy with the project's `allowed` globs exempted.
    pub fn new(allowed: &[String]) -> Result<Self> {
        Ok(Self {
            forbidden: build(DEFAULT_FORBIDDEN.iter().copied())?,
            allowed: build(allowed.iter().map(String::as_str))?,
        })
    }

    /// The paths (relative, `/`-separated) that violate the policy.
    pub fn violations<'a>(&self, paths: impl IntoIterator<Item = &'a str>) -> Vec<String> {
        paths
            .into_iter()
            .filter(|p| self.forbidden.is_match(p) && !self.allowed.is_match(p))
            .map(str::to_string)
            .collect()
    }

    /// [`Self::violations`] as a typed error.
    pub fn check<'a>(&self, paths: impl IntoIterator<Item = &'a str>) -> Result<()> {
        let paths = self.violations(paths);
        if paths.is_empty() { Ok(()) } else { Err(Error::PolicyViolation { paths }) }
    }
}

fn build<'a>(patterns: impl Iterator<Item = &'a str>) -> Result<GlobSet> {
    let mut b = GlobSetBuilder::new();
    for p in patterns {
        let glob = Glob::new(p).map_err(|e| Error::InvalidInput {
            what: "project.allowed_paths".into(),
            message: format!("{p:?}: {e}"),
        })?;
        b.add(glob);
    }
    b.build().map_err(|e| Error::InvalidInput { what: "project.allowed_paths".into(), message: e.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_policy_refuses_secrets_and_workflows() {
        let p = ForbiddenPaths::new(&[]).unwrap();
        assert_eq!(
            p.violations([
                "src/main.rs",
                ".env",
                ".env.production",
                "config/.env",
                "deploy/id_rsa.key",
                "certs/server.pem",
                "aws/credentials.json",
                ".github/workflows/ci.yml",
                "README.md",
            ]),
            vec![
                ".env",
                ".env.production",
                "config/.env",
                "deploy/id_rsa.key",
                "certs/server.pem",
                "aws/credentials.json",
                ".github/workflows/ci.yml",
            ]
        );
    }

    /// Every CI system, git control file and secret the defaults name, at
    /// the depths they are read from.
    const REFUSED: &[&str] = &[
        ".gitlab-ci.yml",
        ".gitlab/ci/build.yml",
        ".circleci/config.yml",
        ".buildkite/pipeline.yml",
        "Jenkinsfile",
        "azure-pipelines.yml",
        "azure-pipelines.yaml",
        ".azure-pipelines/build.yml",
        ".travis.yml",
        "bitbucket-pipelines.yml",
        ".drone.yml",
        "appveyor.yml",
        ".appveyor.yml",
        "CODEOWNERS",
        "docs/CODEOWNERS",
        ".github/workflows/ci.yml",
        ".github/actions/setup/action.yml",
        ".github/dependabot.yml",
        ".github/CODEOWNERS",
        ".gitattributes",
        "vendor/lib/.gitattributes",
        ".gitmodules",
        "third_party/.gitmodules",
        ".git/config",
        "sub/.git/hooks/pre-commit",
        "prod.secret",
        "config/prod.secret",
        ".env",
        ".env.local",
        "services/api/.env.production",
        "a/b/c/.env",
    ];

    #[test]
    fn default_policy_refuses_ci_beyond_github_actions_git_control_files_and_secrets() {
        let p = ForbiddenPaths::new(&[]).unwrap();
        for path in REFUSED {
            assert_eq!(p.violations([*path]), vec![path.to_string()], "{path} must be refused by default");
            assert!(matches!(p.check([*path]), Err(Error::PolicyViolation { .. })), "{path}");
        }
    }

    #[test]
    fn default_policy_allows_ordinary_paths() {
        let p = ForbiddenPaths::new(&[]).unwrap();
        let ordinary = [
            "src/main.rs",
            "README.md",
            "docs/ci.md",
            "docs/github.md",
            "scripts/jenkins.sh",
            "src/environment.rs",
            "src/env/mod.rs",
            "tests/gitlab_ci_test.rs",
            "src/secrets.rs",
            "ci/build.sh",
            "github/README.md",
            "Cargo.toml",
        ];
        assert_eq!(p.violations(ordinary), Vec::<String>::new());
        assert!(p.check(ordinary).is_ok());
    }

    #[test]
    fn projects_can_allow_workflows() {
        let p = ForbiddenPaths::new(&[".github/workflows/**".into()]).unwrap();
        assert!(p.check([".github/workflows/ci.yml"]).is_ok());
        assert!(matches!(p.check([".env"]), Err(Error::PolicyViolation { .. })));
        // Allowing the workflows does not allow the rest of `.github/`.
        assert_eq!(p.violations([".github/dependabot.yml"]), vec![".github/dependabot.yml"]);
    }

    #[test]
    fn allowed_paths_override_each_default() {
        for path in REFUSED {
            let p = ForbiddenPaths::new(&[path.to_string()]).unwrap();
            assert!(p.check([*path]).is_ok(), "{path} allowed by its own pattern");
        }
        let p =
            ForbiddenPaths::new(&[".gitlab-ci.yml".into(), "**/.gitattributes".into(), "Jenkinsfile".into()]).unwrap();
        assert!(p.check([".gitlab-ci.yml", "a/.gitattributes", "Jenkinsfile"]).is_ok());
        assert_eq!(p.violations([".circleci/config.yml", ".gitmodules"]), vec![".circleci/config.yml", ".gitmodules"]);
    }

    #[test]
    fn bad_allow_pattern_is_a_clear_error() {
        let err = ForbiddenPaths::new(&["a[".into()]).unwrap_err();
        assert!(err.to_string().starts_with("invalid project.allowed_paths"), "{err}");
    }
}
