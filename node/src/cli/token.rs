//! `flotilla token …`

use clap::Subcommand;
use flotilla::{Client, NewToken};

use super::output::{print, rfc3339, Format};

#[derive(Debug, Subcommand)]
pub enum TokenCmd {
    /// Create the cluster's first token (works only while there is none); prints its secret.
    Bootstrap {
        /// A name for the token, to tell tokens apart in `token ls`.
        #[arg(default_value = "admin")]
        name: String,
    },
    /// Create a token; prints its secret, which is shown only this once.
    Create {
        /// A name for the token, to tell tokens apart in `token ls`.
        name: String,
    },
    /// List tokens (never their secrets).
    Ls,
    /// Revoke a token by id. The last token not revoked is refused unless `--force`: without
    /// a token no client can get in (see docs/security.md, "Locked out").
    Revoke {
        /// The token's id, as `token ls` shows it.
        id: String,
        /// Revoke it even if it is the last token not revoked.
        #[arg(long)]
        force: bool,
    },
}

fn print_new(format: Format, t: &NewToken) -> anyhow::Result<()> {
    print(format, t, |t| {
        eprintln!("token {} ({}) created; its secret is shown only now:", t.token.id, t.token.name);
        println!("{}", t.secret);
    })
}

impl TokenCmd {
    pub async fn run(&self, client: &Client, format: Format) -> anyhow::Result<()> {
        match self {
            TokenCmd::Bootstrap { name } => print_new(format, &client.bootstrap_token(name).await?),
            TokenCmd::Create { name } => print_new(format, &client.create_token(name).await?),
            TokenCmd::Ls => print(format, &client.list_tokens().await?, |tokens| {
                println!("{:<18} {:<20} {:<32} REVOKED", "ID", "NAME", "CREATED");
                for t in tokens {
                    let revoked = t.revoked_at_ms.map_or(String::new(), rfc3339);
                    println!("{:<18} {:<20} {:<32} {}", t.id, t.name, rfc3339(t.created_at_ms), revoked);
                }
            }),
            TokenCmd::Revoke { id, force } => {
                let t = if *force { client.revoke_token_forced(id).await? } else { client.revoke_token(id).await? };
                print(format, &t, |t| println!("revoked {}", t.id))
            }
        }
    }
}
