"""GET /api/v1/audit/export: the sealed ledger as one ZIP archive of `manage.py audit export`'s four files,
streamed batch by batch, that tokens/verifier.py verifies once unzipped.

Attackers: a token without uaa.audit.read downloading who did what; a holder of uaa.audit.read looking in
the export for more than the ledger (a client secret, a whole token, an audit key's private or wrapped
half); anyone changing a byte of a download and still passing the verifier; a caller sending parameters
for a 500; a slow or stalled download holding a transaction or lock that stops sealing.
"""

from __future__ import annotations

import base64
import io
import threading
import zipfile
import zlib
from datetime import datetime
from http import HTTPStatus
from pathlib import Path

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from tests.api.conftest import call
from tokens import ledger
from tokens.ledger import export as export_module
from tokens.ledger.audit_keys import audit_jwks
from tokens.models import AuditKey, LedgerRecord
from tokens.verifier import parse_json, verify_export

EXPORT = "/api/v1/audit/export"
FILES = ["manifest.json", "records.jsonl", "tree-heads.jsonl", "audit-keys.json"]


@pytest.fixture
def auditor(admin_token):
    return admin_token("uaa.audit.read")


def sealed_ledger(records: int) -> int:
    for n in range(records):
        ledger.append_record(event=LedgerRecord.Event.TOKEN_ISSUED, client_id=f"svc-{n}", sub=f"u{n}")
    head = ledger.seal_tree_head(now=timezone.now())
    assert head is not None
    return head.tree_size


def download(token: str) -> tuple[object, bytes]:
    response = call("GET", EXPORT, token)
    assert response.status_code == HTTPStatus.OK, response.content if not response.streaming else ""
    return response, b"".join(response.streaming_content)


def unzip(data: bytes, directory: Path) -> Path:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert archive.namelist() == FILES
        archive.extractall(directory)
    return directory


def head_dict() -> dict[str, object]:
    head = ledger.latest_tree_head()
    assert head is not None
    return head.as_dict()


def test_the_download_is_the_command_export_and_verifies_offline(auditor, tmp_path):
    """docs/audit-ledger.md: the verifier with pinned keys and a trusted head says OK, without warnings
    other than none; the unzipped files are byte for byte what `manage.py audit export` writes."""
    size = sealed_ledger(12)
    response, data = download(auditor)
    assert response.streaming
    assert response["Content-Type"] == "application/zip"
    assert response["Cache-Control"] == "no-store"
    disposition = response["Content-Disposition"]
    assert disposition.startswith(f'attachment; filename="uaa-audit-ledger-{size}-') and disposition.endswith(
        '.zip"'
    )
    directory = unzip(data, tmp_path / "download")
    report = verify_export(directory, keys=audit_jwks(), trusted_head=head_dict())
    assert report.ok, report.summary()
    assert report.tree_size == size and report.warnings == []
    manifest = parse_json((directory / "manifest.json").read_bytes())
    exported_at = datetime.fromisoformat(manifest["exported_at"].replace("Z", "+00:00"))
    ledger.write_export(ledger.collect_export(now=exported_at), tmp_path / "command")
    for name in FILES:
        assert (directory / name).read_bytes() == (tmp_path / "command" / name).read_bytes(), name


def test_one_changed_byte_anywhere_in_the_download_is_refused(auditor, tmp_path):
    """Every byte of the archive, changed in turn: the archive is refused (CRC-32, the deflate stream, its
    directory), or the verifier refuses the files, or the files are unchanged (a byte of the archive's
    own metadata: a member's date or attributes). Never other files that verify."""
    sealed_ledger(3)
    _, data = download(auditor)
    original = unzip(data, tmp_path / "original")
    contents = {name: (original / name).read_bytes() for name in FILES}
    outcomes = {"archive refused": 0, "verifier refused": 0, "same files": 0}
    for position in range(len(data)):
        tampered = bytearray(data)
        tampered[position] ^= 0x01
        try:
            with zipfile.ZipFile(io.BytesIO(bytes(tampered))) as archive:
                files = {name: archive.read(name) for name in archive.namelist()}
        except (
            zipfile.BadZipFile,
            zlib.error,
            ValueError,
            EOFError,
            OSError,
            KeyError,
            RuntimeError,
            NotImplementedError,
        ):
            outcomes["archive refused"] += 1
            continue
        if files == contents:
            outcomes["same files"] += 1
            continue
        directory = tmp_path / f"at-{position}"
        directory.mkdir()
        for name, content in files.items():
            if "/" not in name and name in FILES:
                (directory / name).write_bytes(content)
        report = verify_export(directory, keys=audit_jwks(), trusted_head=head_dict())
        assert not report.ok, f"byte {position} changed the files and they still verify"
        outcomes["verifier refused"] += 1
    assert outcomes["archive refused"] > len(data) // 2, outcomes


