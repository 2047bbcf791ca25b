"use strict";
// A Node.js function: OpenFaaS node's shape.
//
// event.body is the request body (JSON parsed, text as a string), with
// event.headers, .method, .query and .path. Return the answer (an object is
// sent as JSON), or use context.status(code).headers({...}).succeed(value).
// Add dependencies to package.json.

module.exports = async (event, context) => {
  const name = typeof event.body === "string" && event.body.trim() ? event.body.trim() : "world";
  return context
    .status(200)
    .headers({ "Content-Type": "text/plain; charset=utf-8" })
    .succeed(`Hello, ${name}!\n`);
};
