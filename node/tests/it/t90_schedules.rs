//! Schedules: every tick is committed exactly once while the leader is killed or frozen, the
//! overlap and catch-up policies leave the records they promise, and pause/resume/trigger.
//! Everything is read back through the CLI, as a user would.
//!
//! Function execution is not what these tests check: the functions sleep for longer than the
//! tests look (with a time limit longer still), so a run that is not skipped is `queued` or
//! `running` (live) whether or not a replica has taken it yet, and the records each policy
//! leaves are the same either way.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::*;

/// A tick the Scheduler fires more than this late is "missed" (node `schedule::plan::ON_TIME_MS`).
const ON_TIME_MS: i64 = 5_000;

/// One scheduled run as `runs ls -o json` shows it.
#[derive(Debug, Clone)]
struct Run {
    id: String,
    function: String,
    scheduled_at: i64,
    created_at: i64,
    state: String,
    error: String,
}

fn ms(v: &Value) -> i64 {
    let text = v.as_str().unwrap_or_else(|| panic!("not a time: {v}"));
    chrono::DateTime::parse_from_rfc3339(text).unwrap().timestamp_millis()
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// When an app was deployed, and the first tick of each schedule as `app deploy` printed it.
struct Deployed {
    before: i64,
    after: i64,
    printed: BTreeMap<String, i64>,
}

/// Writes `app.toml` for app `name` with `functions` (`[functions.X]` bodies) and deploys it.
/// Each function runs at most one container once functions execute (the runs only need to
/// stay live), from the busybox image, built first.
fn deploy_app(c: &TestCluster, name: &str, functions: &[(&str, &str)]) -> Deployed {
    busybox_image();
    let mut text = format!("name = \"{name}\"\n");
    for (f, body) in functions {
        text.push_str(&format!(
            "\n[functions.{f}]\nimage = \"flotilla/busybox\"\ncommand = [\"sleep\", \"300\"]\ntimeout_s = 600\nmax_containers = 1\n{body}\n"
        ));
    }
    let path: PathBuf = c.dir.path().join(format!("{name}.toml"));
    std::fs::write(&path, text).unwrap();
    let before = now_ms();
    let out = cli_json(c, &["app", "deploy", path.to_str().unwrap()]);
    let after = now_ms();
    let printed = out["schedules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["function"].as_str().unwrap().to_string(), ms(&s["next"][0])))
        .collect();
    Deployed { before, after, printed }
}

/// Runs the CLI with `-o json` against every endpoint, retrying while the cluster elects.
fn cli_json(c: &TestCluster, args: &[&str]) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = c.cli(&c.endpoints(), &[&["-o", "json"], args].concat());
        if out.status.success() {
            return serde_json::from_slice(&out.stdout).unwrap();
        }
        assert!(Instant::now() < deadline, "flotilla {args:?}: {}\n{}", String::from_utf8_lossy(&out.stderr), c.logs());
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Every scheduled run of `app`, oldest tick first.
fn runs(c: &TestCluster, app: &str) -> Vec<Run> {
    let list = cli_json(c, &["runs", "ls", "--app", app, "--scheduled", "--limit", "100000"]);
    let mut runs: Vec<Run> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|r| Run {
            id: r["id"].as_str().unwrap().to_string(),
            function: r["function"].as_str().unwrap().to_string(),
            scheduled_at: ms(&r["scheduled_at"]),
            created_at: ms(&r["created_at"]),
            state: r["state"].as_str().unwrap().to_string(),
            error: r["error"].as_str().unwrap_or_default().to_string(),
        })
        .collect();
    runs.sort_by_key(|r| r.scheduled_at);
    runs
}

/// Waits until every schedule of `app` has committed its ticks up to `t` (Unix ms).
fn wait_fired_through(c: &TestCluster, app: &str, t: i64) {
    c.eventually(Duration::from_secs(60), "every schedule to fire through the window", || {
        let list = cli_json(c, &["schedule", "ls", "--app", app]);
        list.as_array().unwrap().iter().all(|s| s["last_fired_at"].as_str().is_some() && ms(&s["last_fired_at"]) >= t)
    });
}

/// The runs of 1-second schedule `function` with ticks up to `until`, checked to be exactly
/// one per tick from its first tick after the deploy on: no duplicate, no gap.
fn exactly_once(all: &[Run], function: &str, d: &Deployed, until: i64) -> Vec<Run> {
    let rs: Vec<Run> = all.iter().filter(|r| r.function == function && r.scheduled_at <= until).cloned().collect();
    let ticks: Vec<i64> = rs.iter().map(|r| r.scheduled_at).collect();
    // The first tick is the first one after the deploy: within a second of it, and no later
    // than what `app deploy` printed (which may already be the second tick on a slow machine).
    let first = *ticks.first().unwrap_or_else(|| panic!("{function}: no runs"));
    assert!(
        first > d.before && first <= d.after + 1_000 && first <= d.printed[function],
        "{function}: first run at {first}, deployed between {} and {}, printed {}",
        d.before,
        d.after,
        d.printed[function]
    );
    let expected: Vec<i64> = (0..).map(|k| first + k * 1_000).take_while(|t| *t <= until).collect();
    if ticks != expected {
        let dups: Vec<i64> = ticks.windows(2).filter(|w| w[0] == w[1]).map(|w| w[0]).collect();
        let missing: Vec<&i64> = expected.iter().filter(|t| !ticks.contains(t)).collect();
        panic!("{function}: not exactly one record per tick: duplicates {dups:?}, missing {missing:?}\n{rs:#?}");
    }
    rs
}

/// Whether a run is queued or running (not skipped, not ended).
fn is_live(r: &Run) -> bool {
    matches!(r.state.as_str(), "queued" | "running")
}

/// Asserts every run is queued or running, or skipped with a reason containing `why` (with
/// `None`, nothing may be skipped).
fn only_skipped_for(rs: &[Run], function: &str, why: Option<&str>) {
    for r in rs {
        let skipped_for = |w: &str| r.state == "skipped" && r.error.contains(w);
        let ok = is_live(r) || why.is_some_and(skipped_for);
        assert!(
            ok,
            "{function}: run {} at {} is {} ({:?}); only {why:?} may skip",
            r.id, r.scheduled_at, r.state, r.error
        );
    }
}

/// The three 1-second schedules the failover tests run: a period that catches up everything,
/// a 6-field cron, and a period that skips missed ticks.
const FAILOVER_FUNCTIONS: &[(&str, &str)] = &[
    ("period", "schedule = { period = \"1s\" }\ncatch_up = \"all\"\ncatch_up_window_s = 600"),
    ("cron", "schedule = { cron = \"* * * * * *\", timezone = \"Europe/Berlin\" }\ncatch_up = \"all\""),
    ("strict", "schedule = { period = \"1s\" }\ncatch_up = \"none\""),
];

/// Reads the runs back after a minute of faults and checks each tick was committed once.
fn check_failover_runs(c: &mut TestCluster, deployed: &Deployed) {
    c.wait_leader(Duration::from_secs(30));
    let until = now_ms() - 1_000;
    wait_fired_through(c, "tick", until);
    let all = runs(c, "tick");
    for (f, why) in [("period", None), ("cron", None), ("strict", Some("catch_up=none"))] {
        let rs = exactly_once(&all, f, deployed, until);
        assert!(rs.len() >= 50, "{f}: only {} ticks in the window", rs.len());
        only_skipped_for(&rs, f, why);
        eprintln!("{f}: {} ticks, {} skipped", rs.len(), rs.iter().filter(|r| r.state == "skipped").count());
    }
}

#[test]
fn every_tick_fires_once_while_the_leader_is_sigkilled_and_restarted() {
    let mut c = TestCluster::start(3, &[]);
    c.wait_leader(Duration::from_secs(20));
    let deployed = deploy_app(&c, "tick", FAILOVER_FUNCTIONS);
    let end = Instant::now() + Duration::from_secs(60);
    let mut leaders = Vec::new();
    while Instant::now() < end {
        let leader = c.wait_leader(Duration::from_secs(30));
        leaders.push(leader);
        eprintln!("--- SIGKILL leader {leader}");
        c.node(leader).kill();
        // The survivors elect a new leader, which takes over the schedules; then the old one
        // comes back as a follower.
        let next = c.wait_leader(Duration::from_secs(30));
        eprintln!("--- node {next} leads; restart node {leader}");
        c.node(leader).start();
        std::thread::sleep(Duration::from_millis(2_000));
    }
    leaders.dedup();
    assert!(leaders.len() >= 6, "only {} leader changes in a minute: {leaders:?}", leaders.len());
    check_failover_runs(&mut c, &deployed);
}

#[test]
fn every_tick_fires_once_while_the_leader_is_frozen() {
    let mut c = TestCluster::start(3, &[]);
    c.wait_leader(Duration::from_secs(20));
    let deployed = deploy_app(&c, "tick", FAILOVER_FUNCTIONS);
    let end = Instant::now() + Duration::from_secs(60);
    let mut changes = Vec::new();
    while Instant::now() < end {
        let leader = c.wait_leader(Duration::from_secs(30));
        let pid = c.node(leader).pid().unwrap().to_string();
        // Frozen, it still believes it leads: whatever it proposes when it wakes up belongs to
        // a term that is over and never commits.
        eprintln!("--- SIGSTOP leader {leader}");
        assert!(Command::new("kill").args(["-STOP", &pid]).status().unwrap().success());
        let frozen = Instant::now();
        // The other two elect one of them (seen from both) while it is frozen.
        let others: Vec<u64> = (1..=3).filter(|n| *n != leader).collect();
        while frozen.elapsed() < Duration::from_millis(4_000) {
            let seen: Vec<Option<u64>> =
                others.iter().map(|n| c.status(*n).and_then(|s| s["leader"].as_u64())).collect();
            if seen[0].is_some_and(|l| l != leader) && seen[0] == seen[1] {
                changes.push((leader, seen[0].unwrap()));
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        std::thread::sleep(Duration::from_millis(4_000).saturating_sub(frozen.elapsed()));
        eprintln!("--- SIGCONT node {leader}");
        assert!(Command::new("kill").args(["-CONT", &pid]).status().unwrap().success());
        std::thread::sleep(Duration::from_millis(3_000));
    }
    assert!(changes.len() >= 5, "only {} leader changes in a minute: {changes:?}", changes.len());
    check_failover_runs(&mut c, &deployed);
}

#[test]
fn catch_up_policies_after_a_whole_cluster_outage() {
    let mut c = TestCluster::start(3, &[]);
    c.wait_leader(Duration::from_secs(20));
    let deployed = deploy_app(
        &c,
        "cu",
        &[
            ("none", "schedule = { period = \"1s\" }\ncatch_up = \"none\""),
            ("latest", "schedule = { period = \"1s\" }\ncatch_up = \"latest\"\ncatch_up_window_s = 600"),
            ("all", "schedule = { period = \"1s\" }\ncatch_up = \"all\"\ncatch_up_window_s = 8"),
        ],
    );
    std::thread::sleep(Duration::from_secs(3));
    eprintln!("--- SIGKILL every node for 16 s");
    for id in 1..=3 {
        c.node(id).kill();
    }
    std::thread::sleep(Duration::from_secs(16));
    for id in 1..=3 {
        c.node(id).start();
    }
    c.wait_leader(Duration::from_secs(30));
    let until = now_ms() - 1_000;
    wait_fired_through(&c, "cu", until);
    let all = runs(&c, "cu");
    // A missed tick was committed more than ON_TIME_MS after its time; its record's creation
    // time is the time the leader planned it, so lateness is exact.
    let late = |r: &Run| r.created_at - r.scheduled_at;
    for f in ["none", "latest", "all"] {
        let rs = exactly_once(&all, f, &deployed, until);
        let missed: Vec<&Run> = rs.iter().filter(|r| late(r) > ON_TIME_MS).collect();
        assert!(missed.len() >= 10, "{f}: only {} missed ticks", missed.len());
        for r in rs.iter().filter(|r| late(r) <= ON_TIME_MS) {
            assert!(is_live(r), "{f}: on-time tick {r:?}");
        }
        match f {
            "none" => only_skipped_for(&rs, f, Some("catch_up=none")),
            "latest" => {
                let (last, earlier) = missed.split_last().unwrap();
                assert!(is_live(last), "latest: the last missed tick runs: {last:?}");
                for r in earlier {
                    assert!(r.state == "skipped" && r.error.contains("catch_up=latest"), "latest: {r:?}");
                }
            }
            _ => {
                for r in &missed {
                    let ok =
                        if late(r) <= 8_000 { is_live(r) } else { r.state == "skipped" && r.error.contains("(8 s)") };
                    assert!(ok, "all, window 8 s: {r:?}");
                }
                assert!(missed.iter().any(|r| is_live(r)), "all: nothing was caught up");
            }
        }
    }
}

#[test]
fn overlap_policies_pause_resume_and_trigger() {
    let mut c = TestCluster::start(3, &[]);
    c.wait_leader(Duration::from_secs(20));
    let deployed = deploy_app(
        &c,
        "ov",
        &[
            ("allow", "schedule = { period = \"1s\" }\noverlap = \"allow\""),
            ("skip", "schedule = { period = \"1s\" }\noverlap = \"skip\""),
            ("buffer", "schedule = { period = \"1s\" }\noverlap = \"buffer_one\""),
        ],
    );
    std::thread::sleep(Duration::from_secs(6));
    let until = now_ms() - 1_000;
    wait_fired_through(&c, "ov", until);
    let all = runs(&c, "ov");
    let live = is_live;
    // Each run sleeps for 300 s: the first one of each schedule is still live throughout.
    let allow = exactly_once(&all, "allow", &deployed, until);
    assert!(allow.len() >= 4 && allow.iter().all(live), "allow runs every tick: {allow:#?}");
    let skip = exactly_once(&all, "skip", &deployed, until);
    assert!(live(&skip[0]), "{:?}", skip[0]);
    for r in &skip[1..] {
        assert_eq!(r.state, "skipped", "{r:?}");
        assert!(r.error.contains(&format!("overlap=skip: run {} is still live", skip[0].id)), "{r:?}");
    }
    let buffer = exactly_once(&all, "buffer", &deployed, until);
    assert!(live(&buffer[0]), "{:?}", buffer[0]);
    assert_eq!(buffer[1].state, "queued", "{:?}", buffer[1]);
    assert_eq!(buffer[1].error, format!("buffered until run {} ends", buffer[0].id));
    for r in &buffer[2..] {
        assert!(
            r.state == "skipped" && r.error.contains(&format!("run {} is already buffered", buffer[1].id)),
            "{r:?}"
        );
    }
    let schedules = cli_json(&c, &["schedule", "ls", "--app", "ov"]);
    let buf = schedules.as_array().unwrap().iter().find(|s| s["function"] == "buffer").unwrap();
    assert_eq!(
        (buf["active_call"].as_str(), buf["buffered_call"].as_str()),
        (Some(&*buffer[0].id), Some(&*buffer[1].id))
    );
    assert_eq!((buf["overlap"].as_str(), buf["paused"].as_bool()), (Some("buffer_one"), Some(false)));

    // Trigger: a run now, outside the ticks.
    let triggered = cli_json(&c, &["schedule", "trigger", "ov/allow"]);
    let id = triggered["id"].as_str().unwrap();
    let all_runs = cli_json(&c, &["runs", "ls", "--app", "ov", "--function", "allow"]);
    let t = all_runs.as_array().unwrap().iter().find(|r| r["id"] == id).expect("triggered run listed");
    assert_eq!(t["scheduled_at"], Value::Null);
    assert!(matches!(t["state"].as_str(), Some("queued" | "running")), "{t}");

    // Pause: no tick while paused; resume: ticks again from the next one after now.
    let paused = cli_json(&c, &["schedule", "pause", "ov/allow"]);
    assert_eq!(paused["paused"], true);
    let paused_at = now_ms();
    std::thread::sleep(Duration::from_secs(3));
    let resumed = cli_json(&c, &["schedule", "resume", "ov/allow"]);
    let resumed_at = now_ms();
    assert_eq!(resumed["paused"], false);
    assert!(ms(&resumed["next_fire_at"]) > resumed_at - 1_000);
    wait_fired_through(&c, "ov", resumed_at + 1_500);
    let after = runs(&c, "ov");
    let in_pause: Vec<&Run> = after
        .iter()
        .filter(|r| r.function == "allow" && r.scheduled_at > paused_at + 500 && r.scheduled_at < resumed_at - 500)
        .collect();
    assert!(in_pause.is_empty(), "ticks fired while paused: {in_pause:#?}");
    assert!(after.iter().any(|r| r.function == "allow" && r.scheduled_at > resumed_at), "no tick after the resume");

    // Bad input names what is wrong.
    let bad = c.cli(&c.endpoints(), &["schedule", "pause", "ov"]);
    assert_eq!(bad.status.code(), Some(2), "{}", String::from_utf8_lossy(&bad.stderr));
    let missing = c.cli(&c.endpoints(), &["schedule", "trigger", "ov/nope"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("schedule \"ov/nope\" not found"));
}

#[test]
fn scheduled_runs_execute_and_overlap_is_judged_on_their_states() {
    busybox_image();
    let mut c = TestCluster::start(3, &[]);
    c.wait_leader(Duration::from_secs(20));
    let path = c.dir.path().join("ex.toml");
    std::fs::write(
        &path,
        r#"name = "ex"
[functions.tick]
image = "flotilla/busybox"
command = ["sh", "-c", "echo ran"]
schedule = { period = "1s" }
min_containers = 1
[functions.slow]
image = "flotilla/busybox"
command = ["sh", "-c", "sleep 2.5; echo done"]
schedule = { period = "1s" }
overlap = "skip"
min_containers = 1
max_containers = 1
"#,
    )
    .unwrap();
    cli_json(&c, &["app", "deploy", path.to_str().unwrap()]);
    std::thread::sleep(Duration::from_secs(10));
    let list = cli_json(&c, &["runs", "ls", "--app", "ex", "--scheduled", "--limit", "1000"]);
    let mut rows: Vec<Value> = list.as_array().unwrap().clone();
    rows.sort_by_key(|r| ms(&r["scheduled_at"]));
    let of = |f: &str| rows.iter().filter(|r| r["function"] == f).cloned().collect::<Vec<_>>();
    // Every tick of `tick` that had time to run ran, once, with its output.
    let done: Vec<Value> = of("tick").into_iter().filter(|r| r["state"] == "succeeded").collect();
    assert!(done.len() >= 5, "scheduled runs executed: {rows:#?}");
    assert!(done.iter().all(|r| r["output"] == "ran\n" && r["attempt"] == 1), "{done:#?}");
    // `slow` takes 2.5 s per 1 s tick: a tick whose previous run is still live is skipped,
    // naming it; the others run. Runs never overlap.
    let slow = of("slow");
    let ran: Vec<&Value> = slow.iter().filter(|r| r["state"] != "skipped").collect();
    let skipped: Vec<&Value> = slow.iter().filter(|r| r["state"] == "skipped").collect();
    assert!(ran.len() >= 2 && skipped.len() >= 2, "{slow:#?}");
    assert!(skipped.iter().all(|r| r["error"].as_str().unwrap().contains("overlap=skip: run fc-")), "{slow:#?}");
    let finished: Vec<&&Value> = ran.iter().filter(|r| r["state"] == "succeeded").collect();
    assert!(!finished.is_empty(), "{slow:#?}");
    for pair in ran.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        if let (Some(end), Some(start)) = (a["finished_at"].as_str(), b["started_at"].as_str()) {
            let (end, start) = (ms(&Value::from(end)), ms(&Value::from(start)));
            assert!(start >= end, "run {} started before {} ended: {slow:#?}", b["id"], a["id"]);
        }
    }
}
