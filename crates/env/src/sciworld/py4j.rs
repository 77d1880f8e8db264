//! The client half of py4j's text protocol, just enough to drive ScienceWorld's
//! `PythonInterface`: construct an object, call its methods, release references.
//!
//! A command is a few newline-terminated lines ending in `e`; the answer is one line, `!y`
//! followed by a type tag and a value, or `!x` followed by the Java exception text. Strings
//! travel with backslash, newline and carriage return escaped so that each value stays on
//! its line.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::EnvError;

/// An argument to a Java method.
#[derive(Debug, Clone)]
pub(crate) enum Arg<'a> {
    /// A `java.lang.String`.
    Str(&'a str),
    /// An `int`.
    Int(i64),
    /// A `boolean`.
    Bool(bool),
    /// A reference to an object already in the gateway, by id.
    Ref(&'a str),
}

/// A value returned by the gateway.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    /// `void` or `null`.
    Nothing,
    /// A string, unescaped.
    Str(String),
    /// An `int` or `long`.
    Int(i64),
    /// A `double`.
    Double(f64),
    /// A `boolean`.
    Bool(bool),
    /// A reference to a Java object (list, map, plain object …) kept alive by the gateway
    /// until [`Connection::release`] is called.
    Ref(String),
}

/// One connection to a py4j `GatewayServer`: the server runs each connection's commands on
/// its own thread, one at a time.
pub(crate) struct Connection {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    line: String,
}

impl Connection {
    /// Connects to the gateway on the loopback port `port`.
    pub(crate) fn connect(port: u16, timeout: Duration) -> Result<Self, EnvError> {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let stream = TcpStream::connect_timeout(&addr, timeout).map_err(|e| {
            EnvError::Backend(format!("connecting to the py4j gateway on {addr}: {e}"))
        })?;
        stream
            .set_read_timeout(Some(timeout))
            .and_then(|()| stream.set_write_timeout(Some(timeout)))
            .and_then(|()| stream.set_nodelay(true))
            .map_err(|e| EnvError::Backend(format!("configuring the py4j socket: {e}")))?;
        let writer = stream
            .try_clone()
            .map_err(|e| EnvError::Backend(format!("cloning the py4j socket: {e}")))?;
        Ok(Connection { reader: BufReader::new(stream), writer, line: String::new() })
    }