def test_one_changed_byte_of_a_record_is_refused_by_the_verifier(auditor, tmp_path):
    sealed_ledger(5)
    _, data = download(auditor)
    directory = unzip(data, tmp_path / "download")
    records = directory / "records.jsonl"
    text = records.read_bytes()
    position = text.index(b'"svc-3"') + 5
    records.write_bytes(text[:position] + b"9" + text[position + 1 :])
    report = verify_export(directory, keys=audit_jwks(), trusted_head=head_dict())
    assert not report.ok
    assert report.first_bad_record is not None


def test_the_export_holds_the_ledger_and_nothing_else(admin_client, auditor, tmp_path):
    """Records never hold secrets or whole tokens; audit-keys.json only public halves (RFC 8037 §2)."""
    from tests.api.conftest import client_credentials_token

    service = admin_client("uaa.clients.read")
    token = client_credentials_token(service, "uaa.clients.read")  # a token.issued record
    sealed_ledger(1)
    _, data = download(auditor)
    directory = unzip(data, tmp_path / "download")
    everything = b"".join((directory / name).read_bytes() for name in FILES)
    assert service.secret and service.secret.encode() not in everything
    assert token.encode() not in everything and token.split(".")[2].encode() not in everything
    assert b"token.issued" in everything
    keys = parse_json((directory / "audit-keys.json").read_bytes())["keys"]
    assert keys and all(set(key) <= {"kty", "crv", "x", "kid", "alg", "use"} for key in keys)
    for key in AuditKey.objects.all():
        for wrapped in (bytes(key.wrapped_private_key), bytes(key.wrapped_data_key)):
            for form in (
                wrapped,
                wrapped.hex().encode(),
                base64.b64encode(wrapped),
                base64.urlsafe_b64encode(wrapped),
            ):
                assert form.rstrip(b"=") not in everything


def test_the_export_needs_the_audit_scope(admin_token):
    sealed_ledger(1)
    response = call("GET", EXPORT, admin_token("uaa.clients.read uaa.keys.read uaa.users.read"))
    assert response.status_code == HTTPStatus.FORBIDDEN
    assert response.json()["error"] == "insufficient_scope" and response.json()["scope"] == "uaa.audit.read"
    assert 'error="insufficient_scope"' in response["WWW-Authenticate"]
    assert 'scope="uaa.audit.read"' in response["WWW-Authenticate"]
    assert b"svc-0" not in response.content


def test_the_export_needs_a_token(db):
    sealed_ledger(1)
    response = call("GET", EXPORT)
    assert response.status_code == HTTPStatus.UNAUTHORIZED
    assert response["WWW-Authenticate"] == 'Bearer realm="uaa"'
    forged = call("GET", EXPORT, "e30.e30.forged")
    assert forged.status_code == HTTPStatus.UNAUTHORIZED
    assert 'error="invalid_token"' in forged["WWW-Authenticate"]


@pytest.mark.parametrize(
    "query",
    [
        "since=garbage",
        "since=2026-01-01T00:00:00Z",
        "tree_size=5",
        "first_index=-1",
        "from=0&to=9",
        "format=json",
    ],
)
def test_parameters_are_400_naming_them(auditor, query):
    """A partial export would not verify (the format starts at 0 or a signed prune point): none is
    offered, and a parameter is refused rather than ignored, so nobody mistakes the answer for a range."""
    sealed_ledger(1)
    response = call("GET", f"{EXPORT}?{query}", auditor)
    assert response.status_code == HTTPStatus.BAD_REQUEST, response.content
    body = response.json()
    assert body["error"] == "invalid_request"
    assert set(body["fields"]) == {part.split("=")[0] for part in query.split("&")}
    assert response["Content-Type"] == "application/json"


def test_a_zip_accept_header_is_answered_and_errors_stay_json(auditor, admin_token):
    sealed_ledger(1)
    ok = call("GET", EXPORT, auditor, HTTP_ACCEPT="application/zip")
    assert ok.status_code == HTTPStatus.OK and ok["Content-Type"] == "application/zip"
    refused = call("GET", EXPORT, admin_token("uaa.keys.read"), HTTP_ACCEPT="application/zip")
    assert refused.status_code == HTTPStatus.FORBIDDEN
    assert refused["Content-Type"] == "application/json"


