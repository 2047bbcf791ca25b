#!/usr/bin/env node
// faas warm runner for Node.js handlers.
//
// One long-lived process per replica: the watchdog (mode=http) starts it
// and proxies every call to it over keep-alive connections. The handler is
// loaded once, at start. Node's standard library only (no express), so it
// runs on a bare Debian nodejs.
//
// Handler shapes (in the function folder; FAAS_HANDLER_SHAPE=openfaas|tinyfaas
// names one outright):
//
//   handler.js   module.exports = async (event, context) => ...
//                OpenFaaS node: event.body (parsed JSON, text or a Buffer),
//                .headers, .method, .query, .path; context.status(code),
//                .headers({...}), .succeed(value), .fail(error); or just
//                return the value
//   index.js (or package.json's main)
//                module.exports = (req, res) => res.send(...)
//                tinyFaaS: req.body (text), req.headers; res.send(value)
//
// Each answer carries the CPU time the process used during the call
// (X-Cpu-User-Seconds, X-Cpu-System-Seconds: exact when calls do not
// overlap), the process's peak memory (X-Max-Rss-Bytes) and X-Cold-Start on
// the first call this process serves.
//
// `node runner.js --check` loads the handler, prints its shape and exits:
// the build runs it, so a missing handler fails the build, not the first call.

"use strict";

const http = require("http");
const fs = require("fs");
const path = require("path");

const ROOT = __dirname;
const FUNCTION_DIR = path.join(ROOT, "function");

function envBytes(name, fallback) {
  const text = (process.env[name] || "").trim().toLowerCase();
  if (!text) return fallback;
  const units = [["gib", 1024 ** 3], ["mib", 1024 ** 2], ["kib", 1024], ["gb", 1e9], ["mb", 1e6], ["kb", 1e3]];
  for (const [suffix, factor] of units) {
    if (text.endsWith(suffix)) return Math.floor(parseFloat(text.slice(0, -suffix.length)) * factor);
  }
  return parseInt(text, 10);
}

const MAX_BODY_BYTES = envBytes("max_body_bytes", 0);

class HandlerError extends Error {}

function findHandler() {
  if (!fs.existsSync(FUNCTION_DIR)) {
    throw new HandlerError("there is no function folder beside the runner");
  }
  const named = (process.env.FAAS_HANDLER_SHAPE || "").trim();
  const hasHandlerJs = fs.existsSync(path.join(FUNCTION_DIR, "handler.js"));
  const shape = named || (hasHandlerJs ? "openfaas" : "tinyfaas");
  if (shape !== "openfaas" && shape !== "tinyfaas") {
    throw new HandlerError(`FAAS_HANDLER_SHAPE is ${named}: use openfaas or tinyfaas`);
  }
  const where = shape === "openfaas" ? path.join(FUNCTION_DIR, "handler.js") : FUNCTION_DIR;
  let exported;
  try {
    exported = require(where);
  } catch (e) {
    if (e.code === "MODULE_NOT_FOUND" && String(e.message).includes(where)) {
      const files = fs.readdirSync(FUNCTION_DIR).join(", ") || "nothing";
      throw new HandlerError(
        "no handler found: write handler.js exporting async (event, context), or index.js " +
          `exporting (req, res) (the function folder has ${files})`,
      );
    }
    throw e;
  }
  const handler = typeof exported === "function" ? exported : exported && exported.handler;
  if (typeof handler !== "function") {
    throw new HandlerError(`${path.relative(ROOT, where) || "function"} does not export a function`);
  }
  return { shape, handler, where: path.relative(ROOT, where) || "function" };
}

// OpenFaaS's body parsing: JSON parsed, text as a string, forms as an
// object, anything else as a Buffer.
function parseBody(raw, contentType) {
  const type = (contentType || "text/plain").split(";")[0].trim().toLowerCase();
  if (type === "application/json" || type.endsWith("+json")) {
    if (raw.length === 0) return {};
    return JSON.parse(raw.toString("utf8"));
  }
  if (type.startsWith("text/")) return raw.toString("utf8");
  if (type === "application/x-www-form-urlencoded") {
    return Object.fromEntries(new URLSearchParams(raw.toString("utf8")));
  }
  return raw;
}

function toBody(value, headers) {
  if (value === undefined || value === null) return Buffer.alloc(0);
  if (Buffer.isBuffer(value)) return value;
  if (typeof value === "object") {
    if (!Object.keys(headers).some((h) => h.toLowerCase() === "content-type")) {
      headers["Content-Type"] = "application/json";
    }
    return Buffer.from(JSON.stringify(value));
  }
  return Buffer.from(String(value));
}

class Context {
  constructor(done) {
    this.statusCode = 200;
    this.headerValues = {};
    this.done = done;
  }
  status(code) {
    if (code === undefined) return this.statusCode;
    this.statusCode = code;
    return this;
  }
  headers(values) {
    if (values === undefined) return this.headerValues;
    this.headerValues = values;
    return this;
  }
  succeed(value) {
    this.done(null, value);
  }
  fail(error) {
    if (this.statusCode === 200) this.statusCode = 500;
    this.done(error);
  }
}

