//! A small HTTP/1.1 server for `memspy serve`: `GET` (and `HEAD`) of the paths a handler knows, one
//! response per connection (`Connection: close`), each connection on a thread of its own (at most
//! [`MAX_CONNECTIONS`] at once), requests bounded in size and time. The accept loop polls a stop flag, so
//! [`Server::stop`] returns promptly.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Connections served at once; beyond it a connection gets `503` at once.
pub const MAX_CONNECTIONS: usize = 16;
/// The longest request head (request line and headers) read.
const MAX_HEAD: usize = 16 << 10;
/// How long a client may take to send its request, or to take the response.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// After a response: how long, and how many bytes, a client's unread request is read and dropped.
const LINGER: Duration = Duration::from_secs(1);
const MAX_DRAIN: usize = 64 << 10;
/// How often the accept loop looks at the stop flag.
const POLL: Duration = Duration::from_millis(25);

/// What a handler answers for a path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
}

impl Response {
    pub fn ok(content_type: &'static str, body: String) -> Response {
        Response { status: 200, content_type, body }
    }

    fn text(status: u16, body: &str) -> Response {
        Response { status, content_type: "text/plain; charset=utf-8", body: format!("{body}\n") }
    }
}

/// Answers a `GET` of a path (without its query); `None`: 404.
pub type Handler = dyn Fn(&str) -> Option<Response> + Send + Sync;

/// The running server: its accept loop on a thread.
pub struct Server {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// Serves `listener` with `handler` until [`Server::stop`] (or drop).
    pub fn start(listener: TcpListener, handler: Arc<Handler>) -> io::Result<Server> {
        let addr = listener.local_addr()?;
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("memspy-http".into())
            .spawn(move || accept_loop(listener, handler, &flag))?;
        Ok(Server { addr, stop, thread: Some(thread) })
    }

    /// The address it listens on (the port chosen when asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting and waits for the accept loop (connections in progress finish on their own).
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.halt();
    }
}

fn accept_loop(listener: TcpListener, handler: Arc<Handler>, stop: &AtomicBool) {
    let active = Arc::new(AtomicUsize::new(0));
    while !stop.load(Ordering::SeqCst) {
        let stream = match listener.accept() {
            Ok((s, _)) => s,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                std::thread::sleep(POLL);
                continue;
            }
            Err(e) => {
                // Out of file descriptors and the like: not fatal, try again shortly.
                log::warn!("accepting a connection: {e}");
                std::thread::sleep(POLL);
                continue;
            }
        };
        let _ = stream.set_nonblocking(false);
        let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
        let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
        if active.load(Ordering::SeqCst) >= MAX_CONNECTIONS {
            let _ = respond(stream, &Response::text(503, "too many connections"), false);
            continue;
        }
        active.fetch_add(1, Ordering::SeqCst);
        let (handler, count) = (Arc::clone(&handler), Arc::clone(&active));
        let spawned = std::thread::Builder::new().name("memspy-http-conn".into()).spawn(move || {
            if let Err(e) = serve_connection(stream, &*handler) {
                log::debug!("HTTP connection: {e}");
            }
            count.fetch_sub(1, Ordering::SeqCst);
        });
        if spawned.is_err() {
            active.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// A request as far as this server needs it.
#[derive(Debug, PartialEq, Eq)]
struct Request {
    method: String,
    path: String,
}

/// Parses a request head; `Err` is the response to send instead.
fn parse_head(head: &[u8]) -> Result<Request, Response> {
    let text = std::str::from_utf8(head).map_err(|_| Response::text(400, "bad request"))?;
    let line = text.split("\r\n").next().unwrap_or("");
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Response::text(400, "bad request"));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(Response::text(505, "HTTP version not supported"));
    }
    let path = target.split(['?', '#']).next().unwrap_or("");
    Ok(Request { method: method.to_string(), path: path.to_string() })
}

fn serve_connection(mut stream: TcpStream, handler: &Handler) -> io::Result<()> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 2048];
    let end = loop {
        let found = head.windows(4).position(|w| w == b"\r\n\r\n");
        if found.unwrap_or(head.len()) > MAX_HEAD {
            return respond(stream, &Response::text(431, "request header fields too large"), false);
        }
        if let Some(i) = found {
            break i;
        }
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Ok(()); // closed before a whole request
        }
        head.extend_from_slice(&buf[..n]);
    };
    let req = match parse_head(&head[..end]) {
        Ok(r) => r,
        Err(resp) => return respond(stream, &resp, false),
    };
    let head_only = req.method == "HEAD";
    let resp = if req.method != "GET" && !head_only {
        Response::text(405, "only GET and HEAD")
    } else {
        handler(&req.path).unwrap_or_else(|| Response::text(404, "not found: try /metrics"))
    };
    respond(stream, &resp, head_only)
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}

fn respond(mut stream: TcpStream, r: &Response, head_only: bool) -> io::Result<()> {
    let mut out = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
        r.status,
        reason(r.status),
        r.content_type,
        r.body.len()
    );
    if r.status == 405 {
        out.push_str("Allow: GET, HEAD\r\n");
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    if !head_only {
        bytes.extend_from_slice(r.body.as_bytes());
    }
    stream.write_all(&bytes)?;
    stream.flush()?;
    let _ = stream.shutdown(Shutdown::Write);
    // Read what the client still sends until it closes (bounded): closing with unread bytes would reset
    // the connection, and the client could lose the response.
    let _ = stream.set_read_timeout(Some(LINGER));
    let mut sink = [0u8; 4096];
    let mut drained = 0;
    while drained < MAX_DRAIN {
        match stream.read(&mut sink) {
            Ok(0) | Err(_) => break,
            Ok(n) => drained += n,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(addr: SocketAddr, request: &str) -> String {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(request.as_bytes()).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    #[test]
    fn parses_request_lines() {
        assert_eq!(
            parse_head(b"GET /metrics?x=1 HTTP/1.1\r\nHost: a"),
            Ok(Request { method: "GET".into(), path: "/metrics".into() })
        );
        assert_eq!(parse_head(b"GET /metrics").unwrap_err().status, 400);
        assert_eq!(parse_head(b"GET / HTTP/2.0").unwrap_err().status, 505);
        assert_eq!(parse_head(b"\xff\xfe").unwrap_err().status, 400);
    }

    #[test]
    fn serves_paths_and_refuses_the_rest() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let handler: Arc<Handler> =
            Arc::new(|path: &str| (path == "/metrics").then(|| Response::ok("text/plain", "a 1\n".into())));
        let server = Server::start(listener, handler).unwrap();
        let addr = server.local_addr();
        let ok = get(addr, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(ok.contains("Content-Length: 4\r\n") && ok.ends_with("\r\n\r\na 1\n"), "{ok}");
        let head = get(addr, "HEAD /metrics HTTP/1.1\r\n\r\n");
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n") && head.ends_with("\r\n\r\n"), "{head}");
        assert!(get(addr, "GET /nope HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404 "));
        let post = get(addr, "POST /metrics HTTP/1.1\r\n\r\n");
        assert!(post.starts_with("HTTP/1.1 405 ") && post.contains("Allow: GET, HEAD\r\n"), "{post}");
        assert!(get(addr, "garbage\r\n\r\n").starts_with("HTTP/1.1 400 "));
        let huge = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(MAX_HEAD + 10));
        assert!(get(addr, &huge).starts_with("HTTP/1.1 431 "));
        server.stop();
        assert!(TcpStream::connect(addr).is_err(), "still listening after stop");
    }
}
