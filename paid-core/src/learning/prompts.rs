//! Prompts as data: a [`Prompt`] names a task prompt by slug, and its
//! [`PromptVersion`]s are immutable minijinja templates with declared
//! variables and a lineage.
//!
//! A template is valid when it uses exactly its declared variables: every
//! variable it looks up is declared, every declared variable is looked up,
//! and it renders under strict undefined behavior with a sample value for
//! each. Declared variables may be dotted paths (`issue.title`), in which
//! case the sample context nests them. Two variables are always provided and
//! never declared: [`STYLE_GUIDE_VAR`]`.global` and `.project`.
//!
//! ```
//! use paid_core::learning::prompts::{PromptVersion, StyleGuides, CreatedBy};
//! # use paid_core::learning::PromptVersionId;
//! # let id = PromptVersionId(uuid::Uuid::nil());
//! # let at = chrono::DateTime::UNIX_EPOCH;
//!
//! let v = PromptVersion::root(id, "task", "Fix: {{ issue.title }}", ["issue.title"], CreatedBy::user("ana"), at)?;
//! let style = StyleGuides { global: Some("Write tests.".into()), project: None };
//! let text = v.render(&serde_json::json!({"issue": {"title": "crash"}}), &style)?;
//! assert_eq!(text, "Fix: crash\n\n## Style guide\n\nWrite tests.\n");
//!
//! // A template that uses an undeclared variable is rejected.
//! assert!(PromptVersion::root(id, "task", "{{ secret }}", ["issue.title"], CreatedBy::user("ana"), at).is_err());
//! # Ok::<(), paid_core::Error>(())
//! ```

use std::collections::{BTreeMap, BTreeSet};

use minijinja::{Environment, UndefinedBehavior};
use serde::{Deserialize, Serialize};

use super::{ExperimentId, PromptVersionId};
use crate::{Error, Result, Timestamp};

/// The variable under which style guides reach a template:
/// `style_guide.global` and `style_guide.project` (each a string or none).
pub const STYLE_GUIDE_VAR: &str = "style_guide";

/// A named task prompt. Its versions are [`PromptVersion`]s.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prompt {
    /// Unique name, e.g. `task`.
    pub slug: String,
    /// What the prompt is for.
    pub description: String,
    /// The version runs use outside experiments.
    pub active_version: Option<PromptVersionId>,
    /// When evolution last proposed variants of it.
    pub last_evolved_at: Option<Timestamp>,
    /// When created.
    pub created_at: Timestamp,
}

/// Who made a prompt version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CreatedBy {
    /// A person.
    User {
        /// Their name.
        name: String,
    },
    /// The evolution workflow.
    Evolution {
        /// The LLM's reasoning for the mutation.
        reasoning: String,
        /// The improvement it expected.
        expected_improvement: String,
    },
    /// An experiment (e.g. a hand-written variant started with it).
    Experiment {
        /// The experiment.
        experiment_id: ExperimentId,
    },
}

impl CreatedBy {
    /// Made by the user `name`.
    pub fn user(name: impl Into<String>) -> Self {
        CreatedBy::User { name: name.into() }
    }
}

/// One immutable version of a prompt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PromptVersion {
    /// Its id.
    pub id: PromptVersionId,
    /// The prompt's slug.
    pub slug: String,
    /// Version number within the prompt, from 1.
    pub version: u32,
    /// The minijinja template.
    pub template: String,
    /// The variables the template uses, as dotted paths, sorted.
    pub variables: Vec<String>,
    /// The version it was derived from.
    pub parent: Option<PromptVersionId>,
    /// Who made it.
    pub created_by: CreatedBy,
    /// When.
    pub created_at: Timestamp,
}

/// Style guides included in every rendered prompt.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StyleGuides {
    /// For every project.
    pub global: Option<String>,
    /// For this project.
    pub project: Option<String>,
}

