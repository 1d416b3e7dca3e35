use globset::{Glob, GlobSet, GlobSetBuilder};

use crate::{Error, Result};

/// Paths no agent change may touch unless the project allows them.
pub const DEFAULT_FORBIDDEN: &[&str] = &[
    ".git/**",
    "**/.git/**",
    ".env",
    ".env*",
    "**/.env",
    "**/.env*",
    "**/*.key",
    "**/*.pem",
    "**/credentials.*",
    "**/id_rsa*",
    ".github/workflows/**",
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

    #[test]
    fn projects_can_allow_workflows() {
        let p = ForbiddenPaths::new(&[".github/workflows/**".into()]).unwrap();
        assert!(p.check([".github/workflows/ci.yml"]).is_ok());
        assert!(matches!(p.check([".env"]), Err(Error::PolicyViolation { .. })));
    }

    #[test]
    fn bad_allow_pattern_is_a_clear_error() {
        let err = ForbiddenPaths::new(&["a[".into()]).unwrap_err();
        assert!(err.to_string().starts_with("invalid project.allowed_paths"), "{err}");
    }
}
