//! `paid token …`: encrypted secrets and key rotation.

use std::io::{IsTerminal, Read};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;
use paid_api::{ApiClient, ClientError};
use secrecy::SecretString;

use super::Out;

/// `paid token …`.
#[derive(Debug, Subcommand)]
pub enum TokenCmd {
    /// Store a secret encrypted: `github`, or `provider.<name>`. The value
    /// is read from standard input unless --from-file or --from-env.
    Set {
        /// `github` or `provider.<name>`.
        name: String,
        /// Read the value from this file.
        #[arg(long, conflicts_with = "from_env")]
        from_file: Option<PathBuf>,
        /// Read the value from this environment variable.
        #[arg(long)]
        from_env: Option<String>,
    },
    /// List stored secrets (names and key ids, never values).
    List,
    /// Re-encrypt every stored secret under a new master key, without
    /// stopping the daemon.
    RotateKey {
        /// The new key file (32 bytes, base64 or hex), readable by the daemon
        /// and inside its data directory (`data_dir`): the daemon reads no
        /// other file an API request names.
        #[arg(long)]
        new_key_file: PathBuf,
        /// Write a fresh random key to --new-key-file first.
        #[arg(long)]
        generate: bool,
    },
}

/// Runs `paid token …`.
pub async fn token(client: &ApiClient, cmd: TokenCmd, out: Out) -> Result<ExitCode, ClientError> {
    match cmd {
        TokenCmd::List => Ok(out.success(&client.secrets().await?, |d| {
            println!("master key: {}", d.master_key_id.as_deref().unwrap_or("-"));
            for x in &d.secrets {
                println!("{:<24} key {}  v{}  {}", x.name, x.key_id, x.version, x.updated_at);
            }
        })),
        TokenCmd::Set { name, from_file, from_env } => {
            let value = match (from_file, from_env) {
                (Some(f), _) => std::fs::read_to_string(&f)
                    .map_err(|e| ClientError::Transport(format!("cannot read {}: {e}", f.display())))?,
                (None, Some(var)) => std::env::var(&var)
                    .map_err(|_| ClientError::Transport(format!("environment variable {var} is not set")))?,
                (None, None) => {
                    if std::io::stdin().is_terminal() {
                        eprintln!("paste the value, then press Ctrl-D:");
                    }
                    let mut v = String::new();
                    std::io::stdin()
                        .read_to_string(&mut v)
                        .map_err(|e| ClientError::Transport(format!("reading standard input: {e}")))?;
                    v
                }
            };
            let value = SecretString::from(value.trim().to_string());
            Ok(out.success(&client.put_secret(&name, &value).await?, |d| {
                println!(
                    "stored {} encrypted under key {} (version {})",
                    d.secret.name, d.secret.key_id, d.secret.version
                );
                if let Some(v) = &d.validation {
                    if let Some(login) = &v.login {
                        println!("  acts as {login}");
                    }
                    for w in &v.warnings {
                        println!("  note: {w}");
                    }
                }
                println!("  {}", d.note);
            }))
        }
        TokenCmd::RotateKey { new_key_file, generate } => {
            if generate {
                paid_server::vault::write_new_key(&new_key_file).map_err(|e| {
                    ClientError::Transport(format!("cannot write a new key to {}: {e}", new_key_file.display()))
                })?;
            }
            let path = std::path::absolute(&new_key_file).unwrap_or(new_key_file);
            Ok(out.success(&client.rotate_key(&path.to_string_lossy()).await?, |d| {
                println!(
                    "re-encrypted {} secrets under key {} (was {})",
                    d.rotation.rotated.len(),
                    d.rotation.key_id,
                    d.rotation.previous_key_id
                );
                println!("next: {}", d.next);
            }))
        }
    }
}
