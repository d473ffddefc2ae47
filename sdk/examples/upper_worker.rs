//! A worker-mode function written with the SDK's helper: upper-cases its input, fails inputs
//! that start with `fail:`. Start-up work (here, reading the pid) happens once per replica.
//!
//! App spec: `command = ["/app/upper_worker"]`, `mode = "worker"`.

fn main() -> std::io::Result<()> {
    let pid = std::process::id();
    flotilla::worker::serve(|input| {
        if let Some(reason) = input.strip_prefix(b"fail:") {
            return Err(String::from_utf8_lossy(reason).into_owned());
        }
        let mut out = input.to_ascii_uppercase();
        out.extend_from_slice(format!(" (pid {pid})").as_bytes());
        Ok(out)
    })
}