def test_nothing_sealed_yet_is_404(auditor):
    response = call("GET", EXPORT, auditor)
    assert response.status_code == HTTPStatus.NOT_FOUND
    assert response.json()["error"] == "not_found"


def test_an_unusable_witness_is_503_and_nothing_is_exported(auditor, settings):
    """As `audit export`: no export is made from a ledger the sealer would not extend."""
    sealed_ledger(2)
    Path(settings.UAA_AUDIT_WITNESS).write_text("not a witness")
    response = call("GET", EXPORT, auditor)
    assert response.status_code == HTTPStatus.SERVICE_UNAVAILABLE
    assert response.json()["error"] == "temporarily_unavailable" and response["Retry-After"]


def test_head_answers_the_headers_without_reading_the_ledger(auditor):
    sealed_ledger(3)
    with CaptureQueriesContext(connection) as queries:
        response = call("HEAD", EXPORT, auditor)
    assert response.status_code == HTTPStatus.OK
    assert response["Content-Type"] == "application/zip" and response.content == b""
    batches = [q["sql"] for q in queries if "tokens_ledgerrecord" in q["sql"] and "LIMIT" in q["sql"]]
    assert batches == []  # the stream's record batches never ran


def test_a_ledger_of_many_batches_is_streamed_whole_one_batch_per_query(auditor, monkeypatch, tmp_path):
    """Constant memory: each query reads at most one batch (keyset on leaf_index, LIMIT), and the first
    bytes leave before the last batch is read."""
    monkeypatch.setattr(export_module, "STREAM_BATCH", 5)
    size = sealed_ledger(23)
    response = call("GET", EXPORT, auditor)
    assert response.streaming
    chunks = iter(response.streaming_content)
    with CaptureQueriesContext(connection) as queries:
        first = next(chunks)
        reads_before_first = sum("tokens_ledgerrecord" in q["sql"] for q in queries)
        rest = b"".join(chunks)
    batches = [q["sql"] for q in queries if "tokens_ledgerrecord" in q["sql"] and "LIMIT" in q["sql"]]
    assert len(batches) == -(-size // 5)  # ceil: one query per batch of 5 records
    assert all("LIMIT 5" in sql for sql in batches)
    assert reads_before_first < len(batches)
    directory = unzip(first + rest, tmp_path / "download")
    report = verify_export(directory, keys=audit_jwks(), trusted_head=head_dict())
    assert report.ok, report.summary()
    assert report.records == size


def _in_transaction() -> bool:
    raw = connection.connection
    if raw is None:
        return False
    if connection.vendor == "postgresql":
        from psycopg import pq

        return raw.info.transaction_status != pq.TransactionStatus.IDLE
    return bool(raw.in_transaction)


@pytest.mark.django_db(transaction=True)
def test_sealing_goes_on_while_a_download_is_half_read(auditor, monkeypatch, tmp_path):
    """The stream reads in autocommit, one short query per batch: while the reader stalls, this
    connection holds no transaction (PostgreSQL's idle_in_transaction_session_timeout would otherwise cut
    a slow download, and a transaction's snapshot would pin old row versions), and another connection
    seals at once. The download ends at the head it started from, and verifies."""
    monkeypatch.setattr(export_module, "STREAM_BATCH", 5)
    size = sealed_ledger(30)
    started_head = head_dict()
    response = call("GET", EXPORT, auditor)
    chunks = iter(response.streaming_content)
    part = [next(chunks) for _ in range(3)]
    assert not connection.in_atomic_block and not _in_transaction()

    sealed: list[int] = []

    def seal_elsewhere() -> None:
        try:
            ledger.append_record(event=LedgerRecord.Event.TOKEN_ISSUED, client_id="during-download")
            head = ledger.seal_tree_head(now=timezone.now())
            sealed.append(head.tree_size if head else -1)
        finally:
            connection.close()

    sealer = threading.Thread(target=seal_elsewhere)
    sealer.start()
    sealer.join(timeout=30)
    assert not sealer.is_alive(), "sealing waited for the half-read download"
    assert sealed and sealed[0] > size

    data = b"".join(part) + b"".join(chunks)
    directory = unzip(data, tmp_path / "download")
    report = verify_export(directory, keys=audit_jwks(), trusted_head=started_head)
    assert report.ok, report.summary()
    assert report.tree_size == size  # the head it started from, not the one sealed meanwhile
