//! Server → client frames and their encoding. Every reply is one JSON object on one line.

use serde::Serialize;

/// The encoded `{"status":"ok"}` line, written for every acknowledged frame; pre-encoded
/// because pipelining clients receive hundreds of thousands of them per second.
const OK_LINE: &[u8] = b"{\"status\":\"ok\"}\n";

/// One reply line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `{"status":"ok"}`
    Ok,
    /// `{"status":"error","message":...}`
    Error(String),
}

#[derive(Serialize)]
struct ErrorLine<'a> {
    status: &'static str,
    message: &'a str,
}

impl Reply {
    /// An error reply with the given message.
    pub fn error(message: impl Into<String>) -> Reply {
        Reply::Error(message.into())
    }

    /// Appends the reply and its newline to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Reply::Ok => out.extend_from_slice(OK_LINE),
            Reply::Error(message) => {
                let line = ErrorLine {
                    status: "error",
                    message,
                };
                // Serialising a struct of two strings into a Vec cannot fail; should it ever,
                // a generic error still keeps the one-reply-per-frame contract.
                if serde_json::to_writer(&mut *out, &line).is_err() {
                    out.extend_from_slice(b"{\"status\":\"error\",\"message\":\"internal error\"}");
                }
                out.push(b'\n');
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_seed_replies() {
        let mut out = Vec::new();
        Reply::Ok.encode(&mut out);
        Reply::error("Invalid credentials").encode(&mut out);
        Reply::error("a \"quoted\"\nline").encode(&mut out);
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], r#"{"status":"ok"}"#);
        assert_eq!(
            lines[1],
            r#"{"status":"error","message":"Invalid credentials"}"#
        );
        let v: serde_json::Value = serde_json::from_str(lines[2]).unwrap();
        assert_eq!(v["message"], "a \"quoted\"\nline");
        assert_eq!(lines.len(), 3);
    }
}
