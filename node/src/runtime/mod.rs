//! The container runtime: Flotilla's sandboxes as Docker containers, driven through the
//! engine's HTTP API (bollard), never through the `docker` CLI.
//!
//! # Design
//!
//! [`Docker`] is a cheap, cloneable handle on the local engine. A sandbox is a container made
//! by [`Docker::create`] from a [`ContainerSpec`]; with no command its main process is a
//! keepalive (`sleep infinity`) and work is run in it with [`Docker::exec`], whose output is
//! streamed chunk by chunk ([`Output::Stdout`] / [`Output::Stderr`], in the order produced)
//! and whose stdin, when asked for, is an [`AsyncWrite`](tokio::io::AsyncWrite) that sends EOF
//! when shut down or dropped. Files go in and out as tar archives: through the engine's
//! archive API ([`Docker::put_archive`], [`Docker::get_archive`]; snapshots and restores of
//! `/work`), or through a `tar` run in the sandbox for any path a user names, tmpfs
//! included ([`Docker::tar_in`], [`Docker::tar_out`]; see [`copy`]). A pre-warmed container can be resized when it is handed out
//! ([`Docker::update_limits`]). Every container carries the label `flotilla=1` plus the
//! caller's labels, so a node can find (and clean up) its sandboxes with
//! [`Docker::list_named`] after a restart.
//!
//! Base images are built locally from host files and imported (see [`images`]); other images
//! come from a registry or a build context (see [`registry`]), and [`Docker::create`] pulls a
//! missing image whose reference names a registry. The engine may speak an older API than the client (Docker 20.10 = API
//! 1.41); [`Docker::connect`] negotiates the version.
//!
//! Errors are [`RuntimeError`]s; the engine's 404 becomes [`RuntimeError::NotFound`] or
//! [`RuntimeError::ImageNotFound`] depending on the call, 409 [`RuntimeError::Conflict`].
//!
//! # Isolation defaults (applied by [`Docker::create`]; callers cannot weaken them)
//!
//! Sandboxes run untrusted code, so each default removes a way out or a way to hurt the host
//! or other sandboxes:
//!
//! - **All capabilities dropped, then only CHOWN, DAC_OVERRIDE, FOWNER, FSETID, KILL, SETGID,
//!   SETUID and NET_BIND_SERVICE added back.** Ordinary programs (package installs, `chown`,
//!   servers on port 80, `su`-style tools) need these and they only act inside the
//!   container's own namespaces. Left out on purpose: SYS_ADMIN (mount, and most container
//!   escapes), NET_RAW (raw sockets: packet spoofing and sniffing on a shared bridge),
//!   NET_ADMIN, SYS_PTRACE, MKNOD, SYS_CHROOT, SETFCAP, AUDIT_WRITE and the rest of Docker's
//!   own defaults.
//! - **`no-new-privileges`.** setuid/setgid binaries and file capabilities cannot raise
//!   privileges beyond the set above.
//! - **Memory limit with swap equal to memory.** The limit is a hard wall: a process that
//!   goes over is OOM-killed inside the sandbox instead of pushing the host into swap. (`/tmp`
//!   tmpfs pages count against it too.)
//! - **CPU as `NanoCpus`** (CFS quota): a sandbox gets at most its share of CPU time even
//!   when it spins every core.
//! - **A pids limit.** Processes and threads are capped, so a fork bomb exhausts the
//!   sandbox's own budget, not the host's pid table.
//! - **Read-only root filesystem.** Code cannot replace the image's binaries or libraries
//!   for later commands, and image layers stay shared and unchanged. Writable places are:
//!   - **`/work`: the sandbox's own disk**, a loop-mounted ext4 file of the size asked for
//!     ([`ContainerSpec::disk_mib`]), made with the container and removed with it: writes
//!     past its size get ENOSPC and the host's disk is untouched (see [`disk`]). Without a
//!     size, or on a host that cannot make disks, **an anonymous Docker volume** created with
//!     the container and removed with it ([`Docker::remove`] passes `v=true`). Either is the
//!     working directory and a place for [`Docker::put_archive`]: the engine refuses archive
//!     uploads anywhere in a read-only rootfs, even into a tmpfs, but accepts them into a
//!     volume or bind mount.
//!   - **`/tmp`: a tmpfs** (`nosuid,nodev`) for scratch files, charged to the memory limit
//!     and so sized to half of it (`TMP_SHARE`): tmpfs pages cannot be swapped or reclaimed,
//!     so a `/tmp` as large as the limit, once full, left no memory for any process, and every
//!     later exec (even the `rm` to clean it up) was OOM-killed. With half, a full `/tmp`
//!     gives `No space left on device` and the other half runs commands.
//! - **`network_mode: none` when `block_network`**: only a loopback interface, no route out.
//! - **Nothing from the host is bind-mounted but the sandbox's own `/work` disk, least of
//!   all the engine socket** (access to it is root on the host).
//! - **The engine's init (`init: true`, tini) as PID 1**, running the keepalive or the
//!   command. It needs nothing from the image. A bare `sleep` as PID 1 never reaps
//!   orphans: every exec that leaves a background child behind would leave a zombie that
//!   counts against the pids limit forever. The init also forwards signals to the command.
//! - **Keepalive `sleep infinity` when there is no command.** Busybox (1.35) and GNU `sleep`
//!   both accept `infinity`.
//! - **`stop_timeout` of 2 s**: stopping a sandbox never hangs on a process ignoring SIGTERM.
//! - **Engine-side log capped at one 10 MB json-file**: a chatty main process cannot fill
//!   the host's disk.
//! - **Label `flotilla=1`**, so everything this runtime made can be found and removed.
//!
//! `runtime: Some("runsc")` runs the sandbox under gVisor (a user-space kernel) on top of
//! all this, when the engine has that runtime registered.

mod archive;
mod checkpoint;
mod container;
mod copy;
mod debootstrap;
pub mod disk;
mod docker;
mod error;
mod exec;
mod handout;
pub mod images;
mod kill;
mod logs;
mod oom;
pub mod registry;
mod sandbox;
mod spec;

#[cfg(test)]
mod tests;

pub use archive::ImageSource;
pub use docker::Docker;
pub use error::RuntimeError;
pub use exec::Output;
pub use handout::Listed;
pub use logs::{LogLine, LogStream};
pub use registry::{Credentials, Logins};
pub use spec::{ContainerSpec, ContainerState, ExecSpec, ImageInfo, Limits};