impl PromptVersion {
    /// Version 1 of a prompt, validated.
    pub fn root<I, S>(
        id: PromptVersionId,
        slug: &str,
        template: &str,
        variables: I,
        created_by: CreatedBy,
        at: Timestamp,
    ) -> Result<Self>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let variables = normalize(variables);
        validate_template(template, &variables)?;
        Ok(Self {
            id,
            slug: slug.to_string(),
            version: 1,
            template: template.to_string(),
            variables,
            parent: None,
            created_by,
            created_at: at,
        })
    }

    /// A child of this version with a new template and the same variables,
    /// validated. `version` is its number (the caller knows the next free
    /// one).
    pub fn child(
        &self,
        id: PromptVersionId,
        version: u32,
        template: &str,
        created_by: CreatedBy,
        at: Timestamp,
    ) -> Result<Self> {
        validate_template(template, &self.variables)?;
        Ok(Self {
            id,
            slug: self.slug.clone(),
            version,
            template: template.to_string(),
            variables: self.variables.clone(),
            parent: Some(self.id),
            created_by,
            created_at: at,
        })
    }

    /// Checks that the template uses exactly the declared variables.
    pub fn validate(&self) -> Result<()> {
        validate_template(&self.template, &self.variables)
    }

    /// Renders the template with `vars` (a JSON object) under strict
    /// undefined behavior. The style guides are available as
    /// `style_guide.global` / `style_guide.project`; when the template does
    /// not use them, the non-empty ones are appended under `## Style guide`
    /// and `## Project style guide`.
    pub fn render(&self, vars: &serde_json::Value, style: &StyleGuides) -> Result<String> {
        render_template(&self.template, vars, style)
    }
}

fn normalize<I, S>(variables: I) -> Vec<String>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    variables.into_iter().map(Into::into).collect::<BTreeSet<_>>().into_iter().collect()
}

fn template_error(what: &str) -> impl Fn(minijinja::Error) -> Error + '_ {
    move |e| Error::InvalidInput { what: what.to_string(), message: e.to_string() }
}

fn environment<'a>() -> Environment<'a> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_keep_trailing_newline(true);
    env
}

/// The variables `template` looks up, as dotted paths (minijinja's static
/// analysis, nested lookups included), style guides excluded.
pub fn used_variables(template: &str) -> Result<BTreeSet<String>> {
    let env = environment();
    let tmpl = env.template_from_str(template).map_err(template_error("prompt template"))?;
    Ok(tmpl
        .undeclared_variables(true)
        .into_iter()
        .filter(|v| v != STYLE_GUIDE_VAR && !v.starts_with(&format!("{STYLE_GUIDE_VAR}.")))
        .collect())
}

/// Whether `a` and `b` name the same value or one contains the other.
fn related(a: &str, b: &str) -> bool {
    a == b || a.starts_with(&format!("{b}.")) || b.starts_with(&format!("{a}."))
}

/// Checks that `template` uses exactly `declared` (see the module
/// documentation) and renders with a sample value for each.
pub fn validate_template(template: &str, declared: &[String]) -> Result<()> {
    let invalid = |message: String| Error::InvalidInput { what: "prompt template".into(), message };
    if template.trim().is_empty() {
        return Err(invalid("the template is empty".into()));
    }
    for d in declared {
        if d.is_empty() || d.split('.').any(|part| part.is_empty()) || related(d, STYLE_GUIDE_VAR) {
            return Err(invalid(format!("{d:?} is not a valid variable name")));
        }
    }
    let used = used_variables(template)?;
    let unknown: Vec<&String> = used.iter().filter(|u| !declared.iter().any(|d| related(u, d))).collect();
    if !unknown.is_empty() {
        return Err(invalid(format!("uses undeclared variables {unknown:?}; declared are {declared:?}")));
    }
    let unused: Vec<&String> = declared.iter().filter(|d| !used.iter().any(|u| related(u, d))).collect();
    if !unused.is_empty() {
        return Err(invalid(format!("does not use declared variables {unused:?}")));
    }
    // Sample values at the deepest path either side names: declaring
    // `issue` covers a template that reads `issue.title`.
    let paths: Vec<String> = declared.iter().cloned().chain(used).collect();
    render_template(template, &sample_context(&paths), &StyleGuides::default()).map(|_| ())
}

/// A context with a placeholder string for each declared path, nested by
/// dots: `issue.title` becomes `{"issue": {"title": "<issue.title>"}}`.
pub fn sample_context(declared: &[String]) -> serde_json::Value {
    fn insert(map: &mut serde_json::Map<String, serde_json::Value>, parts: &[&str], path: &str) {
        let Some((first, rest)) = parts.split_first() else { return };
        if rest.is_empty() {
            map.entry(first.to_string()).or_insert_with(|| serde_json::Value::String(format!("<{path}>")));
            return;
        }
        let entry = map.entry(first.to_string()).or_insert_with(|| serde_json::Value::Object(Default::default()));
        if !entry.is_object() {
            *entry = serde_json::Value::Object(Default::default());
        }
        if let serde_json::Value::Object(inner) = entry {
            insert(inner, rest, path);
        }
    }
    let mut root = serde_json::Map::new();
    for d in declared {
        let parts: Vec<&str> = d.split('.').collect();
        insert(&mut root, &parts, d);
    }
    serde_json::Value::Object(root)
}

