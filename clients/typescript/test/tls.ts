/**
 * TLS for the tests without Envoy: a TLS-terminating TCP proxy (ALPN h2) in
 * front of the server's plaintext gRPC port. The HTTP/2 frames pass through
 * unchanged, so the client speaks real gRPC over TLS. It demands a client
 * certificate (mutual TLS). Certificates are made with the openssl command
 * line (Node has no certificate generator), self-signed, for 127.0.0.1.
 */
import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { connect, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createServer } from "node:tls";
import { promisify } from "node:util";

export interface TlsProxy {
  /** https://127.0.0.1:PORT */
  baseUrl: string;
  /** The server's self-signed certificate: the CA a client must trust. */
  serverCert: string;
  clientCert: string;
  clientKey: string;
  close(): Promise<void>;
}

async function selfSigned(dir: string, name: string, extensions: string[]): Promise<{ cert: string; key: string }> {
  const key = join(dir, `${name}.key`);
  const cert = join(dir, `${name}.crt`);
  await promisify(execFile)("openssl", [
    "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
    "-keyout", key, "-out", cert, "-days", "2", "-subj", `/CN=${name}`,
    ...extensions.flatMap((extension) => ["-addext", extension]),
  ]);
  return { cert: await readFile(cert, "utf8"), key: await readFile(key, "utf8") };
}

/** Starts the proxy on a free port of 127.0.0.1, forwarding to 127.0.0.1:`upstreamPort`. */
export async function startTlsProxy(upstreamPort: number): Promise<TlsProxy> {
  const dir = await mkdtemp(join(tmpdir(), "gliner-ts-tls-"));
  try {
    const server = await selfSigned(dir, "gliner-test-server", ["subjectAltName=IP:127.0.0.1,DNS:localhost"]);
    const client = await selfSigned(dir, "gliner-test-client", ["extendedKeyUsage=clientAuth"]);
    const sockets = new Set<Socket>();
    const proxy = createServer(
      { key: server.key, cert: server.cert, ca: client.cert, requestCert: true, rejectUnauthorized: true, ALPNProtocols: ["h2"] },
      (secure) => {
        const upstream = connect(upstreamPort, "127.0.0.1");
        for (const socket of [secure, upstream]) {
          sockets.add(socket);
          socket.once("close", () => sockets.delete(socket));
        }
        secure.on("error", () => upstream.destroy());
        upstream.on("error", () => secure.destroy());
        secure.once("close", () => upstream.destroy());
        upstream.once("close", () => secure.destroy());
        secure.pipe(upstream).pipe(secure);
      },
    );
    proxy.on("tlsClientError", () => {
      // a refused handshake: what the negative tests provoke
    });
    await new Promise<void>((done) => proxy.listen(0, "127.0.0.1", done));
    const address = proxy.address();
    const port = typeof address === "object" && address ? address.port : 0;
    return {
      baseUrl: `https://127.0.0.1:${port}`,
      serverCert: server.cert,
      clientCert: client.cert,
      clientKey: client.key,
      close: async () => {
        for (const socket of sockets) {
          socket.destroy();
        }
        await new Promise<void>((done) => proxy.close(() => done()));
        await rm(dir, { recursive: true, force: true });
      },
    };
  } catch (error) {
    await rm(dir, { recursive: true, force: true });
    throw error;
  }
}
