//! Token lifecycle traps: a token is usable on every node the moment it is acknowledged, and
//! the last token cannot be revoked by accident.

use std::time::Duration;

use crate::harness::*;

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// An SDK client of one node, carrying `token`.
async fn client(endpoint: &str, token: Option<&str>) -> flotilla::Client {
    let options = flotilla::ClientOptions { token: token.map(str::to_string), ..Default::default() };
    flotilla::Client::connect_with([endpoint], options).await.unwrap()
}

#[test]
fn a_new_token_works_on_every_node_at_once() {
    let secret = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(secret.path(), "peer-secret\n").unwrap();
    let c = TestCluster::start(3, &["--auth", "--cluster-secret-file", secret.path().to_str().unwrap()]);
    let eps: Vec<String> = (1..=3).map(|id| c.nodes[&id].endpoint()).collect();
    rt().block_on(async {
        // Other nodes are asked right after the node that made the token answered, in a loop:
        // any node a few milliseconds behind would refuse a token it has not applied yet.
        let first = client(&eps[0], None).await.bootstrap_token("admin").await.unwrap();
        for ep in &eps[1..] {
            let status = client(ep, Some(&first.secret)).await.cluster_status().await;
            assert!(status.is_ok(), "bootstrap token made via node 1 refused by {ep}: {status:?}");
        }
        let admin = client(&eps[0], Some(&first.secret)).await;
        let mut tokens = vec![first.secret];
        for i in 0..20 {
            tokens.push(admin.create_token(&format!("t{i}")).await.unwrap().secret);
            let newest = tokens.last().unwrap();
            for ep in &eps[1..] {
                let status = client(ep, Some(newest)).await.cluster_status().await;
                assert!(status.is_ok(), "token {i} made via node 1 refused by {ep}: {status:?}");
            }
        }
        // Made-up tokens are still refused (after the catch-up), on every node.
        for ep in &eps {
            let err = client(ep, Some("flt_0123456789abcdef_00")).await.cluster_status().await.unwrap_err();
            assert!(matches!(err, flotilla::Error::Unauthenticated(_)), "{ep}: {err:?}");
        }
    });
}

