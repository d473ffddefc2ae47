//! Error mapping: unreachable engine, missing image or container, name conflicts, bad limits.

use super::{docker, spec, unique};
use crate::runtime::{Docker, RuntimeError};

#[tokio::test]
async fn unreachable_engine_names_the_socket() {
    let err = Docker::connect_to("unix:///nonexistent/docker.sock").await.expect_err("no engine there");
    assert!(matches!(err, RuntimeError::EngineUnreachable { .. }), "{err:?}");
    assert!(err.to_string().contains("unix:///nonexistent/docker.sock"), "{err}");
}

#[tokio::test]
async fn missing_image_is_image_not_found() {
    let docker = docker().await;
    let mut spec = spec(&unique("noimage"));
    spec.image = "flotilla/does-not-exist:1".into();
    let err = docker.create(&spec).await.expect_err("no such image");
    assert!(matches!(&err, RuntimeError::ImageNotFound(i) if i == "flotilla/does-not-exist:1"), "{err:?}");
}

#[tokio::test]
async fn duplicate_name_is_a_conflict() {
    let docker = docker().await;
    let spec = spec(&unique("dup"));
    let id = docker.create(&spec).await.expect("create");
    let second = docker.create(&spec).await;
    docker.remove(&id).await.expect("remove");
    assert!(matches!(second, Err(RuntimeError::Conflict(_))), "{second:?}");
}

#[tokio::test]
async fn unknown_container_is_none_or_not_found() {
    let docker = docker().await;
    let id = unique("ghost");
    assert_eq!(docker.state(&id).await.expect("state"), None);
    docker.remove(&id).await.expect("removing a missing container is fine");
    for result in [docker.start(&id).await, docker.kill(&id, "SIGKILL").await] {
        assert!(matches!(&result, Err(RuntimeError::NotFound(x)) if *x == id), "{result:?}");
    }
    assert!(matches!(docker.wait(&id).await, Err(RuntimeError::NotFound(_))));
}

#[tokio::test]
async fn zero_limits_are_refused_before_the_engine() {
    let docker = docker().await;
    let mut spec = spec(&unique("zero"));
    spec.limits.memory_mib = 0;
    let err = docker.create(&spec).await.expect_err("memory 0 means unlimited to the engine");
    assert!(matches!(err, RuntimeError::InvalidSpec(_)), "{err:?}");
}