fn render_template(template: &str, vars: &serde_json::Value, style: &StyleGuides) -> Result<String> {
    let env = environment();
    let tmpl = env.template_from_str(template).map_err(template_error("prompt template"))?;
    let mut ctx: BTreeMap<String, serde_json::Value> = match vars {
        serde_json::Value::Object(map) => map.clone().into_iter().collect(),
        serde_json::Value::Null => BTreeMap::new(),
        other => {
            return Err(Error::InvalidInput {
                what: "prompt variables".into(),
                message: format!("expected a JSON object, got {other}"),
            });
        }
    };
    let uses_style = tmpl.undeclared_variables(false).contains(STYLE_GUIDE_VAR);
    ctx.insert(STYLE_GUIDE_VAR.into(), serde_json::json!({ "global": style.global, "project": style.project }));
    let mut text = tmpl.render(&ctx).map_err(template_error("prompt rendering"))?;
    if !uses_style {
        let sections = [("Style guide", &style.global), ("Project style guide", &style.project)];
        for (title, guide) in sections {
            if let Some(guide) = guide.as_deref().map(str::trim).filter(|g| !g.is_empty()) {
                if !text.ends_with('\n') {
                    text.push('\n');
                }
                text.push_str(&format!("\n## {title}\n\n{guide}\n"));
            }
        }
    }
    Ok(text)
}

/// The variables of the engine's built-in task template
/// ([`crate::engine::prompt::DEFAULT_TEMPLATE`]).
pub const DEFAULT_TASK_VARIABLES: [&str; 4] = ["feedback", "issue.body", "issue.number", "issue.title"];

/// Version 1 of the `task` prompt: the engine's built-in template.
pub fn default_task_prompt(id: PromptVersionId, at: Timestamp) -> Result<PromptVersion> {
    PromptVersion::root(
        id,
        "task",
        crate::engine::prompt::DEFAULT_TEMPLATE,
        DEFAULT_TASK_VARIABLES,
        CreatedBy::user("paid"),
        at,
    )
}

/// The lineage of a version among `versions`: itself, its parent, and so on
/// to the root. Stops at a missing parent or a cycle.
pub fn lineage(versions: &[PromptVersion], id: PromptVersionId) -> Vec<PromptVersion> {
    let by_id: BTreeMap<PromptVersionId, &PromptVersion> = versions.iter().map(|v| (v.id, v)).collect();
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    let mut next = Some(id);
    while let Some(id) = next {
        let Some(v) = by_id.get(&id) else { break };
        if !seen.insert(id) {
            break;
        }
        out.push((*v).clone());
        next = v.parent;
    }
    out
}

#[cfg(test)]
mod tests {
    use pretty_assertions::assert_eq;
    use uuid::Uuid;

    use super::*;

    fn id(n: u64) -> PromptVersionId {
        PromptVersionId(Uuid::from_u64_pair(0, n))
    }

    fn at() -> Timestamp {
        chrono::DateTime::UNIX_EPOCH
    }