    /// `new class(args…)`.
    pub(crate) fn construct(&mut self, class: &str, args: &[Arg<'_>]) -> Result<Value, EnvError> {
        let mut cmd = format!("i\n{class}\n");
        push_args(&mut cmd, args);
        self.send(&cmd, class)
    }

    /// `target.method(args…)`; `target` is an object id, or `z:` and a class name for a
    /// static method.
    pub(crate) fn call(
        &mut self,
        target: &str,
        method: &str,
        args: &[Arg<'_>],
    ) -> Result<Value, EnvError> {
        let mut cmd = format!("c\n{target}\n{method}\n");
        push_args(&mut cmd, args);
        self.send(&cmd, method)
    }

    /// Lets the gateway forget the object `id`, so the JVM can collect it.
    pub(crate) fn release(&mut self, id: &str) -> Result<(), EnvError> {
        self.send(&format!("m\nd\n{id}\ne\n"), "release").map(|_| ())
    }

    /// The elements of a returned `java.util.List` of strings, in one round trip:
    /// `String.join("\n", list)` on the Java side, then the reference is released.
    pub(crate) fn string_list(&mut self, list: Value, what: &str) -> Result<Vec<String>, EnvError> {
        let id = match list {
            Value::Ref(id) => id,
            other => return Err(unexpected(what, "a list", &other)),
        };
        let joined = self.call("z:java.lang.String", "join", &[Arg::Str("\n"), Arg::Ref(&id)]);
        let released = self.release(&id);
        let joined = joined?;
        released?;
        match joined {
            Value::Str(s) if s.is_empty() => Ok(Vec::new()),
            Value::Str(s) => Ok(s.split('\n').map(str::to_string).collect()),
            other => Err(unexpected(what, "a string", &other)),
        }
    }

    fn send(&mut self, cmd: &str, what: &str) -> Result<Value, EnvError> {
        let io = |e: std::io::Error| EnvError::Backend(format!("py4j `{what}`: {e}"));
        self.writer.write_all(cmd.as_bytes()).map_err(io)?;
        self.writer.flush().map_err(io)?;
        self.line.clear();
        let n = self.reader.read_line(&mut self.line).map_err(io)?;
        if n == 0 {
            return Err(EnvError::Backend(format!("py4j `{what}`: the JVM closed the connection")));
        }
        parse_answer(self.line.trim_end_matches(['\n', '\r']))
            .map_err(|m| EnvError::Backend(format!("py4j `{what}`: {m}")))
    }
}

fn push_args(cmd: &mut String, args: &[Arg<'_>]) {
    for a in args {
        match a {
            Arg::Str(s) => {
                cmd.push('s');
                cmd.push_str(&escape(s));
            }
            Arg::Int(i) => cmd.push_str(&format!("i{i}")),
            Arg::Bool(b) => cmd.push_str(if *b { "btrue" } else { "bfalse" }),
            Arg::Ref(id) => {
                cmd.push('r');
                cmd.push_str(id);
            }
        }
        cmd.push('\n');
    }
    cmd.push_str("e\n");
}

fn unexpected(what: &str, want: &str, got: &Value) -> EnvError {
    EnvError::Backend(format!("py4j `{what}`: expected {want}, got {got:?}"))
}

/// Escapes a string for one protocol line.
pub(crate) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
    out
}

/// Inverse of [`escape`]; an unknown escape keeps its character.
pub(crate) fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

/// Parses one answer line (without its newline).
pub(crate) fn parse_answer(line: &str) -> Result<Value, String> {
    let body = line.strip_prefix('!').unwrap_or(line);
    let mut chars = body.chars();
    match chars.next() {
        Some('y') => {}
        Some('x') | Some('z') => {
            let msg = body[1..].strip_prefix('s').unwrap_or(&body[1..]);
            let msg = unescape(msg);
            let first = msg.lines().next().unwrap_or("").to_string();
            return Err(format!("Java raised: {first}"));
        }
        _ => return Err(format!("malformed answer `{}`", truncate(line))),
    }
    let tag = chars.next().ok_or_else(|| format!("answer `{}` has no type", truncate(line)))?;
    let rest = chars.as_str();
    let bad = |kind: &str| format!("answer `{}` is not a valid {kind}", truncate(line));
    Ok(match tag {
        'v' | 'n' => Value::Nothing,
        's' => Value::Str(unescape(rest)),
        'i' | 'L' => Value::Int(rest.parse().map_err(|_| bad("integer"))?),
        'd' => Value::Double(rest.parse().map_err(|_| bad("double"))?),
        'b' => Value::Bool(match rest {
            "true" => true,
            "false" => false,
            _ => return Err(bad("boolean")),
        }),
        'r' | 'l' | 'a' | 'h' | 't' | 'g' => {
            if rest.is_empty() {
                return Err(bad("reference"));
            }
            Value::Ref(rest.to_string())
        }
        other => return Err(format!("answer `{}` has unknown type `{other}`", truncate(line))),
    })
}

fn truncate(s: &str) -> String {
    if s.chars().count() <= 120 {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(120).collect::<String>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn answers_parse() {
        assert_eq!(parse_answer("!yro0"), Ok(Value::Ref("o0".into())));
        assert_eq!(parse_answer("!ylo12"), Ok(Value::Ref("o12".into())));
        assert_eq!(parse_answer("!yd0.25"), Ok(Value::Double(0.25)));
        assert_eq!(parse_answer("!ybfalse"), Ok(Value::Bool(false)));
        assert_eq!(parse_answer("!yi115"), Ok(Value::Int(115)));
        assert_eq!(parse_answer("!yv"), Ok(Value::Nothing));
        assert_eq!(parse_answer("!ysa\\nb\tc"), Ok(Value::Str("a\nb\tc".into())));
        let err =
            parse_answer("!xspy4j.Py4JException: Method noSuch([]) does not exist\\n\tat py4j")
                .unwrap_err();
        assert_eq!(err, "Java raised: py4j.Py4JException: Method noSuch([]) does not exist");
        assert!(parse_answer("!yq1").is_err());
        assert!(parse_answer("!yiabc").is_err());
        assert!(parse_answer("").is_err());
    }

    #[test]
    fn command_lines() {
        let mut cmd = String::new();
        push_args(
            &mut cmd,
            &[Arg::Str("look\naround"), Arg::Int(3), Arg::Bool(true), Arg::Ref("o1")],
        );
        assert_eq!(cmd, "slook\\naround\ni3\nbtrue\nro1\ne\n");
    }

    proptest! {
        #[test]
        fn escape_round_trips_and_stays_on_one_line(s in "\\PC*|[\\\\\n\r a-z]*") {
            let e = escape(&s);
            prop_assert!(!e.contains('\n') && !e.contains('\r'));
            prop_assert_eq!(unescape(&e), s);
        }

        #[test]
        fn parse_never_panics(s in "\\PC*") {
            let _ = parse_answer(&s);
        }
    }
}
