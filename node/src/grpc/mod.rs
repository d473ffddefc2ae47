//! The node's gRPC services. Each method converts the request, calls into [`crate::cluster`],
//! and converts back; errors become a `tonic::Status` in one place ([`status`]).

mod control;
mod functions;
mod images;
mod observe;
mod peer;
mod sandboxes;
mod schedules;
mod snapshots;
mod status;
mod tokens;
mod worker;

pub use control::ControlService;
pub use images::ImagesService;
pub use observe::ObserveService;
pub use peer::PeerService;
pub use peer::{authenticate, OTHER_CLUSTER};
pub use tokens::BootstrapService;
pub use worker::WorkerService;