    fn vars(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_engine_template_validates_with_its_variables() {
        let v = default_task_prompt(id(1), at()).unwrap();
        assert_eq!(v.variables, vars(&DEFAULT_TASK_VARIABLES));
        let text = v
            .render(
                &serde_json::json!({"issue": {"number": 7, "title": "Crash", "body": "It crashes."}, "feedback": null}),
                &StyleGuides::default(),
            )
            .unwrap();
        assert!(text.contains("Resolve issue #7: Crash"));
        assert!(!text.contains("previous attempt"));
    }

    #[test]
    fn exactly_the_declared_variables() {
        let ok = "{{ issue.title }} {% if feedback %}{{ feedback }}{% endif %}";
        validate_template(ok, &vars(&["feedback", "issue.title"])).unwrap();
        // Declaring the parent covers its children, and the other way round.
        validate_template(ok, &vars(&["feedback", "issue"])).unwrap();
        validate_template("{{ issue }}", &vars(&["issue.title"])).unwrap();

        let unknown = validate_template(ok, &vars(&["issue.title"])).unwrap_err().to_string();
        assert!(unknown.contains("undeclared variables [\"feedback\"]"), "{unknown}");
        let unused = validate_template("{{ issue.title }}", &vars(&["feedback", "issue.title"])).unwrap_err();
        assert!(unused.to_string().contains("does not use declared variables [\"feedback\"]"), "{unused}");
        let sibling = validate_template("{{ issue.labels }}", &vars(&["issue.title"])).unwrap_err();
        assert!(sibling.to_string().contains("issue.labels"), "{sibling}");
    }

    #[test]
    fn invalid_templates_and_names() {
        assert!(validate_template("{{ issue.title ", &vars(&["issue.title"])).is_err());
        assert!(validate_template("  ", &[]).is_err());
        assert!(validate_template("{{ x }}", &vars(&["x."])).is_err());
        assert!(validate_template("{{ style_guide.global }}", &vars(&["style_guide"])).is_err());
        // A filter on an undeclared name is still a lookup.
        assert!(validate_template("{{ secrets | upper }}", &[]).is_err());
        // Static text needs no variables.
        validate_template("Just do it.", &[]).unwrap();
    }

    #[test]
    fn strict_rendering_fails_on_missing_values() {
        let v =
            PromptVersion::root(id(1), "t", "{{ issue.title }}", ["issue.title"], CreatedBy::user("a"), at()).unwrap();
        let err = v.render(&serde_json::json!({"issue": {}}), &StyleGuides::default()).unwrap_err();
        assert!(matches!(err, Error::InvalidInput { .. }), "{err}");
        assert!(v.render(&serde_json::json!(["not", "an", "object"]), &StyleGuides::default()).is_err());
    }

    #[test]
    fn style_guides_inline_or_appended() {
        let style = StyleGuides { global: Some("Global rules.".into()), project: Some("Use tabs.".into()) };
        let appended = PromptVersion::root(id(1), "t", "Do {{ x }}.", ["x"], CreatedBy::user("a"), at()).unwrap();
        assert_eq!(
            appended.render(&serde_json::json!({"x": "it"}), &style).unwrap(),
            "Do it.\n\n## Style guide\n\nGlobal rules.\n\n## Project style guide\n\nUse tabs.\n"
        );
        let inline = PromptVersion::root(
            id(2),
            "t",
            "{{ x }}{% if style_guide.project %} ({{ style_guide.project }}){% endif %}",
            ["x"],
            CreatedBy::user("a"),
            at(),
        )
        .unwrap();
        assert_eq!(inline.render(&serde_json::json!({"x": "go"}), &style).unwrap(), "go (Use tabs.)");
        assert_eq!(inline.render(&serde_json::json!({"x": "go"}), &StyleGuides::default()).unwrap(), "go");
    }

    #[test]
    fn children_keep_variables_and_record_lineage() {
        let root = default_task_prompt(id(1), at()).unwrap();
        let by = CreatedBy::Evolution { reasoning: "shorter".into(), expected_improvement: "+5%".into() };
        let child_template = "Issue #{{ issue.number }} ({{ issue.title }}): {{ issue.body }}{% if feedback %} Fix: {{ feedback }}{% endif %}";
        let child = root.child(id(2), 2, child_template, by.clone(), at()).unwrap();
        assert_eq!(child.parent, Some(root.id));
        assert_eq!(child.variables, root.variables);
        let grandchild = child.child(id(3), 3, child_template, CreatedBy::user("b"), at()).unwrap();
        // A child that drops a variable is refused.
        assert!(root.child(id(4), 4, "Fix {{ issue.title }}", by, at()).is_err());

        let all = vec![root.clone(), child.clone(), grandchild.clone()];
        let ids: Vec<_> = lineage(&all, grandchild.id).iter().map(|v| v.version).collect();
        assert_eq!(ids, vec![3, 2, 1]);
        assert!(lineage(&all, id(99)).is_empty());
    }

    #[test]
    fn sample_contexts_nest() {
        assert_eq!(
            sample_context(&vars(&["a.b", "a.c", "d"])),
            serde_json::json!({"a": {"b": "<a.b>", "c": "<a.c>"}, "d": "<d>"})
        );
    }

    #[test]
    fn versions_round_trip_through_json() {
        let v = default_task_prompt(id(1), at()).unwrap();
        let back: PromptVersion = serde_json::from_value(serde_json::to_value(&v).unwrap()).unwrap();
        assert_eq!(back, v);
    }
}
