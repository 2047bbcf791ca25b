-- fork mode: the same small body rawspawn writes to its child's stdin.
wrk.method = "POST"
wrk.body = "hello world\n"
wrk.headers["Content-Type"] = "text/plain"
