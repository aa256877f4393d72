/**
 * A live gliner2-serve for the tests: the tiny checkpoint (built by
 * `python -m gliner_server.random_checkpoint DIR --seed 1`), served by
 * `gliner2-serve --no-envoy` on a free port of 127.0.0.1, as
 * clients/conformance/generate.py runs it.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

/** The repository's root: the tests run from clients/typescript/dist-test/test/. */
export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../../../..");
/** The Python environment with gliner2-serve: $GLINER_VENV (as tests/test_polyglot_clients.py sets it), else the repository's .venv. */
const VENV = process.env.GLINER_VENV ?? join(REPO_ROOT, ".venv");
const READY = "gliner2-serve: SERVING ";
const START_TIMEOUT_MS = 120_000;

export interface LiveServer {
  port: number;
  /** http://127.0.0.1:PORT */
  baseUrl: string;
  apiKey: string;
  /** What the server printed so far (for failure messages). */
  output(): string;
  /** SIGTERM, wait for the exit, remove the scratch folder. */
  stop(): Promise<void>;
}

/** A free TCP port on 127.0.0.1 (bind port 0, read it, release it). */
export async function freePort(): Promise<number> {
  return await new Promise((resolvePort, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address ? address.port : 0;
      server.close(() => resolvePort(port));
    });
  });
}

async function run(command: string, args: string[]): Promise<void> {
  const child = spawn(command, args, { stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  child.stdout.on("data", (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on("data", (chunk: Buffer) => (output += chunk.toString()));
  const code = await new Promise<number | null>((done, fail) => {
    child.once("error", fail);
    child.once("exit", done);
  });
  if (code !== 0) {
    throw new Error(`${command} ${args.join(" ")} exited with ${code}:\n${output.slice(-3000)}`);
  }
}

function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) {
    return Promise.resolve();
  }
  return new Promise((done) => child.once("exit", () => done()));
}

/** Builds the tiny checkpoint and starts gliner2-serve on it with `apiKey`; resolves once it serves. */
export async function startServer(apiKey: string): Promise<LiveServer> {
  const scratch = await mkdtemp(join(tmpdir(), "gliner-ts-client-"));
  const checkpoint = join(scratch, "tiny-span");
  await run(join(VENV, "bin", "python"), ["-m", "gliner_server.random_checkpoint", checkpoint, "--seed", "1"]);
  const port = await freePort();
  const runDir = join(scratch, "run");
  const child = spawn(
    join(VENV, "bin", "gliner2-serve"),
    [
      "--model", checkpoint, "--no-envoy", "--grpc-host", "127.0.0.1", "--grpc-port", String(port),
      "--api-key", apiKey, "--cache-dir", join(scratch, "cache"), "--run-dir", runDir,
      "--data-dir", join(runDir, "data"),
      // no load balancer to drain: stop at once
      "--drain-seconds", "0",
    ],
    { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, PYTHONUNBUFFERED: "1" } },
  );
  // Never outlive the test process, whatever happens to it.
  const killOnExit = () => child.kill("SIGKILL");
  process.once("exit", killOnExit);
  let output = "";
  let stdoutLines = "";
  const ready = new Promise<void>((done, fail) => {
    const timer = setTimeout(() => fail(new Error(`gliner2-serve not serving after ${START_TIMEOUT_MS} ms`)), START_TIMEOUT_MS);
    child.stdout!.on("data", (chunk: Buffer) => {
      output += chunk.toString();
      stdoutLines += chunk.toString();
      if (stdoutLines.split("\n").some((line) => line.startsWith(READY))) {
        clearTimeout(timer);
        done();
      }
    });
    child.once("error", (error) => {
      clearTimeout(timer);
      fail(error);
    });
    child.once("exit", (code, signal) => {
      clearTimeout(timer);
      fail(new Error(`gliner2-serve exited (${code ?? signal}) before serving`));
    });
  });
  child.stderr!.on("data", (chunk: Buffer) => (output += chunk.toString()));
  const stop = async () => {
    child.kill("SIGTERM");
    const killer = setTimeout(() => child.kill("SIGKILL"), 15_000);
    await exited(child);
    clearTimeout(killer);
    process.removeListener("exit", killOnExit);
    await rm(scratch, { recursive: true, force: true });
  };
  try {
    await ready;
  } catch (error) {
    await stop();
    throw new Error(`${(error as Error).message}\n${output.slice(-4000)}`);
  }
  return { port, baseUrl: `http://127.0.0.1:${port}`, apiKey, output: () => output, stop };
}
