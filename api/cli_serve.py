"""``tcm serve`` (the HTTP service), ``tcm audit export``, and the client registries: ``tcm token`` (REST
clients) and ``tcm cds-client`` (CDS Hooks issuers).

    tcm serve [--host 127.0.0.1] [--port 8000] [--workers N] [--dev]
    tcm audit export [--since 2026-01-01T00:00:00Z] [--out FILE]      JSON Lines, one call a line
    tcm token create NAME --role emr [--role …] | tcm token revoke NAME | tcm token list
    tcm cds-client add ISS --jwks FILE [--jku URL …] [--name NAME] [--tenant T] | tcm cds-client list
    tcm cds-client jwt --service ID [--key FILE --iss ISS] [--dev]     a signed JWT, to try a service

``--dev`` (loopback only) creates, the first time, a development REST token holding every role and prints it
once, and a development CDS client (issuer ``urn:tcm-cds:dev``, its private key in ``var/dev/``) whose JWTs
``tcm cds-client jwt --dev`` signs.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
import uuid
from pathlib import Path
from typing import Any

DEV_ISSUER = "urn:tcm-cds:dev"
DEV_DIR = Path("var") / "dev"
DEV_KEY = DEV_DIR / "cds-client-key.json"
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def register(sub: Any) -> None:
    p = sub.add_parser("serve", help="run the HTTP service (REST /v1, CDS Hooks, metrics)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--workers", type=int, default=1, help="worker processes sharing the database (default 1)")
    p.add_argument(
        "--dev", action="store_true", help="development mode: a development token and CDS key (loopback only)"
    )
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.set_defaults(func=cmd_serve)

    a = sub.add_parser("audit", help="the audit trail")
    a_sub = a.add_subparsers(dest="audit_command", metavar="COMMAND")
    a_sub.required = True
    e = a_sub.add_parser("export", help="write audit records (with their cards and feedback) as JSON Lines")
    e.add_argument("--since", help="only records at or after this ISO 8601 time (UTC when no zone is given)")
    e.add_argument("--out", type=Path, help="file to write (default: standard output)")
    e.set_defaults(func=cmd_audit_export)

    t = sub.add_parser("token", help="REST client tokens")
    t_sub = t.add_subparsers(dest="token_command", metavar="COMMAND")
    t_sub.required = True
    c = t_sub.add_parser("create", help="register a REST client; prints its token once")
    c.add_argument("name")
    c.add_argument("--role", action="append", required=True, help="emr, curator, reviewer, researcher, monitor, admin")
    c.set_defaults(func=cmd_token_create)
    r = t_sub.add_parser("revoke", help="remove a REST client")
    r.add_argument("name")
    r.set_defaults(func=cmd_token_revoke)
    ls = t_sub.add_parser("list", help="list REST clients and their roles")
    ls.set_defaults(func=cmd_token_list)

    k = sub.add_parser("cds-client", help="CDS Hooks clients (JWT issuers)")
    k_sub = k.add_subparsers(dest="cds_command", metavar="COMMAND")
    k_sub.required = True
    add = k_sub.add_parser("add", help="allow an issuer, with its public JWK Set (file) and/or allowed jku URLs")
    add.add_argument("iss")
    add.add_argument("--jwks", type=Path, help="the issuer's public JWK Set (JSON file)")
    add.add_argument("--jku", action="append", default=[], help="an allowed jku URL (repeatable)")
    add.add_argument("--name", help="a display name for the audit trail")
    add.add_argument("--tenant", help="require this tenant claim")
    add.set_defaults(func=cmd_cds_add)
    lst = k_sub.add_parser("list", help="list allowed issuers")
    lst.set_defaults(func=cmd_cds_list)
    j = k_sub.add_parser("jwt", help="sign a short-lived JWT for a service call (testing with curl)")
    j.add_argument("--service", default="", help="service id ('' for discovery)")
    j.add_argument("--feedback", action="store_true", help="for the service's feedback endpoint")
    j.add_argument("--key", type=Path, help="private JWK (JSON) of the client")
    j.add_argument("--iss", help="the issuer")
    j.add_argument("--dev", action="store_true", help="use the development client created by tcm serve --dev")
    j.add_argument("--base-url", default=os.environ.get("TCM_PUBLIC_URL", "http://127.0.0.1:8000"))
    j.add_argument("--ttl", type=int, default=300)
    j.set_defaults(func=cmd_cds_jwt)


# ---- serve ---------------------------------------------------------------------------------------------
def _log_config(level: str) -> dict[str, Any]:
    import copy

    from uvicorn.config import LOGGING_CONFIG

    cfg = copy.deepcopy(LOGGING_CONFIG)
    for name in ("api", "kb", "cds"):
        cfg["loggers"][name] = {"handlers": ["default"], "level": level.upper(), "propagate": False}
    return cfg


def dev_setup(settings: Any, base_url: str = "http://127.0.0.1:8000", out: Any = sys.stderr) -> None:
    """Create the development REST token and CDS client once; print the token (it is not kept)."""
    from joserfc.jwk import ECKey

    from api.auth import add_api_client, register_issuer

    path = settings.api_tokens_file
    existing = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {"clients": []}
    if not any(c.get("name") == "dev" for c in existing.get("clients", [])):
        token = add_api_client(path, "dev", ["emr", "curator", "reviewer", "researcher", "monitor", "admin"], None)
        out.write(
            "\n  development API token (all roles; shown once, only its hash is kept in "
            f"{path}):\n\n    {token}\n\n  curl -H 'Authorization: Bearer {token}' {base_url}/v1/version\n"
            "  (delete the 'dev' entry from that file, or run `tcm token revoke dev`, to make a new one)\n\n"
        )
    names = {c.get("name") for c in existing.get("clients", [])}
    made: list[tuple[str, str, str]] = []
    for name, role in (("dev-curator", "curator"), ("dev-reviewer", "reviewer")):
        if name not in names:  # two people: a change request is reviewed by someone other than its author
            made.append((name, role, add_api_client(path, name, [role], None)))
    if made:
        out.write(f"  curation tokens for the web page {base_url}/curate (shown once):\n\n")
        for name, role, token in made:
            out.write(f"    {role:<9} {token}    ({name})\n")
        out.write("\n")
    if not DEV_KEY.is_file():
        key = ECKey.generate_key("P-384", parameters={"kid": "dev-1", "alg": "ES384", "use": "sig"}, private=True)
        DEV_DIR.mkdir(parents=True, exist_ok=True)
        fd = os.open(DEV_KEY, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(key.as_dict(private=True), fh)
        register_issuer(
            settings.cds_clients_file,
            DEV_ISSUER,
            jwks={"keys": [key.as_dict(private=False)]},
            name="development EHR",
        )
        out.write(
            f"  development CDS client: issuer {DEV_ISSUER}, private key {DEV_KEY}\n"
            f"  sign a JWT: tcm cds-client jwt --dev --base-url {base_url} "
            "--service tcm-rx-safety-order-sign\n\n"
        )


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from api.audit import create_schema, make_engine
    from api.cli import UsageError
    from api.settings import Settings

    if args.workers < 1:
        raise UsageError("--workers must be at least 1")
    if args.dev:
        if args.host not in LOOPBACK:
            raise UsageError("--dev binds to the loopback address only (--host 127.0.0.1)")
        os.environ["TCM_ENV"] = "development"
        os.environ.setdefault("TCM_PUBLIC_URL", f"http://{args.host}:{args.port}")
    settings = Settings.from_env()
    engine = make_engine(settings.database_url)
    create_schema(engine)  # once, before the workers start
    engine.dispose()
    if args.dev:
        dev_setup(settings, os.environ["TCM_PUBLIC_URL"])
    elif not settings.api_tokens_file.is_file() and not settings.cds_clients_file.is_file():
        sys.stderr.write(
            "tcm serve: no clients registered yet (tcm token create / tcm cds-client add); "
            "every authenticated route will answer 401\n"
        )
    if args.workers > 1:
        prom = Path("var") / "prometheus"
        shutil.rmtree(prom, ignore_errors=True)
        prom.mkdir(parents=True)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(prom.resolve())
    uvicorn.run(
        "api.app:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level=args.log_level,
        log_config=_log_config(args.log_level),
        access_log=False,
        server_header=False,
        timeout_keep_alive=5,
        timeout_graceful_shutdown=10,
        limit_concurrency=1024,
        backlog=2048,
        h11_max_incomplete_event_size=64 * 1024,
    )
    return 0


# ---- audit ---------------------------------------------------------------------------------------------
def cmd_audit_export(args: argparse.Namespace) -> int:
    from api.audit import create_schema, export, make_engine
    from api.rest import _since
    from api.settings import Settings

    settings = Settings.from_env()
    since = _since(args.since)
    engine = make_engine(settings.database_url)
    create_schema(engine)
    n = 0
    if args.out:
        tmp = args.out.with_suffix(args.out.suffix + ".tmp")
        with tmp.open("w", encoding="utf-8") as fh:
            for rec in export(engine, since):
                fh.write(json.dumps(rec, ensure_ascii=False, separators=(",", ":")) + "\n")
                n += 1
        tmp.replace(args.out)
        sys.stderr.write(f"wrote {n} audit record(s) to {args.out}\n")
    else:
        for rec in export(engine, since):
            sys.stdout.write(json.dumps(rec, ensure_ascii=False, separators=(",", ":")) + "\n")
    engine.dispose()
    return 0


# ---- clients -------------------------------------------------------------------------------------------
def cmd_token_create(args: argparse.Namespace) -> int:
    from api.auth import add_api_client
    from api.cli import UsageError
    from api.settings import Settings

    try:
        token = add_api_client(Settings.from_env().api_tokens_file, args.name, args.role)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    print(token)
    sys.stderr.write("store this token now: it is shown once (only its hash is kept)\n")
    return 0


def cmd_token_revoke(args: argparse.Namespace) -> int:
    from api.auth import revoke_api_client
    from api.cli import UsageError
    from api.settings import Settings

    if not revoke_api_client(Settings.from_env().api_tokens_file, args.name):
        raise UsageError(f"no REST client named {args.name!r}")
    return 0


def cmd_token_list(args: argparse.Namespace) -> int:
    from api.settings import Settings

    path = Settings.from_env().api_tokens_file
    data = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {"clients": []}
    for c in data["clients"]:
        print(f"{c['name']}\t{','.join(c.get('roles', []))}\t{c.get('created', '')}")
    return 0


def cmd_cds_add(args: argparse.Namespace) -> int:
    from api.auth import register_issuer
    from api.cli import UsageError
    from api.settings import Settings

    if args.jwks is None and not args.jku:
        raise UsageError("give the issuer's public keys: --jwks FILE and/or --jku URL")
    jwks = None
    if args.jwks is not None:
        try:
            jwks = json.loads(args.jwks.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise UsageError(f"cannot read the JWK Set {args.jwks}: {exc}") from exc
    register_issuer(
        Settings.from_env().cds_clients_file,
        args.iss,
        jwks=jwks,
        jku=args.jku,
        name=args.name,
        tenant=args.tenant,
    )
    return 0


def cmd_cds_list(args: argparse.Namespace) -> int:
    from api.settings import Settings

    path = Settings.from_env().cds_clients_file
    data = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {"issuers": []}
    for e in data["issuers"]:
        keys = len((e.get("jwks") or {}).get("keys", []))
        print(f"{e['iss']}\t{e.get('name', '')}\tkeys={keys}\tjku={','.join(e.get('jku', []))}")
    return 0


def sign_jwt(key: dict[str, Any], iss: str, aud: str, ttl: int = 300) -> str:
    from joserfc import jwt
    from joserfc.jwk import import_key

    k = import_key(key)
    alg = key.get("alg") or ("ES384" if key.get("kty") == "EC" else "RS384")
    now = int(time.time())
    claims = {"iss": iss, "aud": aud, "iat": now, "exp": now + ttl, "jti": str(uuid.uuid4())}
    return jwt.encode({"alg": alg, "kid": key.get("kid"), "typ": "JWT"}, claims, k, algorithms=[alg])


def cmd_cds_jwt(args: argparse.Namespace) -> int:
    from api.cli import UsageError

    key_path, iss = (DEV_KEY, DEV_ISSUER) if args.dev else (args.key, args.iss)
    if key_path is None or iss is None:
        raise UsageError("give --key FILE and --iss ISS, or --dev")
    try:
        key = json.loads(Path(key_path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read the private key {key_path}: {exc}") from exc
    aud = args.base_url.rstrip("/") + "/cds-services" + (f"/{args.service}" if args.service else "")
    if args.feedback:
        aud += "/feedback"
    print(sign_jwt(key, iss, aud, args.ttl))
    return 0