function oneLine(text) {
  const line = String(text).split(/\s+/).join(" ").trim();
  return line.length > 300 ? line.slice(0, 297) + "..." : line;
}

// Calls the handler; `reply(status, headers, body)` exactly once.
function invoke(fn, req, raw, reply) {
  let answered = false;
  const once = (status, headers, value) => {
    if (answered) return;
    answered = true;
    reply(status, headers, value);
  };
  const failed = (error) => {
    console.error(error);
    const what = error && error.message !== undefined ? error.message : error;
    once(500, { "Content-Type": "text/plain" }, `the handler failed: ${oneLine(what)}\n`);
  };
  const url = new URL(req.url, "http://function");
  if (fn.shape === "tinyfaas") {
    const res = {
      code: 200,
      status(code) {
        res.code = code;
        return res;
      },
      send: (value) => once(res.code, {}, value),
    };
    const request = { body: raw.toString("utf8"), headers: req.headers, method: req.method, path: url.pathname };
    try {
      Promise.resolve(fn.handler(request, res)).catch(failed);
    } catch (e) {
      failed(e);
    }
    return;
  }
  let body;
  try {
    body = parseBody(raw, req.headers["content-type"]);
  } catch (e) {
    once(400, { "Content-Type": "text/plain" }, `the body is not valid JSON: ${oneLine(e.message)}\n`);
    return;
  }
  const event = {
    body,
    headers: req.headers,
    method: req.method,
    query: Object.fromEntries(url.searchParams),
    path: url.pathname,
  };
  const context = new Context((error, value) => {
    if (error) {
      console.error(error);
      once(context.statusCode, context.headerValues, error.toString ? error.toString() : error);
    } else {
      once(context.statusCode, context.headerValues, value);
    }
  });
  try {
    Promise.resolve(fn.handler(event, context, (error, value) => context.done(error, value)))
      // Like OpenFaaS: what it returns is the answer unless it already
      // called succeed or fail.
      .then((value) => context.succeed(value))
      .catch(failed);
  } catch (e) {
    failed(e);
  }
}

function listenPort() {
  if (process.env.PORT) return { host: "127.0.0.1", port: Number(process.env.PORT) };
  const url = new URL(process.env.upstream_url || "http://127.0.0.1:8082");
  return { host: url.hostname || "127.0.0.1", port: Number(url.port || 8082) };
}

function main() {
  let fn;
  try {
    fn = findHandler();
  } catch (e) {
    if (!(e instanceof HandlerError)) throw e;
    console.error(`runner: ${e.message}`);
    process.exit(2);
  }
  if (process.argv.includes("--check")) {
    console.log(`handler ${fn.where} (${fn.shape})`);
    return;
  }
  process.chdir(FUNCTION_DIR);
  let cold = true;
  const server = http.createServer((req, res) => {
    const chunks = [];
    let size = 0;
    let refused = false;
    req.on("data", (chunk) => {
      size += chunk.length;
      if (MAX_BODY_BYTES && size > MAX_BODY_BYTES && !refused) {
        refused = true;
        res.writeHead(413, { "Content-Type": "text/plain", Connection: "close" });
        res.end("request body too large\n");
        req.destroy();
      }
      if (!refused) chunks.push(chunk);
    });
    req.on("end", () => {
      if (refused) return;
      const wasCold = cold;
      cold = false;
      const cpu = process.cpuUsage();
      invoke(fn, req, Buffer.concat(chunks), (status, headers, value) => {
        const used = process.cpuUsage(cpu);
        const out = {};
        for (const [name, v] of Object.entries(headers || {})) out[name] = String(v);
        const body = toBody(value, out);
        out["X-Cpu-User-Seconds"] = (used.user / 1e6).toFixed(6);
        out["X-Cpu-System-Seconds"] = (used.system / 1e6).toFixed(6);
        out["X-Max-Rss-Bytes"] = String(process.resourceUsage().maxRSS * 1024);
        if (wasCold) out["X-Cold-Start"] = "true";
        out["Content-Length"] = String(body.length);
        try {
          res.writeHead(Number(status) || 200, out);
          res.end(body);
        } catch (e) {
          // A header the handler set that HTTP cannot carry.
          console.error(e);
          res.writeHead(500, { "Content-Type": "text/plain" });
          res.end(`the handler's answer cannot be sent: ${oneLine(e.message)}\n`);
        }
      });
    });
  });
  server.keepAliveTimeout = 0; // the watchdog's pool decides when to close
  server.headersTimeout = 0;
  server.requestTimeout = 0;
  const { host, port } = listenPort();
  server.listen(port, host, () => {
    console.error(`runner: serving ${fn.where} (${fn.shape}) on ${server.address().port}`);
  });
}

main();
