"""Load benchmark of the HTTP service: a real ``tcm serve`` on a free loopback port, a real HTTP client.

Measures requests/s and p50/p99 latency for ``POST /v1/check`` (a typical 12-herb prescription) and the
``order-sign`` CDS Hooks service (the same herbs as a FHIR MedicationRequest in draftOrders, a fresh signed
JWT per call), side by side with ``GET /v1/ping`` (a hello-world route of the same app: same middleware, same
token check, not audited) in the same run, at 1, 16 and 64 concurrent clients. Every non-200 answer counts as
an error; the run fails (exit 1) on any error. Bounded: each cell runs for ``--seconds`` or
``--max-requests``, whichever comes first.

    .venv/bin/python -m bench.load [--seconds 3] [--workers 1] [--kb DIR] [--json OUT]

Traffic goes to 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
HERBS = [
    ("桂枝", 9),
    ("白芍", 9),
    ("生姜", 9),
    ("大枣", 6),
    ("甘草", 6),
    ("党参", 12),
    ("白术", 9),
    ("茯苓", 12),
    ("川芎", 6),
    ("当归", 9),
    ("黄芪", 15),
    ("山药", 15),
]
SERVICE = "tcm-rx-safety-order-sign"
WORKLOADS = ("hello", "check", "order-sign")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def prescription() -> dict[str, Any]:
    return {
        "patient": {"sex": "female", "age_years": 42, "pregnant": False},
        "items": [{"herb": h, "dose": f"{g}g"} for h, g in HERBS],
        "days": 7,
    }


def order_sign(hook_instance: str) -> dict[str, Any]:
    ingredients = [
        {
            "itemCodeableConcept": {"text": h},
            "strength": {
                "numerator": {"value": g, "unit": "g", "system": "http://unitsofmeasure.org", "code": "g"},
                "denominator": {"value": 1, "unit": "剂"},
            },
        }
        for h, g in HERBS
    ]
    mr = {
        "resourceType": "MedicationRequest",
        "id": "rx-1",
        "status": "draft",
        "intent": "order",
        "subject": {"reference": "Patient/p-1"},
        "medicationReference": {"reference": "#m"},
        "contained": [{"resourceType": "Medication", "id": "m", "ingredient": ingredients}],
        "dispenseRequest": {"expectedSupplyDuration": {"value": 7, "unit": "d"}},
    }
    return {
        "hook": "order-sign",
        "hookInstance": hook_instance,
        "context": {
            "userId": "Practitioner/dr-1",
            "patientId": "p-1",
            "draftOrders": {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": mr}]},
        },
    }


class Server:
    """``tcm serve`` in a scratch folder with one REST client and one CDS client registered."""

    def __init__(self, kb_dir: Path | None, workers: int, alg: str):
        from joserfc.jwk import ECKey, RSAKey

        from api.auth import add_api_client, register_issuer

        self.dir = Path(tempfile.mkdtemp(prefix="tcm-bench-"))
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        var = self.dir / "var"
        self.token = add_api_client(var / "api-tokens.json", "bench", ["emr"])
        params: Any = {"kid": "bench-1", "alg": alg, "use": "sig"}
        self.key = (
            ECKey.generate_key("P-384", parameters=params)
            if alg == "ES384"
            else RSAKey.generate_key(2048, parameters=params)
        )
        self.alg = alg
        register_issuer(
            var / "cds-clients.json",
            "https://ehr.bench.invalid",
            jwks={"keys": [self.key.as_dict(private=False)]},
        )
        # no SPARQL warm-up: building the RDF graph in the background takes the first seconds of CPU, which would
        # land on the first cells (c=1) and measure the warm-up instead of the calls; no workload here uses SPARQL
        env = {
            **os.environ,
            "TCM_RATE_LIMIT": "0",
            "TCM_SPARQL_WARMUP": "0",
            "TCM_PUBLIC_URL": self.base,
            "PYTHONPATH": str(ROOT),
        }
        if kb_dir is not None:
            env["TCM_KB_DIR"] = str(kb_dir)
        self.log = (self.dir / "server.log").open("wb")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "api.cli",
                "serve",
                "--port",
                str(self.port),
                "--workers",
                str(workers),
                "--log-level",
                "warning",
            ],
            cwd=self.dir,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self._wait_ready()

    def _wait_ready(self, timeout: float = 120.0) -> None:
        import httpx

        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"tcm serve exited: {(self.dir / 'server.log').read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.base}/readyz", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError("tcm serve did not become ready")

    def jwt(self) -> str:
        from joserfc import jwt

        now = int(time.time())
        claims = {
            "iss": "https://ehr.bench.invalid",
            "aud": f"{self.base}/cds-services/{SERVICE}",
            "iat": now,
            "exp": now + 600,
            "jti": str(uuid.uuid4()),
        }
        return jwt.encode({"alg": self.alg, "kid": "bench-1"}, claims, self.key, algorithms=[self.alg])

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


class RawConnection:
    """A lean HTTP/1.1 keep-alive client on asyncio streams (Content-Length framing, as the service sends).

    httpx costs milliseconds of client CPU per call on this machine, which would measure the client instead of
    the server; ``--client httpx`` uses httpx anyway."""

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, headers: dict[str, str], body: bytes = b"") -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}", f"Content-Length: {len(body)}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        status_line = await self.reader.readline()
        if not status_line:
            raise ConnectionError("connection closed")
        status = int(status_line.split()[1])
        length, close = None, False
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"connection" and value.strip().lower() == b"close":
                close = True
        if length is None:
            raise ConnectionError("response without Content-Length")
        data = await self.reader.readexactly(length)
        if close:
            await self.close()
        return status, data

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


async def cell(
    server: Server, workload: str, clients: int, seconds: float, max_requests: int, client_kind: str = "raw"
) -> dict[str, Any]:
    import httpx

    rx_body = json.dumps(prescription(), ensure_ascii=False).encode()
    auth = {"Authorization": f"Bearer {server.token}"}
    # JWTs and bodies are made before the clock starts, so the client's signing does not count; the first
    # 2 x clients of them serve the warm-up
    warm = 2 * clients
    n_pre = max_requests + warm if workload == "order-sign" else 0
    jwts = [server.jwt() for _ in range(n_pre)]
    bodies = [json.dumps(order_sign(str(uuid.uuid4()))).encode() for _ in range(n_pre)]
    latencies: list[float] = []
    errors: dict[str, int] = {}
    issued = 0

    def request(i: int) -> tuple[str, str, dict[str, str], bytes]:
        if workload == "hello":
            return "GET", "/v1/ping", auth, b""
        if workload == "check":
            return "POST", "/v1/check", {**auth, "Content-Type": "application/json"}, rx_body
        hdr = {"Authorization": f"Bearer {jwts[i]}", "Content-Type": "application/json"}
        return "POST", f"/cds-services/{SERVICE}", hdr, bodies[i]

    host, port = "127.0.0.1", server.port
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=server.base, limits=limits, timeout=30.0) as hx:

        async def worker(deadline: float, cap: int, counted: bool) -> None:
            nonlocal issued
            conn = RawConnection(host, port)
            try:
                while time.perf_counter() < deadline and issued < cap:
                    method, path, headers, body = request(issued)
                    issued += 1
                    t0 = time.perf_counter()
                    try:
                        if client_kind == "httpx":
                            r = await hx.request(method, path, headers=headers, content=body or None)
                            status = r.status_code
                        else:
                            status, _ = await conn.request(method, path, headers, body)
                    except (httpx.HTTPError, OSError, ConnectionError, asyncio.IncompleteReadError) as exc:
                        status = 0
                        errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                        await conn.close()
                    if counted:
                        latencies.append(time.perf_counter() - t0)
                        if status not in (0, 200):
                            errors[str(status)] = errors.get(str(status), 0) + 1
            finally:
                await conn.close()

        await asyncio.gather(*(worker(time.perf_counter() + 60, warm, False) for _ in range(clients)))
        errors.clear()
        start = time.perf_counter()
        await asyncio.gather(*(worker(start + seconds, warm + max_requests, True) for _ in range(clients)))
        wall = time.perf_counter() - start
    return {"workload": workload, "clients": clients, "latencies": latencies, "wall": wall, "errors": errors}


def summarize(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """One row from the rounds of one cell: requests over total measured time, latency percentiles."""
    latencies = sorted(x for p in parts for x in p["latencies"])
    wall = sum(p["wall"] for p in parts)
    errors: dict[str, int] = {}
    for p in parts:
        for k, v in p["errors"].items():
            errors[k] = errors.get(k, 0) + v
    n = len(latencies)
    return {
        "workload": parts[0]["workload"],
        "clients": parts[0]["clients"],
        "requests": n,
        "seconds": round(wall, 3),
        "rps": round(n / wall, 1) if wall else 0.0,
        "p50_ms": round(statistics.median(latencies) * 1000, 2) if n else None,
        "p99_ms": round(latencies[min(n - 1, int(n * 0.99))] * 1000, 2) if n else None,
        "errors": errors,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bench.load", description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=3.0, help="measured time per cell (default 3)")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds per cell, against drift (default 3)")
    ap.add_argument("--max-requests", type=int, default=20_000, help="request cap per cell (default 20000)")
    ap.add_argument("--clients", default="1,16,64", help="concurrency levels (default 1,16,64)")
    ap.add_argument("--workers", type=int, default=1, help="tcm serve worker processes (default 1)")
    ap.add_argument(
        "--kb", type=Path, help="knowledge-base directory (default: the built-in one, else the test fixture)"
    )
    ap.add_argument("--alg", default="ES384", choices=["ES384", "RS384"], help="the CDS client's JWT algorithm")
    ap.add_argument("--client", default="raw", choices=["raw", "httpx"], help="HTTP client (default: raw asyncio)")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    kb_dir = args.kb
    if kb_dir is None:
        import kb

        try:
            kb.load()
        except Exception:
            kb_dir = ROOT / "tests" / "fixtures" / "kb"
            print(f"(built-in knowledge base does not load; using {kb_dir})", file=sys.stderr)
    levels = [int(x) for x in args.clients.split(",") if x.strip()]
    server = Server(kb_dir, args.workers, args.alg)
    rows: list[dict[str, Any]] = []
    try:
        for c in levels:
            parts: dict[str, list[dict[str, Any]]] = {w: [] for w in WORKLOADS}
            for _ in range(args.rounds):  # hello, check, order-sign, hello, check, … : same conditions for each
                for workload in WORKLOADS:
                    cap = min(args.max_requests, 5000) if workload == "order-sign" else args.max_requests
                    t = args.seconds / args.rounds
                    parts[workload].append(asyncio.run(cell(server, workload, c, t, cap // args.rounds, args.client)))
            for workload in WORKLOADS:
                rows.append(summarize(parts[workload]))
                r = rows[-1]
                print(
                    f"  {workload:<11} c={c:<3} {r['rps']:>8.1f} req/s  p50 {r['p50_ms']:>7} ms"
                    f"  p99 {r['p99_ms']:>7} ms  n={r['requests']}  errors={r['errors'] or 0}",
                    file=sys.stderr,
                    flush=True,
                )
    finally:
        server.stop()
    print(f"\n{'workload':<12}{'clients':>8}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'vs hello':>10}{'errors':>8}")
    ratios = {}
    for r in rows:
        hello = next(x for x in rows if x["workload"] == "hello" and x["clients"] == r["clients"])
        ratio = r["rps"] / hello["rps"] if hello["rps"] else 0.0
        r["vs_hello"] = round(ratio, 3)
        if r["workload"] == "check":
            ratios[r["clients"]] = ratio
        print(
            f"{r['workload']:<12}{r['clients']:>8}{r['rps']:>10.1f}{r['p50_ms']:>9}{r['p99_ms']:>9}{ratio:>9.0%}"
            f"{sum(r['errors'].values()):>8}"
        )
    total_errors = sum(sum(r["errors"].values()) for r in rows)
    target = all(x >= 0.6 for x in ratios.values())
    print(
        f"\n/v1/check throughput vs hello-world: {', '.join(f'c={c}: {x:.0%}' for c, x in ratios.items())} "
        f"(target >= 60%: {'met' if target else 'NOT met'}); errors: {total_errors}"
    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"workers": args.workers, "alg": args.alg, "rows": rows}, indent=2))
    return 1 if total_errors else 0


if __name__ == "__main__":
    sys.exit(main())
