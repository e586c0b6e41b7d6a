#!/usr/bin/env python3
"""Token endpoint load benchmark: the gateway (SQLite and PostgreSQL) and oidc-provider 8.8.1
under the same load in the same run, for the ratio.

The load is a partner's load test: client assertions signed by an independent signer (PyJWT,
pre-signed in bulk before the timed run, one fresh jti each), posted by wrk (-t2 -c16 by
default) on loopback. For each server it prints tokens/s, p50/p99 latency, the server's CPU
seconds during the run and its peak RSS, then the ratios to oidc-provider.

    cargo build --release --locked --bin federation-gateway
    tools/.venv/bin/python tools/bench/token_load.py                       # RS256, all servers
    tools/.venv/bin/python tools/bench/token_load.py --algs RS256,EdDSA,ES256 --duration 20

Needs: wrk (Debian package), Node with `npm ci --prefix tools`, PyJWT + cryptography (in
tools/requirements.txt), PostgreSQL at 127.0.0.1:5432 for the postgres row. Prints figures;
asserts nothing. Only loopback addresses are used.
"""

import argparse
import base64
import json
import multiprocessing
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
import uuid

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LUA = os.path.join(ROOT, "tools", "bench", "token_load.lua")
PEER = os.path.join(ROOT, "tools", "bench", "oidc_token_peer.mjs")
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_json(method, url, body=None, token=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=30) as response:
        text = response.read()
        return json.loads(text) if text else None


def wait_http(url, seconds=60):
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2).read()
            return
        except Exception:
            time.sleep(0.1)
    raise SystemExit(f"{url} did not answer within {seconds} s")


# --- keys and assertions -------------------------------------------------------------------

def new_key(alg):
    """A private key and its public JWK (kid "bench-<alg>")."""
    if alg == "RS256":
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    elif alg == "ES256":
        key = ec.generate_private_key(ec.SECP256R1())
        jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    elif alg == "EdDSA":
        key = ed25519.Ed25519PrivateKey.generate()
        jwk = json.loads(jwt.algorithms.OKPAlgorithm.to_jwk(key.public_key()))
    else:
        raise SystemExit(f"unknown algorithm {alg}")
    jwk.update({"kid": f"bench-{alg.lower()}", "alg": alg, "use": "sig"})
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    return pem, jwk


def _sign_chunk(args):
    pem, alg, kid, client, aud, count = args
    key = serialization.load_pem_private_key(pem, password=None)
    now = int(time.time())
    lines = []
    for _ in range(count):
        claims = {"iss": client, "sub": client, "aud": aud, "iat": now, "exp": now + 600,
                  "jti": str(uuid.uuid4())}
        assertion = jwt.encode(claims, key, algorithm=alg, headers={"kid": kid})
        lines.append("grant_type=client_credentials"
                     f"&client_assertion_type={urllib.parse.quote(ASSERTION_TYPE, safe='')}"
                     f"&client_assertion={assertion}")
    return lines


