// The E2E harness: free ports, the SPA built for them, `make run`'s stack (infra/stack.sh +
// infra/run-local.sh with DEMO=1, no web) on those ports, `vite preview` of the build, and
// Debian's Chromium driven by playwright-core. Everything started here is stopped here.
import { spawn } from "node:child_process";
import { createServer } from "node:net";
import { readFileSync, mkdirSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { createRequire } from "node:module";

export const webDir = resolve(dirname(fileURLToPath(import.meta.url)), "..");
export const repoDir = resolve(webDir, "..");
export const outDir = join(webDir, "test-results");
const require = createRequire(import.meta.url);

export function freePort() {
  return new Promise((res, rej) => {
    const s = createServer();
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => res(port));
    });
    s.on("error", rej);
  });
}

const children = [];

/** Starts a process in its own process group (so stopping it stops its children too). */
export function start(name, cmd, args, opts = {}) {
  const logPath = join(outDir, `${name}.log`);
  const child = spawn(cmd, args, { ...opts, detached: true, stdio: ["ignore", "pipe", "pipe"] });
  const chunks = [];
  const onData = (d) => {
    chunks.push(d);
    writeFileSync(logPath, Buffer.concat(chunks));
  };
  child.stdout.on("data", onData);
  child.stderr.on("data", onData);
  children.push(child);
  // Tools colour their output when CI is set (picocolors checks `CI`): match on plain text.
  child.output = () => Buffer.concat(chunks).toString().replace(/\x1b\[[0-9;]*m/g, "");
  return child;
}

export function stopAll() {
  for (const c of children.reverse()) {
    if (c.exitCode === null) {
      try {
        process.kill(-c.pid, "SIGTERM");
      } catch {
        /* gone */
      }
    }
  }
}

export function run(cmd, args, opts = {}) {
  return new Promise((res, rej) => {
    const c = spawn(cmd, args, { stdio: "inherit", ...opts });
    c.on("exit", (code) => (code === 0 ? res() : rej(new Error(`${cmd} ${args.join(" ")} exited ${code}`))));
  });
}

/** Resolves when `child`'s output matches `re`; rejects if it exits first or after `ms`. */
export function waitForOutput(child, re, ms, what) {
  return new Promise((res, rej) => {
    const timer = setTimeout(() => rej(new Error(`${what}: not ready after ${ms / 1000} s\n${child.output().slice(-3000)}`)), ms);
    const check = () => {
      if (re.test(child.output())) {
        clearTimeout(timer);
        res();
      }
    };
    child.stdout.on("data", check);
    child.stderr.on("data", check);
    child.on("exit", (code) => {
      clearTimeout(timer);
      rej(new Error(`${what} exited (${code}) before it was ready\n${child.output().slice(-3000)}`));
    });
    check();
  });
}

export function axeSource() {
  return readFileSync(require.resolve("axe-core/axe.min.js"), "utf8");
}

export function ensureOutDir() {
  mkdirSync(outDir, { recursive: true });
}
