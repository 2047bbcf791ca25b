//! Function sources that tests in more than one crate run.

/// An `http`-mode function (Python, on `$PORT`) that asks for credentials
/// the way the gateway does (401 with `X-Faas-Auth`), and appends each
/// `Authorization` it is sent to `seen.txt`: the tests prove no function
/// ever receives the gateway's credentials.
pub const DENY_PY: &str = r#"
import http.server, os
class Deny(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length") or 0))
        with open("seen.txt", "a") as f:
            f.write(repr(self.headers.get("authorization")) + "\n")
        self.send_response(401)
        self.send_header("WWW-Authenticate", 'Basic realm="faas"')
        self.send_header("X-Faas-Auth", "basic")
        self.send_header("Content-Length", "6")
        self.end_headers()
        self.wfile.write(b"denied")
    def log_message(self, *args):
        pass
http.server.HTTPServer(("127.0.0.1", int(os.environ["PORT"])), Deny).serve_forever()
"#;