def sign_bodies(path, pem, alg, kid, client, aud, count, processes):
    """Writes `count` form bodies, one fresh assertion each, signed on `processes` cores."""
    chunk = max(1, count // (processes * 8))
    jobs = []
    left = count
    while left > 0:
        jobs.append((pem, alg, kid, client, aud, min(chunk, left)))
        left -= chunk
    with multiprocessing.Pool(processes) as pool, open(path, "w") as out:
        for lines in pool.imap_unordered(_sign_chunk, jobs):
            out.write("\n".join(lines) + "\n")


# --- measuring a server --------------------------------------------------------------------

def cpu_seconds(pid):
    """User + system CPU of `pid` and its threads so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def peak_rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def run_wrk(url, bodies, threads, connections, duration):
    env = dict(os.environ, BODIES=bodies, THREADS=str(threads))
    out = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--timeout", "10s",
         "-s", LUA, url],
        env=env, capture_output=True, text=True, check=True).stdout
    match = re.search(r"RESULT (.*)", out)
    if not match:
        raise SystemExit(f"wrk printed no result:\n{out}")
    return {k: int(v) for k, v in (pair.split("=") for pair in match.group(1).split())}


class Target:
    """A server under test: started, given a client per algorithm, measured, stopped."""

    name = ""
    process = None

    def pid(self):
        return self.process.pid

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()


class Gateway(Target):
    def __init__(self, binary, backend, work, keys):
        self.name = f"gateway on {'SQLite' if backend == 'sqlite' else 'PostgreSQL'}"
        self.backend = backend
        port = free_port()
        self.base = f"http://127.0.0.1:{port}"
        env = dict(os.environ)
        if backend == "sqlite":
            url = f"sqlite://{work}/gateway.db"
        else:
            self.database = f"gw_bench_{uuid.uuid4().hex[:12]}"
            subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-qc",
                            f"CREATE DATABASE {self.database}"], check=True)
            url = f"postgres://postgres@127.0.0.1:5432/{self.database}"
        env.update({
            "GATEWAY__SERVER__PORT": str(port),
            "GATEWAY__DATABASE__URL": url,
            "GATEWAY__DATABASE__MAX_CONNECTIONS": os.environ.get("BENCH_DB_CONNECTIONS", "16"),
            "GATEWAY__AUTH__KEY_ENCRYPTION_KEY": base64.b64encode(os.urandom(32)).decode(),
            "GATEWAY__LOG__FILTER": os.environ.get("BENCH_LOG_FILTER", "info"),
        })
        if os.environ.get("BENCH_SEQUENCER") == "off":
            env["GATEWAY__AUDIT__SEAL_INTERVAL_MS"] = "0"
        self.log = open(os.path.join(work, f"gateway-{backend}.log"), "w")
        self.process = subprocess.Popen([binary, "serve"], env=env, stdout=self.log,
                                        stderr=subprocess.STDOUT, cwd=work)
        try:
            wait_http(f"{self.base}/healthz")
        except SystemExit:
            self.log.flush()
            print(open(self.log.name).read()[-3000:], file=sys.stderr)
            raise
        self.token_endpoint = http_json(
            "GET", f"{self.base}/.well-known/oauth-authorization-server")["token_endpoint"]
        created = http_json("POST", f"{self.base}/v1/registrations", {
            "ods_code": "BENCH1", "name": "Bench Care", "category": "hospice",
            "exchange_version": "exchange_2019", "domains": ["bench.example.org"],
            "contacts": {"ig_lead": {"name": "A", "email": "a@bench.example.org"},
                         "technical": {"name": "B", "email": "b@bench.example.org"}},
            "business_need": "Benchmarking the token endpoint of the gateway."})
        self.client_id = created["id"]
        http_json("PUT", f"{self.base}/v1/organisations/{self.client_id}/jwks",
                  {"keys": [jwk for _, jwk in keys.values()]},
                  token=created["registration_access_token"])

    def stop(self):
        super().stop()
        if self.backend == "postgres":
            subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-qc",
                            f"DROP DATABASE IF EXISTS {self.database} WITH (FORCE)"], check=False)


class OidcProvider(Target):
    name = "oidc-provider 8.8.1"

    def __init__(self, work, keys):
        self.client_id = "bench-client"
        clients = [{"client_id": f"{self.client_id}-{alg.lower()}", "jwks": {"keys": [jwk]},
                    "alg": alg} for alg, (_, jwk) in keys.items()]
        path = os.path.join(work, "peer-clients.json")
        with open(path, "w") as f:
            json.dump(clients, f)
        self.log = open(os.path.join(work, "oidc-provider.log"), "w+")
        self.process = subprocess.Popen(["node", PEER], env=dict(os.environ, CLIENTS_FILE=path),
                                        stdout=subprocess.PIPE, stderr=self.log, text=True,
                                        cwd=os.path.join(ROOT, "tools"))
        first = json.loads(self.process.stdout.readline())
        self.token_endpoint = first["token_endpoint"]
        wait_http(first["issuer"] + "/.well-known/openid-configuration")

    def client_for(self, alg):
        return f"{self.client_id}-{alg.lower()}"


def client_for(target, alg):
    return target.client_for(alg) if isinstance(target, OidcProvider) else target.client_id


def measure(target, alg, keys, args, work):
    pem, jwk = keys[alg]
    client = client_for(target, alg)
    aud = target.token_endpoint
    # Warm-up (also sizes the timed run's supply of fresh assertions).
    warm = os.path.join(work, "warm.txt")
    sign_bodies(warm, pem, alg, jwk["kid"], client, aud, args.warmup_assertions, args.signers)
    probe = run_wrk(aud, warm, args.threads, args.connections, args.warmup)
    rate = probe["ok"] / args.warmup
    count = int(max(rate * 1.6, 5000) * args.duration) + 2000
    bodies = os.path.join(work, "bodies.txt")
    started = time.time()
    sign_bodies(bodies, pem, alg, jwk["kid"], client, aud, count, args.signers)
    signing = time.time() - started
    cpu_before = cpu_seconds(target.pid())
    perf = None
    if args.perf and isinstance(target, Gateway):
        out = os.path.join(args.perf, f"perf-{target.backend}-{alg}.data")
        perf = subprocess.Popen(["perf", "record", "-F", os.environ.get("BENCH_PERF_HZ", "499"), "--call-graph", os.environ.get("BENCH_PERF_CALLGRAPH", "dwarf,16384"), "-o", out, "-p",
                                 str(target.pid()), "--", "sleep", str(max(args.duration - 2, 1))],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    result = run_wrk(aud, bodies, args.threads, args.connections, args.duration)
    if perf:
        perf.wait()
    cpu = cpu_seconds(target.pid()) - cpu_before
    seconds = result["duration_us"] / 1e6
    row = {
        "server": target.name, "alg": alg, "tokens_per_s": result["ok"] / seconds,
        "refused": result["refused"], "wrapped": result["wrapped"],
        "p50_ms": result["p50_us"] / 1000, "p99_ms": result["p99_us"] / 1000,
        "cpu_s": cpu, "cpu_us_per_token": cpu / max(result["ok"], 1) * 1e6,
        "peak_rss_mb": peak_rss_mb(target.pid()), "signed": count, "signing_s": signing,
    }
    print(f"  {target.name:24} {alg:6} {row['tokens_per_s']:8.0f} tokens/s  "
          f"p50 {row['p50_ms']:6.2f} ms  p99 {row['p99_ms']:6.2f} ms  "
          f"CPU {cpu:5.1f} s ({row['cpu_us_per_token']:.0f} µs/token)  "
          f"peak RSS {row['peak_rss_mb']:.0f} MB  refused {result['refused']}"
          + ("  (ran out of fresh assertions: raise --duration's supply)" if result["wrapped"] else ""),
          flush=True)
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gateway", default=os.path.join(ROOT, "target", "release", "federation-gateway"))
    parser.add_argument("--servers", default="oidc-provider,sqlite,postgres")
    parser.add_argument("--algs", default="RS256", help="comma-separated: RS256,EdDSA,ES256")
    parser.add_argument("--duration", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--warmup-assertions", type=int, default=30000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--signers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--json", help="also write the rows to this file")
    parser.add_argument("--perf", help="record a perf profile of each gateway run into this folder")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is missing: apt-get install wrk")
    algs = args.algs.split(",")
    keys = {alg: new_key(alg) for alg in algs}
    rows = []
    with tempfile.TemporaryDirectory(prefix="gw-token-bench-") as work:
        print(f"wrk -t{args.threads} -c{args.connections} -d{args.duration}s on loopback, "
              f"assertions pre-signed by PyJWT {jwt.__version__}, one fresh jti each")
        for server in args.servers.split(","):
            target = None
            try:
                if server == "oidc-provider":
                    target = OidcProvider(work, keys)
                else:
                    target = Gateway(args.gateway, server, work, keys)
                for alg in algs:
                    rows.append(measure(target, alg, keys, args, work))
            finally:
                if target:
                    target.stop()
    peer = {r["alg"]: r for r in rows if r["server"].startswith("oidc-provider")}
    if peer:
        print("\nratios to oidc-provider (same run, same load):")
        for row in rows:
            base = peer.get(row["alg"])
            if base and row is not base:
                print(f"  {row['server']:24} {row['alg']:6} tokens/s x{row['tokens_per_s'] / base['tokens_per_s']:.2f}  "
                      f"p99 x{row['p99_ms'] / base['p99_ms']:.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    sys.exit(main())
