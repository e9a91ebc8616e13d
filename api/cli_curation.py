"""``tcm kb propose|review|release|diff|history|restore|entity|change-requests``: knowledge curation from the
command line, on the same database as the server (``TCM_DATABASE_URL``, default ``sqlite:///var/tcm.db``).

A running server picks up a release made here within ``TCM_KB_POLL_S`` seconds. The workflow and its rules
(review by someone other than the author, stale edits refused, invalid change requests not approved) are the
same as through the API: see docs/curation.md.

Exit codes: 0 done; 1 refused (fails validation, conflict, self-approval); 2 bad input.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from kb.errors import CurationError, CurationInputError


def register(kb_sub: Any) -> None:
    db = argparse.ArgumentParser(add_help=False)
    db.add_argument(
        "--database", metavar="URL", help="database URL (default: $TCM_DATABASE_URL or sqlite:///var/tcm.db)"
    )
    db.add_argument("--json", action="store_true", help="print JSON")

    s = kb_sub.add_parser("propose", parents=[db], help="propose a change request (JSON or YAML file, or - for stdin)")
    s.add_argument("file", metavar="FILE")
    s.add_argument("--author", required=True, help="who proposes it")
    s.set_defaults(func=cmd_propose)

    s = kb_sub.add_parser("review", parents=[db], help="approve or reject a change request (not one's own)")
    s.add_argument("id", type=int, metavar="ID")
    g = s.add_mutually_exclusive_group(required=True)
    g.add_argument("--approve", action="store_true")
    g.add_argument("--reject", action="store_true")
    s.add_argument("--reviewer", required=True, help="who reviews it")
    s.add_argument("--comment")
    s.set_defaults(func=cmd_review)

    s = kb_sub.add_parser("release", parents=[db], help="release every approved change request as a new version")
    s.add_argument("--by", required=True, help="who releases")
    s.add_argument("--note")
    s.set_defaults(func=cmd_release)

    s = kb_sub.add_parser(
        "diff", parents=[db], help="field-by-field diff between two releases (default: current vs parent)"
    )
    s.add_argument("frm", nargs="?", metavar="FROM")
    s.add_argument("to", nargs="?", metavar="TO")
    s.set_defaults(func=cmd_diff)

    s = kb_sub.add_parser("history", parents=[db], help="the releases, newest first")
    s.add_argument("--limit", type=int, default=50)
    s.set_defaults(func=cmd_history)

    s = kb_sub.add_parser("restore", parents=[db], help="publish an earlier release's content as a new release")
    s.add_argument("name", metavar="RELEASE")
    s.add_argument("--by", required=True, help="who restores")
    s.add_argument("--note")
    s.set_defaults(func=cmd_restore)

    s = kb_sub.add_parser("entity", parents=[db], help="an entity of the current release, with its etag (to edit it)")
    s.add_argument("kind", metavar="KIND")
    s.add_argument("id", metavar="ID")
    s.set_defaults(func=cmd_entity)

    s = kb_sub.add_parser("change-requests", parents=[db], help="change requests, newest first")
    s.add_argument("--status")
    s.add_argument("--limit", type=int, default=50)
    s.set_defaults(func=cmd_list)


def _curation(args: argparse.Namespace) -> Any:
    from api.audit import make_engine
    from api.settings import Settings
    from kb.curation import Curation

    url = args.database or Settings.from_env().database_url
    return Curation(make_engine(url))


def _run(args: argparse.Namespace, fn: Any, show: Any) -> int:
    try:
        out = fn()
    except CurationInputError as exc:
        _problems(exc)
        return 2
    except CurationError as exc:
        _problems(exc)
        return 1
    if args.json:
        from api.cli import emit

        emit(out)
    else:
        show(out)
    return 0


def _problems(exc: CurationError) -> None:
    sys.stderr.write(f"tcm: {exc}\n")
    for p in exc.problems[:100]:
        sys.stderr.write(f"  - {p}\n")
    for k, v in exc.details.items():
        if k != "stale":
            sys.stderr.write(f"  {k}: {v}\n")


def _read(path: str) -> Any:
    from api.cli import UsageError

    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise UsageError(f"{path}: not UTF-8 text") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        import yaml

        try:
            return yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise UsageError(f"{path}: neither JSON nor YAML: {exc}") from None


def _show_cr(cr: dict[str, Any]) -> None:
    v = cr["validation"]
    print(f"#{cr['id']} [{cr['status']}] {cr['title']}  (by {cr['author']}, revision {cr['revision']})")
    print(f"  validation: {'ok' if v.get('ok') else 'FAILS'} against {v.get('checked_against')}")
    for p in v.get("problems", [])[:50]:
        print(f"    - {p}")
    for w in v.get("warnings", [])[:20]:
        print(f"    warning: {w}")
    _show_diff(cr.get("diff") or [])


def _show_diff(diff: list[dict[str, Any]]) -> None:
    for d in diff:
        print(f"  {d['change']:<10} {d['kind']} {d['id']} ({d['name']})")
        for f in d["fields"]:
            before = json.dumps(f["before"], ensure_ascii=False)
            after = json.dumps(f["after"], ensure_ascii=False)
            print(f"      {f['field']}: {before} -> {after}")


def _show_release(r: dict[str, Any]) -> None:
    print(f"{r['name']}  {r['version']}  [{r['kind']}] by {r['created_by']} at {r['created_at']}"
          + ("  (current)" if r.get("current") else ""))  # fmt: skip
    if r.get("note"):
        print(f"  note: {r['note']}")
    for line in r.get("changelog", []):
        print(f"  {line}")
    _show_diff(r.get("diff") or [])


def cmd_propose(args: argparse.Namespace) -> int:
    raw = _read(args.file)
    c = _curation(args)
    made: list[dict[str, Any]] = []
    code = _run(args, lambda: made.append(c.propose(args.author, raw)) or made[0], _show_cr)
    if code == 0 and not made[0]["validation"]["ok"]:
        sys.stderr.write(f"tcm: change request #{made[0]['id']} is stored but fails validation; fix it before review\n")
        return 1
    return code


def cmd_review(args: argparse.Namespace) -> int:
    c = _curation(args)
    decision = "approve" if args.approve else "reject"
    return _run(args, lambda: c.review(args.id, args.reviewer, decision, args.comment), _show_cr)


def cmd_release(args: argparse.Namespace) -> int:
    c = _curation(args)
    return _run(args, lambda: c.release(args.by, args.note), _show_release)


def cmd_restore(args: argparse.Namespace) -> int:
    c = _curation(args)
    return _run(args, lambda: c.restore(args.name, args.by, args.note), _show_release)


def cmd_diff(args: argparse.Namespace) -> int:
    c = _curation(args)

    def show(out: dict[str, Any]) -> None:
        print(
            f"{out['from']} -> {out['to']}: {len(out['diff'])} entit{'y' if len(out['diff']) == 1 else 'ies'} changed"
        )
        _show_diff(out["diff"])

    return _run(args, lambda: c.diff(args.frm, args.to), show)


def cmd_history(args: argparse.Namespace) -> int:
    c = _curation(args)

    def show(rows: list[dict[str, Any]]) -> None:
        for r in rows:
            print(f"{r['name']:<14} {r['version']:<28} {r['kind']:<8} {r['created_by']:<16} {r['created_at']}"
                  f"  {r['changed_entities']} changed" + ("  (current)" if r["current"] else ""))  # fmt: skip
            for line in r["changelog"]:
                print(f"    {line}")

    return _run(args, lambda: c.history(args.limit), show)


def cmd_entity(args: argparse.Namespace) -> int:
    c = _curation(args)

    def show(e: dict[str, Any]) -> None:
        print(f"{e['kind']} {e['id']} ({e['name']})  etag {e['etag']}  in {e['release']}"
              + ("  DEPRECATED" if e["deprecated"] else ""))  # fmt: skip
        print(json.dumps(e["data"], ensure_ascii=False, indent=2))

    return _run(args, lambda: c.entity(args.kind, args.id), show)


def cmd_list(args: argparse.Namespace) -> int:
    c = _curation(args)

    def show(items: list[dict[str, Any]]) -> None:
        for cr in items:
            ok = "ok" if cr["validation"].get("ok") else "FAILS"
            print(f"#{cr['id']:<5} {cr['status']:<10} {ok:<6} {cr['author']:<16} {cr['title']}")

    return _run(args, lambda: c.change_requests(args.status, args.limit), show)
