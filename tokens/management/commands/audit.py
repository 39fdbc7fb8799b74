"""``manage.py audit seal|verify|head|prove|export|prune|rotate-key``: the ledger from the command line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from tokens import ledger
from tokens.ledger.audit_keys import rotate_audit_key
from tokens.models import LedgerRecord, TreeHead
from tokens.verifier import Report, load_trusted_head, parse_json, verify_export


class Command(BaseCommand):
    help = "Seal, verify, prove and export the signed audit ledger (docs/audit-ledger.md)."

    def add_arguments(self, parser: CommandParser) -> None:
        commands = parser.add_subparsers(dest="action", required=True)
        seal = commands.add_parser("seal", help="sign a tree head over every unsealed record now")
        seal.add_argument("--force", action="store_true", help="sign a fresh head even with nothing new")
        verify = commands.add_parser(
            "verify", help="check every record, tree head signature and consistency; exit 1 on failure"
        )
        verify.add_argument("--no-seal", action="store_true", help="verify what is sealed, seal nothing")
        verify.add_argument(
            "--export", type=Path, metavar="DIR", help="verify this export directory instead of the database"
        )
        verify.add_argument(
            "--keys",
            type=Path,
            metavar="FILE",
            help="pinned audit JWK Set: every signature must be by one of these keys",
        )
        verify.add_argument(
            "--trusted-head",
            type=Path,
            metavar="FILE",
            help="a signed tree head saved earlier (`audit head`): the ledger must hold and extend it",
        )
        commands.add_parser("head", help="the latest signed tree head, as JSON: save it for --trusted-head")
        prove = commands.add_parser("prove", help="RFC 9162 inclusion proof of one record, as JSON")
        prove.add_argument("record", type=int, help="the record's leaf index")
        prove.add_argument("--tree-size", type=int, help="prove against the head of this size")
        export = commands.add_parser("export", help="records, signed tree heads and audit keys as files")
        export.add_argument("directory", type=Path)
        prune = commands.add_parser(
            "prune", help="delete the records below a sealed tree size, once a verified export holds them"
        )
        prune.add_argument("tree_size", type=int, help="the size of a signed tree head")
        prune.add_argument("--export", type=Path, required=True, help="an export made before, checked first")
        commands.add_parser("rotate-key", help="retire the audit key; the next head is signed by a new one")

    def handle(self, *args: Any, **options: Any) -> None:
        action = options["action"]
        refused = None
        if action in ("seal", "export") or (
            action == "verify" and not options["no_seal"] and not options["export"]
        ):
            try:
                head = ledger.seal_tree_head(now=timezone.now(), force=options.get("force", False))
            except ledger.SealRefused as exc:
                if action == "seal":
                    raise CommandError(f"sealing refused: {exc}") from exc
                refused = f"sealing refused: {exc}"
                if action == "verify" or ledger.head_problem() is None:
                    self.stderr.write(self.style.ERROR(f"ERROR: {refused}; going on with what is sealed"))
            if action == "seal":
                self.stdout.write(f"sealed: tree size {head.tree_size}" if head else "nothing to seal")
        if action == "verify":
            report = self._verify(options)
            for warning in report.warnings:
                self.stderr.write(self.style.WARNING(f"WARNING: {warning}"))
            if not report.ok or refused:
                raise CommandError("; ".join(filter(None, [report.summary(), refused])))
            self.stdout.write(self.style.SUCCESS(report.summary()))
        elif action == "head":
            try:
                head_document = ledger.published_tree_head()
            except ledger.SealRefused as exc:
                raise CommandError(str(exc)) from exc
            if head_document is None:
                raise CommandError("no signed tree head yet: run `manage.py audit seal`")
            self.stdout.write(json.dumps(head_document, sort_keys=True))
        elif action == "prove":
            try:
                proof = ledger.inclusion_proof(index=options["record"], tree_size=options["tree_size"])
            except (LedgerRecord.DoesNotExist, TreeHead.DoesNotExist, ledger.LedgerCorrupt) as exc:
                raise CommandError(str(exc) or "no such sealed record") from exc
            self.stdout.write(json.dumps(proof, indent=2, sort_keys=True))
        elif action == "export":
            try:
                export = ledger.export_ledger(directory=options["directory"], now=timezone.now())
            except (ledger.ExportRefused, ledger.LedgerCorrupt) as exc:
                raise CommandError(f"nothing exported: {exc}") from exc
            self.stdout.write(
                f"exported {len(export.records)} records and {len(export.tree_heads)} tree heads"
                f" to {options['directory']}; verify with: python tokens/verifier.py {options['directory']}"
            )
        elif action == "prune":
            try:
                head = ledger.prune_ledger(
                    tree_size=options["tree_size"], export=options["export"], now=timezone.now()
                )
            except ledger.PruneRefused as exc:
                raise CommandError(str(exc)) from exc
            self.stdout.write(f"pruned the records below {head.tree_size}; tree heads and the frontier stay")
        elif action == "rotate-key":
            key = rotate_audit_key(now=timezone.now())
            self.stdout.write(f"audit key {key.kid} now signs tree heads")

    def _verify(self, options: dict[str, Any]) -> Report:
        """The database's ledger, or ``--export DIR``, against ``--keys`` and ``--trusted-head`` if given."""
        try:
            keys = parse_json(options["keys"].read_bytes()) if options["keys"] else None
            trusted = load_trusted_head(options["trusted_head"]) if options["trusted_head"] else None
        except (OSError, ValueError) as exc:
            raise CommandError(f"--keys or --trusted-head unreadable: {exc}") from exc
        if options["export"]:
            return verify_export(options["export"], keys=keys, trusted_head=trusted)
        return ledger.verify_stored_ledger(now=timezone.now(), keys=keys, trusted_head=trusted)
