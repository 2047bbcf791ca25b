-- http mode: a small Markdown document for the markdown sample function.
wrk.method = "POST"
wrk.body = "# Hello\n\nSome *text*.\n"
wrk.headers["Content-Type"] = "text/markdown"
