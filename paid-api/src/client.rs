//! [`ApiClient`]: a typed client for the API of `paid serve`.

use reqwest::{Method, Url};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{
    Cancelled, Candidates, Costs, CostsQuery, Envelope, ErrorBody, ErrorEnvelope, ExperimentDetail, ExperimentsQuery,
    Logs, LogsQuery, Meta, NewProject, Pick, ProjectView, PromptDetail, PutSecret, RemovedProject, RotateKey, Rotated,
    RunDetail, RunSummary, RunsQuery, SecretStored, Secrets, Status, TriggerRun,
};

/// A failed call.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The API answered with its error shape.
    #[error("{message}")]
    Api {
        /// HTTP status.
        status: u16,
        /// The message, with a hint for 401.
        message: String,
        /// The whole envelope, for `--json`.
        envelope: Box<ErrorEnvelope>,
    },
    /// The server could not be reached, or answered something else.
    #[error("{0}")]
    Transport(String),
}

impl ClientError {
    /// The error code (`transport` for transport errors).
    pub fn code(&self) -> &str {
        match self {
            ClientError::Api { envelope, .. } => &envelope.error.code,
            ClientError::Transport(_) => "transport",
        }
    }

    /// The error in the API's one shape (transport errors included), to
    /// print with `--json`.
    pub fn envelope(&self) -> ErrorEnvelope {
        match self {
            ClientError::Api { envelope, .. } => (**envelope).clone(),
            ClientError::Transport(m) => ErrorEnvelope {
                error: ErrorBody { code: "transport".into(), message: m.clone(), details: serde_json::json!({}) },
                meta: Meta::default(),
            },
        }
    }
}

/// A typed client for `paid serve`'s `/api/v1`.
///
/// ```no_run
/// # async fn f() -> Result<(), paid_api::ClientError> {
/// use paid_api::{ApiClient, Page, RunsQuery};
/// let client = ApiClient::new("http://127.0.0.1:8700", Some("token from paid init".to_string().into()))?;
/// let page: Page<_> = client.runs(&RunsQuery::new().active(true).limit(20)).await?.into();
/// for run in &page.items {
///     println!("{} {} {}", run.run.id, run.repo, run.run.state);
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct ApiClient {
    http: reqwest::Client,
    base: Url,
    token: Option<SecretString>,
}

impl std::fmt::Debug for ApiClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiClient")
            .field("base", &self.base.as_str())
            .field("token", &self.token.as_ref().map(|_| "[redacted]"))
            .finish()
    }
}

impl ApiClient {
    /// A client for the API at `base` (e.g. `http://127.0.0.1:8700`).
    pub fn new(base: &str, token: Option<SecretString>) -> Result<Self, ClientError> {
        let base = Url::parse(base.trim_end_matches('/'))
            .map_err(|e| ClientError::Transport(format!("{base:?} is not a URL: {e}")))?;
        if base.cannot_be_a_base() {
            return Err(ClientError::Transport(format!("{base} cannot be an API base URL")));
        }
        Ok(Self { http: http_client()?, base, token })
    }

    /// The base URL.
    pub fn base(&self) -> &str {
        self.base.as_str().trim_end_matches('/')
    }

    /// `GET /status`.
    pub async fn status(&self) -> Result<Envelope<Status>, ClientError> {
        self.call(Method::GET, &["status"], None::<&()>, None::<&()>).await
    }

    /// `GET /projects`.
    pub async fn projects(&self) -> Result<Envelope<Vec<ProjectView>>, ClientError> {
        self.call(Method::GET, &["projects"], None::<&()>, None::<&()>).await
    }

    /// `GET /projects/{owner}/{name}`.
    pub async fn project(&self, repo: &str) -> Result<Envelope<ProjectView>, ClientError> {
        self.call(Method::GET, &repo_path(repo), None::<&()>, None::<&()>).await
    }

    /// `POST /projects`.
    pub async fn add_project(&self, project: &NewProject) -> Result<Envelope<ProjectView>, ClientError> {
        self.call(Method::POST, &["projects"], None::<&()>, Some(project)).await
    }

    /// `DELETE /projects/{owner}/{name}`.
    pub async fn remove_project(&self, repo: &str) -> Result<Envelope<RemovedProject>, ClientError> {
        self.call(Method::DELETE, &repo_path(repo), None::<&()>, None::<&()>).await
    }

    /// `GET /runs`: one page; `meta.next_cursor` (or [`Page::from`]) leads to the next.
    pub async fn runs(&self, query: &RunsQuery) -> Result<Envelope<Vec<RunSummary>>, ClientError> {
        self.call(Method::GET, &["runs"], Some(query), None::<&()>).await
    }

    /// `POST /runs`.
    pub async fn trigger(&self, run: &TriggerRun) -> Result<Envelope<RunSummary>, ClientError> {
        self.call(Method::POST, &["runs"], None::<&()>, Some(run)).await
    }

    /// `GET /runs/{id}`.
    pub async fn run(&self, id: &str) -> Result<Envelope<RunDetail>, ClientError> {
        self.call(Method::GET, &["runs", id], None::<&()>, None::<&()>).await
    }

    /// `GET /runs/{id}/logs?after=N`.
    pub async fn logs(&self, id: &str, after: u64) -> Result<Envelope<Logs>, ClientError> {
        self.call(Method::GET, &["runs", id, "logs"], Some(&LogsQuery { after }), None::<&()>).await
    }

    /// `POST /runs/{id}/cancel`.
    pub async fn cancel(&self, id: &str) -> Result<Envelope<Cancelled>, ClientError> {
        self.call(Method::POST, &["runs", id, "cancel"], None::<&()>, None::<&()>).await
    }

