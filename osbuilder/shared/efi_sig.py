"""UEFI Secure Boot variable formats, as bytes (pure; no I/O).

- EFI_SIGNATURE_LIST (UEFI 2.10, 32.4.1): the content of PK, KEK and db. osbuilder's lists
  hold one X.509 certificate each (EFI_CERT_X509_GUID), owned by the fleet's GUID.
- EFI_VARIABLE_AUTHENTICATION_2 (UEFI 2.10, 8.2.2): a time-based authenticated write,
  the `.auth` files systemd-boot enrolls from `loader/keys/auto/` (loader.conf(5),
  `secure-boot-enroll`). The signed bytes are the variable's name (UTF-16LE, no NUL),
  its vendor GUID, its attributes, the time stamp and the new content; the signature is
  a PKCS#7 SignedData without its ContentInfo wrapper, as efitools' sign-efi-sig-list
  writes it (the build's files are byte-identical to that tool's with the same inputs).
The host builds and checks these files; the node reads the firmware's db variable to
check an update's UKI against the keys its firmware will use.
"""

from __future__ import annotations

import struct
import uuid
from dataclasses import dataclass
from datetime import datetime

from osbuilder.shared.errors import OsbError

CERT_X509 = uuid.UUID("a5c059a1-94e4-4aa7-87b5-ab155c2bf072")
CERT_PKCS7 = uuid.UUID("4aafd29d-68df-49ee-8aa9-347d375665a7")
GLOBAL_VARIABLE = uuid.UUID("8be4df61-93ca-11d2-aa0d-00e098032b8c")  # PK, KEK, SecureBoot
IMAGE_SECURITY_DATABASE = uuid.UUID("d719b2cb-3d3a-4596-a3bc-dad00e67656f")  # db, dbx
# NON_VOLATILE | BOOTSERVICE_ACCESS | RUNTIME_ACCESS | TIME_BASED_AUTHENTICATED_WRITE_ACCESS
AUTH_ATTRIBUTES = 0x01 | 0x02 | 0x04 | 0x20
WIN_CERT_REVISION = 0x0200
WIN_CERT_TYPE_EFI_GUID = 0x0EF1
LIST_HEADER = struct.Struct("<16sIII")  # SignatureType, ListSize, HeaderSize, SignatureSize
EFI_TIME = struct.Struct("<HBBBBBBIhBB")
WIN_CERT = struct.Struct("<IHH16s")  # dwLength, wRevision, wCertificateType, CertType

# the variable each key goes into, and its vendor GUID
VARIABLES: dict[str, uuid.UUID] = {"PK": GLOBAL_VARIABLE, "KEK": GLOBAL_VARIABLE,
                                   "db": IMAGE_SECURITY_DATABASE}
# who signs each variable's update: PK itself and KEK by PK, db by KEK
SIGNER = {"PK": "PK", "KEK": "PK", "db": "KEK"}


def signature_list(der: bytes, owner: uuid.UUID) -> bytes:
    """An EFI_SIGNATURE_LIST of one X.509 certificate (DER)."""
    data = owner.bytes_le + der
    return LIST_HEADER.pack(CERT_X509.bytes_le, LIST_HEADER.size + len(data), 0,
                            len(data)) + data


def x509_certificates(esl: bytes) -> list[bytes]:
    """Every X.509 certificate (DER) in a run of EFI_SIGNATURE_LISTs, e.g. the db
    variable's content (other signature types, such as hashes, are skipped)."""
    certs, i = [], 0
    while i + LIST_HEADER.size <= len(esl):
        kind, size, header, sig_size = LIST_HEADER.unpack_from(esl, i)
        if size < LIST_HEADER.size + header or i + size > len(esl) or sig_size < 16:
            raise OsbError(f"EFI signature list at byte {i}: sizes do not add up")
        start = i + LIST_HEADER.size + header
        if uuid.UUID(bytes_le=kind) == CERT_X509:
            for j in range(start, i + size - sig_size + 1, sig_size):
                certs.append(esl[j + 16:j + sig_size])
        i += size
    return certs


def efi_time(when: datetime) -> bytes:
    return EFI_TIME.pack(when.year, when.month, when.day, when.hour, when.minute,
                         when.second, 0, 0, 0, 0, 0)


def signed_bytes(variable: str, timestamp: bytes, content: bytes) -> bytes:
    """What the signature of an authenticated write of `variable` covers."""
    return (variable.encode("utf-16-le") + VARIABLES[variable].bytes_le
            + struct.pack("<I", AUTH_ATTRIBUTES) + timestamp + content)


def auth_file(timestamp: bytes, signed_data: bytes, content: bytes) -> bytes:
    """EFI_VARIABLE_AUTHENTICATION_2 followed by the new content: a `.auth` file."""
    cert = WIN_CERT.pack(WIN_CERT.size + len(signed_data), WIN_CERT_REVISION,
                         WIN_CERT_TYPE_EFI_GUID, CERT_PKCS7.bytes_le)
    return timestamp + cert + signed_data + content


@dataclass(frozen=True)
class AuthFile:
    timestamp: bytes
    signed_data: bytes  # PKCS#7 SignedData (no ContentInfo)
    content: bytes  # the EFI_SIGNATURE_LIST written to the variable


def parse_auth(data: bytes, name: str) -> AuthFile:
    if len(data) < EFI_TIME.size + WIN_CERT.size:
        raise OsbError(f"{name}: too short for an authenticated variable (.auth) file")
    length, revision, kind, cert_type = WIN_CERT.unpack_from(data, EFI_TIME.size)
    end = EFI_TIME.size + length
    if (revision, kind) != (WIN_CERT_REVISION, WIN_CERT_TYPE_EFI_GUID) \
            or uuid.UUID(bytes_le=cert_type) != CERT_PKCS7 or not WIN_CERT.size < length \
            or end > len(data):
        raise OsbError(f"{name}: not an EFI_VARIABLE_AUTHENTICATION_2 (.auth) file with a "
                       "PKCS#7 signature")
    return AuthFile(data[:EFI_TIME.size], data[EFI_TIME.size + WIN_CERT.size:end], data[end:])


# DER, for the ContentInfo the PKCS#7 tools expect around a bare SignedData
SIGNED_DATA_OID = bytes.fromhex("06092a864886f70d010702")  # 1.2.840.113549.1.7.2


def _der_length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def _tlv(data: bytes, at: int) -> tuple[int, int]:
    """(start of the value, its length) of the DER element at `at`."""
    if at + 2 > len(data):
        raise OsbError("DER: cut short")
    length, head = data[at + 1], 2
    if length & 0x80:
        n = length & 0x7F
        length, head = int.from_bytes(data[at + 2:at + 2 + n], "big"), 2 + n
    if at + head + length > len(data):
        raise OsbError("DER: element longer than its data")
    return at + head, length


def content_info(signed_data: bytes) -> bytes:
    """ContentInfo { signedData, [0] EXPLICIT SignedData } around a bare SignedData."""
    inner = b"\xa0" + _der_length(len(signed_data)) + signed_data
    body = SIGNED_DATA_OID + inner
    return b"\x30" + _der_length(len(body)) + body


def bare_signed_data(info: bytes) -> bytes:
    """The SignedData inside a PKCS#7 ContentInfo (what openssl writes)."""
    body, _ = _tlv(info, 0)
    oid_start, oid_len = _tlv(info, body)
    if info[body:oid_start + oid_len] != SIGNED_DATA_OID:
        raise OsbError("PKCS#7: not a SignedData")
    start, length = _tlv(info, oid_start + oid_len)
    return info[start:start + length]
