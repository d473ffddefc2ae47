//! The worker-mode protocol, and a helper to write workers in Rust.
//!
//! A function with `mode = "worker"` runs one long-lived process per replica (so an expensive
//! model load happens once). The node writes **request** frames to the process's stdin and
//! reads **response** frames from its stdout; stderr is free for logs. Every frame is
//!
//! ```text
//! u32 length (big-endian, of what follows) | u8 kind | u64 id (big-endian) | payload
//! kind 1 = request (payload = input)
//! kind 2 = ok      (payload = output)
//! kind 3 = error   (payload = UTF-8 message)
//! ```
//!
//! A response carries the id of its request. With `concurrency > 1` several requests may be
//! outstanding and responses may come in any order. Payloads are at most
//! [`MAX_PAYLOAD`] bytes. Anything else on stdout (a stray `print`, a bad length, an unknown
//! id) is malformed output: the node fails the inputs in flight with a message saying so and
//! restarts the process.
//!
//! ```no_run
//! // A worker that upper-cases its input.
//! fn main() -> std::io::Result<()> {
//!     flotilla::worker::serve(|input| Ok(input.to_ascii_uppercase()))
//! }
//! ```
//!
//! A one-file Python helper with the same protocol is in `sdk/python/flotilla_worker.py`.

use std::io::{self, BufReader, BufWriter, Read, Write};

/// Largest input or output of one function call, bytes (4 MiB).
pub const MAX_PAYLOAD: usize = 4 << 20;

/// Bytes of a frame before its payload after the length: kind and id.
const HEADER: usize = 1 + 8;

/// One frame of the protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Request { id: u64, input: Vec<u8> },
    Ok { id: u64, output: Vec<u8> },
    Error { id: u64, message: String },
}

/// Why bytes are not a valid frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {0} bytes is shorter than its 9-byte header")]
    Short(usize),
    #[error("frame of {0} bytes is over the limit of {max}", max = MAX_PAYLOAD + HEADER)]
    TooLong(usize),
    #[error("unknown frame kind {0}")]
    Kind(u8),
    #[error("error message is not UTF-8")]
    Utf8,
}

impl Frame {
    /// The frame as bytes on the wire.
    pub fn encode(&self) -> Vec<u8> {
        let (kind, id, payload): (u8, u64, &[u8]) = match self {
            Frame::Request { id, input } => (1, *id, input),
            Frame::Ok { id, output } => (2, *id, output),
            Frame::Error { id, message } => (3, *id, message.as_bytes()),
        };
        let mut out = Vec::with_capacity(4 + HEADER + payload.len());
        out.extend_from_slice(&((HEADER + payload.len()) as u32).to_be_bytes());
        out.push(kind);
        out.extend_from_slice(&id.to_be_bytes());
        out.extend_from_slice(payload);
        out
    }

    /// The id the frame carries.
    pub fn id(&self) -> u64 {
        match self {
            Frame::Request { id, .. } | Frame::Ok { id, .. } | Frame::Error { id, .. } => *id,
        }
    }
}

/// Checks a frame's length prefix before its body is read.
pub fn check_len(len: usize) -> Result<(), FrameError> {
    if len < HEADER {
        return Err(FrameError::Short(len));
    }
    if len > MAX_PAYLOAD + HEADER {
        return Err(FrameError::TooLong(len));
    }
    Ok(())
}

/// Parses a frame body (what follows the length prefix).
pub fn decode_body(body: &[u8]) -> Result<Frame, FrameError> {
    check_len(body.len())?;
    let id = u64::from_be_bytes(body[1..HEADER].try_into().expect("8 bytes"));
    let payload = body[HEADER..].to_vec();
    match body[0] {
        1 => Ok(Frame::Request { id, input: payload }),
        2 => Ok(Frame::Ok { id, output: payload }),
        3 => Ok(Frame::Error { id, message: String::from_utf8(payload).map_err(|_| FrameError::Utf8)? }),
        k => Err(FrameError::Kind(k)),
    }
}

/// Reads one frame; `Ok(None)` at a clean end of input (between frames).
pub fn read_frame(r: &mut impl Read) -> io::Result<Option<Frame>> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_be_bytes(len) as usize;
    check_len(len).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    let mut body = vec![0; len];
    r.read_exact(&mut body)?;
    decode_body(&body).map(Some).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Serves requests from stdin with `handler` until stdin closes, one at a time, answering
/// each on stdout. An `Err` from the handler becomes an error response (the call fails with
/// that message); the worker keeps serving.
pub fn serve(mut handler: impl FnMut(Vec<u8>) -> Result<Vec<u8>, String>) -> io::Result<()> {
    let mut input = BufReader::new(io::stdin().lock());
    let mut output = BufWriter::new(io::stdout().lock());
    while let Some(frame) = read_frame(&mut input)? {
        let Frame::Request { id, input } = frame else {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "expected a request frame"));
        };
        let reply = match handler(input) {
            Ok(output) if output.len() > MAX_PAYLOAD => Frame::Error {
                id,
                message: format!("output of {} bytes is over the limit of {MAX_PAYLOAD}", output.len()),
            },
            Ok(output) => Frame::Ok { id, output },
            Err(message) => Frame::Error { id, message },
        };
        output.write_all(&reply.encode())?;
        output.flush()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        for f in [
            Frame::Request { id: 7, input: b"abc".to_vec() },
            Frame::Ok { id: u64::MAX, output: vec![] },
            Frame::Error { id: 0, message: "bad input ✗".into() },
        ] {
            let bytes = f.encode();
            assert_eq!(read_frame(&mut &bytes[..]).unwrap(), Some(f));
        }
        assert_eq!(read_frame(&mut &[][..]).unwrap(), None);
    }

    #[test]
    fn malformed_frames_are_errors() {
        assert_eq!(decode_body(&[2, 0, 0]), Err(FrameError::Short(3)));
        assert_eq!(decode_body(&[9, 0, 0, 0, 0, 0, 0, 0, 1]), Err(FrameError::Kind(9)));
        assert_eq!(decode_body(&[3, 0, 0, 0, 0, 0, 0, 0, 1, 0xff]), Err(FrameError::Utf8));
        assert_eq!(check_len(MAX_PAYLOAD + HEADER + 1), Err(FrameError::TooLong(MAX_PAYLOAD + HEADER + 1)));
        // A length prefix that promises more than there is.
        let mut truncated = Frame::Ok { id: 1, output: b"hello".to_vec() }.encode();
        truncated.truncate(8);
        assert!(read_frame(&mut &truncated[..]).is_err());
        // Text where a frame should be (a stray print) reads as an absurd length.
        assert!(read_frame(&mut &b"hello world\n"[..]).is_err());
    }
}