#[test]
fn revoking_the_last_token_needs_force() {
    let secret = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(secret.path(), "peer-secret\n").unwrap();
    let mut c = TestCluster::start(1, &["--auth", "--cluster-secret-file", secret.path().to_str().unwrap()]);
    let ep = c.nodes[&1].endpoint();
    let admin = c.json(1, &["token", "bootstrap"]);
    let (admin_secret, admin_id) =
        (admin["secret"].as_str().unwrap().to_string(), admin["token"]["id"].as_str().unwrap().to_string());
    c.token = Some(admin_secret.clone());
    c.wait_leader(Duration::from_secs(20));

    // The only token: refused with the reason, and it keeps working.
    let o = c.cli(&ep, &["token", "revoke", &admin_id]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("last token") && stderr(&o).contains("--force"), "{}", stderr(&o));
    let err =
        rt().block_on(async { client(&ep, Some(&admin_secret)).await.revoke_token(&admin_id).await }).unwrap_err();
    assert!(matches!(err, flotilla::Error::FailedPrecondition(_)), "{err:?}");
    assert!(c.cli(&ep, &["cluster", "status"]).status.success());

    // With a second token the first may go; the second is then the last one.
    let ci = c.json(1, &["token", "create", "ci"]);
    let (ci_secret, ci_id) =
        (ci["secret"].as_str().unwrap().to_string(), ci["token"]["id"].as_str().unwrap().to_string());
    assert!(c.cli(&ep, &["token", "revoke", &admin_id]).status.success());
    c.token = Some(ci_secret);
    let o = c.cli(&ep, &["token", "revoke", &ci_id]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(c.cli(&ep, &["cluster", "status"]).status.success());

    // --force does it, and then nobody gets in (bootstrap stays closed).
    let o = c.cli(&ep, &["token", "revoke", "--force", &ci_id]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = c.cli(&ep, &["cluster", "status"]);
    assert!(stderr(&o).contains("unauthenticated"), "{}", stderr(&o));
    let o = cli(&ep, &["token", "bootstrap"]);
    assert!(stderr(&o).contains("already has tokens"), "{}", stderr(&o));
}

#[test]
fn a_retried_token_create_makes_one_token() {
    let secret = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(secret.path(), "peer-secret\n").unwrap();
    let c = TestCluster::start(3, &["--auth", "--cluster-secret-file", secret.path().to_str().unwrap()]);
    let eps: Vec<String> = (1..=3).map(|id| c.nodes[&id].endpoint()).collect();
    rt().block_on(async {
        use flotilla_proto::control::bootstrap_client::BootstrapClient;
        use flotilla_proto::control::control_client::ControlClient;
        use flotilla_proto::control::{CreateTokenRequest, CreatedToken, ListTokensRequest};
        let request = |name: &str, rid: &str| CreateTokenRequest { name: name.into(), request_id: rid.into() };
        // A bootstrap retried on another node (as after a transport error) gets the same token.
        let rid = "0123456789abcdef0123456789abcdef-bootstrap";
        // Asked until it answers: the nodes are still starting and electing a leader.
        let bootstrap = |i: usize| {
            let ep = eps[i].clone();
            async move {
                let deadline = std::time::Instant::now() + Duration::from_secs(30);
                loop {
                    let answer = match BootstrapClient::connect(ep.clone()).await {
                        Ok(mut client) => {
                            client.bootstrap_token(request("admin", rid)).await.map_err(|e| e.to_string())
                        }
                        Err(e) => Err(e.to_string()),
                    };
                    match answer {
                        Ok(reply) => return reply.into_inner(),
                        Err(e) if std::time::Instant::now() > deadline => panic!("bootstrap via {ep}: {e}"),
                        Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                    }
                }
            }
        };
        let first = bootstrap(0).await;
        let again = bootstrap(1).await;
        assert_eq!(again.secret, first.secret);
        assert_eq!(again.token, first.token);
        // The same for `token create`, sent twice to two nodes.
        let authed = |ep: String, secret: String| async move {
            let channel = tonic::transport::Endpoint::new(ep).unwrap().connect().await.unwrap();
            let bearer: tonic::metadata::MetadataValue<_> = format!("Bearer {secret}").parse().unwrap();
            ControlClient::with_interceptor(channel, move |mut r: tonic::Request<()>| {
                r.metadata_mut().insert("authorization", bearer.clone());
                Ok(r)
            })
        };
        // Each raw call is asked again while the cluster answers "unavailable" (a leader change
        // on a loaded machine); a retried create is what this test is about anyway.
        async fn ask<T, F: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>>(
            mut call: impl FnMut() -> F,
        ) -> Result<T, tonic::Status> {
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            loop {
                match call().await {
                    Err(s) if s.code() == tonic::Code::Unavailable && std::time::Instant::now() < deadline => {
                        tokio::time::sleep(Duration::from_millis(200)).await
                    }
                    other => return other.map(tonic::Response::into_inner),
                }
            }
        }
        async fn create<C>(
            mut c: ControlClient<C>,
            r: CreateTokenRequest,
        ) -> Result<tonic::Response<CreatedToken>, tonic::Status>
        where
            C: tonic::client::GrpcService<tonic::body::Body>,
            C::Error: Into<tonic::codegen::StdError>,
            C::ResponseBody: tonic::codegen::Body<Data = tonic::codegen::Bytes> + Send + 'static,
            <C::ResponseBody as tonic::codegen::Body>::Error: Into<tonic::codegen::StdError> + Send,
        {
            c.create_token(r).await
        }
        let rid = "fedcba9876543210fedcba9876543210-ci";
        let mut made = Vec::new();
        for ep in [&eps[0], &eps[2]] {
            let control = authed(ep.clone(), first.secret.clone()).await;
            made.push(ask(|| create(control.clone(), request("ci", rid))).await.unwrap());
        }
        assert_eq!(made[0].secret, made[1].secret);
        assert_eq!(made[0].token, made[1].token);
        let control = authed(eps[1].clone(), made[0].secret.clone()).await;
        let list = || {
            let mut c = control.clone();
            async move { c.list_tokens(ListTokensRequest {}).await }
        };
        let tokens = ask(list).await.expect("the token works").tokens;
        let names: Vec<&str> = tokens.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names.len(), 2, "one admin and one ci token: {names:?}");
        // A different request id is a different token; a short one is refused, naming the field.
        let other = ask(|| create(control.clone(), request("ci", "00000000000000000000000000000000-x"))).await;
        assert_ne!(other.unwrap().secret, made[0].secret);
        let err = ask(|| create(control.clone(), request("ci", "short"))).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert!(err.message().starts_with("request_id"), "{}", err.message());
    });
}