    /// `GET /runs/{id}/candidates`.
    pub async fn candidates(&self, id: &str) -> Result<Envelope<Candidates>, ClientError> {
        self.call(Method::GET, &["runs", id, "candidates"], None::<&()>, None::<&()>).await
    }

    /// `POST /runs/{id}/pick`.
    pub async fn pick(&self, id: &str, candidate: &str) -> Result<Envelope<RunSummary>, ClientError> {
        let body = Pick { candidate: candidate.to_string() };
        self.call(Method::POST, &["runs", id, "pick"], None::<&()>, Some(&body)).await
    }

    /// `GET /costs`.
    pub async fn costs(&self, query: &CostsQuery) -> Result<Envelope<Costs>, ClientError> {
        self.call(Method::GET, &["costs"], Some(query), None::<&()>).await
    }

    /// `GET /prompts`.
    pub async fn prompts(&self) -> Result<Envelope<Vec<paid_core::learning::prompts::Prompt>>, ClientError> {
        self.call(Method::GET, &["prompts"], None::<&()>, None::<&()>).await
    }

    /// `GET /prompts/{slug}`.
    pub async fn prompt(&self, slug: &str) -> Result<Envelope<PromptDetail>, ClientError> {
        self.call(Method::GET, &["prompts", slug], None::<&()>, None::<&()>).await
    }

    /// `GET /experiments`.
    pub async fn experiments(
        &self,
        query: &ExperimentsQuery,
    ) -> Result<Envelope<Vec<paid_core::learning::experiment::Experiment>>, ClientError> {
        self.call(Method::GET, &["experiments"], Some(query), None::<&()>).await
    }

    /// `GET /experiments/{id}`.
    pub async fn experiment(&self, id: &str) -> Result<Envelope<ExperimentDetail>, ClientError> {
        self.call(Method::GET, &["experiments", id], None::<&()>, None::<&()>).await
    }

    /// `GET /secrets`.
    pub async fn secrets(&self) -> Result<Envelope<Secrets>, ClientError> {
        self.call(Method::GET, &["secrets"], None::<&()>, None::<&()>).await
    }

    /// `PUT /secrets/{name}`.
    pub async fn put_secret(&self, name: &str, value: &SecretString) -> Result<Envelope<SecretStored>, ClientError> {
        let body = PutSecret { value: value.expose_secret().trim().to_string() };
        self.call(Method::PUT, &["secrets", name], None::<&()>, Some(&body)).await
    }

    /// `POST /keys/rotate`.
    pub async fn rotate_key(&self, new_key_file: &str) -> Result<Envelope<Rotated>, ClientError> {
        let body = RotateKey { new_key_file: new_key_file.to_string() };
        self.call(Method::POST, &["keys", "rotate"], None::<&()>, Some(&body)).await
    }

    /// Sends a request to `/api/v1/{segments}` (each segment percent-encoded)
    /// and decodes the envelope.
    pub async fn call<T, Q, B>(
        &self,
        method: Method,
        segments: &[&str],
        query: Option<&Q>,
        body: Option<&B>,
    ) -> Result<Envelope<T>, ClientError>
    where
        T: DeserializeOwned,
        Q: Serialize + ?Sized,
        B: Serialize + ?Sized,
    {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(["api", "v1"]).extend(segments);
        }
        let mut req = self.http.request(method, url.clone());
        if let Some(q) = query {
            req = req.query(q);
        }
        if let Some(t) = &self.token {
            req = req.bearer_auth(t.expose_secret());
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.map_err(|e| {
            ClientError::Transport(format!(
                "cannot reach the paid server at {}: {e}; is `paid serve` running?",
                self.base()
            ))
        })?;
        let status = resp.status().as_u16();
        let text = resp.text().await.map_err(|e| ClientError::Transport(format!("reading the answer: {e}")))?;
        if (200..300).contains(&status) {
            return serde_json::from_str(&text).map_err(|e| {
                ClientError::Transport(format!(
                    "{url} answered {status} with an unexpected body ({e}): {}",
                    excerpt(&text)
                ))
            });
        }
        let envelope: ErrorEnvelope = serde_json::from_str(&text).map_err(|_| {
            ClientError::Transport(format!("{url} answered {status} outside the API's error shape: {}", excerpt(&text)))
        })?;
        let mut message = envelope.error.message.clone();
        if status == 401 {
            message = format!("{message}: the API token is missing or wrong (api.token_file / PAID_API_TOKEN)");
        }
        Err(ClientError::Api { status, message, envelope: Box::new(envelope) })
    }
}

fn repo_path(repo: &str) -> Vec<&str> {
    let mut segments = vec!["projects"];
    segments.extend(repo.splitn(2, '/'));
    segments
}

fn excerpt(text: &str) -> String {
    text.chars().take(200).collect()
}

/// The HTTP client [`ApiClient`] uses: rustls (ring) with the platform's
/// roots, connect and request timeouts, a `paid/<version>` user agent.
pub fn http_client() -> Result<reqwest::Client, ClientError> {
    use rustls_platform_verifier::BuilderVerifierExt;
    let bad = |e: String| ClientError::Transport(format!("building the HTTP client: {e}"));
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(e.to_string()))?
        .with_platform_verifier()
        .map_err(|e| bad(e.to_string()))?
        .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .connect_timeout(std::time::Duration::from_secs(10))
        .timeout(std::time::Duration::from_secs(30))
        .user_agent(concat!("paid/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| bad(e.to_string()))
}
