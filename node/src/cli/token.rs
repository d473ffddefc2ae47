//! `flotilla token …`

use clap::Subcommand;
use flotilla::{Client, NewToken};

use super::output::{print, rfc3339, Format};

#[derive(Debug, Subcommand)]
pub enum TokenCmd {
    /// Create the cluster's first token (works only while there is none); prints its secret.
    Bootstrap {
        #[arg(default_value = "admin")]
        name: String,
    },
    /// Create a token; prints its secret, which is shown only this once.
    Create { name: String },
    /// List tokens (never their secrets).
    Ls,
    /// Revoke a token by id.
    Revoke { id: String },
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
            TokenCmd::Revoke { id } => print(format, &client.revoke_token(id).await?, |t| println!("revoked {}", t.id)),
        }
    }
}
