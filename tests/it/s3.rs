//! A real S3-compatible server on loopback for the tests: moto's server
//! (PyPI `moto[server]`), started once per test run, stopped when the test
//! process exits.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::util;

/// The Python modules moto's server needs. A test that calls [`moto`] or
/// [`bucket`] first returns when `util::python_with(s3::MOTO)` is None.
pub const MOTO: &[&str] = &["moto.server"];

pub struct Moto {
    pub port: u16,
    /// The server exits by itself when this test process ends.
    _server: std::sync::Mutex<std::process::Child>,
}

/// moto checks a conditional PUT's precondition (`If-None-Match: *`) and
/// stores the object in two steps, with no lock between them, on a threaded
/// server: two concurrent creates of one key can both succeed. S3 (and every
/// store must-ds supports) makes the create atomic, which commits rely on;
/// the test server serializes PUTs so that it keeps that promise.
const SERVER: &str = r#"
import os, sys, time, threading
from moto.server import ThreadedMotoServer
from moto.s3.responses import S3Response
_lock = threading.Lock()
_put = S3Response._key_response_put
def _atomic_put(self, *args, **kwargs):
    with _lock:
        return _put(self, *args, **kwargs)
S3Response._key_response_put = _atomic_put
server = ThreadedMotoServer(ip_address="127.0.0.1", port=int(sys.argv[1]), verbose=False)
server.start()
parent = os.getppid()
while os.getppid() == parent:
    time.sleep(0.3)
server.stop()
"#;

fn request(port: u16, head: &str) -> std::io::Result<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(head.as_bytes())?;
    let mut buf = [0u8; 512];
    let n = s.read(&mut buf)?;
    Ok(String::from_utf8_lossy(&buf[..n]).to_string())
}

/// Starts the server (once) and points the AWS environment variables at it.
pub fn moto() -> &'static Moto {
    static SERVER_ONCE: OnceLock<Moto> = OnceLock::new();
    SERVER_ONCE.get_or_init(|| {
        let python = util::python_with(MOTO)
            .expect("a test that uses moto checks util::python_with(s3::MOTO) first");
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let server = std::process::Command::new(python)
            .args(["-c", SERVER, &port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("python3 with moto[server] (tools/requirements.txt)");
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "moto server did not start on port {port}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        for (k, v) in [
            ("AWS_ENDPOINT", format!("http://127.0.0.1:{port}")),
            ("AWS_ALLOW_HTTP", "true".into()),
            ("AWS_ACCESS_KEY_ID", "testing".into()),
            ("AWS_SECRET_ACCESS_KEY", "testing".into()),
            ("AWS_REGION", "us-east-1".into()),
        ] {
            std::env::set_var(k, v);
        }
        Moto {
            port,
            _server: std::sync::Mutex::new(server),
        }
    })
}

/// Creates `bucket` on the server.
pub fn bucket(name: &str) -> String {
    let m = moto();
    let head = format!("PUT /{name} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", m.port);
    let reply = request(m.port, &head).unwrap();
    assert!(
        reply.starts_with("HTTP/1.1 200") || reply.contains("BucketAlreadyOwnedByYou"),
        "{reply}"
    );
    format!("s3://{name}")
}
