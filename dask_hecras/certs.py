"""Certificates for a cluster where mutual TLS is the gate.

Any client of a Dask cluster can run any code on its workers, so in an office the
only authentication is TLS with certificates signed by the cluster's own small CA:
``dask-hecras certs DIR`` makes the CA and a scheduler, a worker and a client
certificate; :func:`security` turns a folder of them into a ``distributed.Security``.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import socket
from pathlib import Path

ROLES = ("scheduler", "worker", "client")


def _key():
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.generate_private_key(ec.SECP256R1())


def _write_key(key, path: Path) -> None:
    from cryptography.hazmat.primitives import serialization

    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    keep_private(path)


def keep_private(path: Path) -> None:
    """Make a key readable by this user alone. POSIX: mode 600. Windows, where ``chmod`` only
    sets the read-only attribute and a file inherits its folder's ACL (often every local user
    may read it): ``icacls`` drops the inherited entries and grants this user alone full control.
    A failure is a warning naming the file, not an error: the certificates are still made."""
    import sys

    if sys.platform != "win32":
        os.chmod(path, 0o600)
        return
    import subprocess
    import warnings

    user, domain = os.environ.get("USERNAME", ""), os.environ.get("USERDOMAIN", "")
    who = f"{domain}\\{user}" if domain else user
    try:
        r = subprocess.run(["icacls", str(path), "/inheritance:r", "/grant:r", f"{who}:F"], capture_output=True,
                           text=True, errors="replace", timeout=60)
        problem = "" if r.returncode == 0 else (r.stdout + r.stderr).strip() or f"exit code {r.returncode}"
    except (OSError, subprocess.SubprocessError) as e:
        problem = str(e)
    if problem:
        warnings.warn(f"{path} could not be made readable by {who or 'this user'} alone ({problem}): keep its "
                      "folder private", stacklevel=3)


def _write_cert(cert, path: Path) -> None:
    from cryptography.hazmat.primitives import serialization

    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def make_certs(folder: str | os.PathLike, hosts: list[str] | None = None, *, days: int = 825) -> dict[str, Path]:
    """Write ``ca.pem`` (+ ``ca-key.pem``) and ``<role>.pem`` / ``<role>-key.pem`` for each role.

    ``hosts`` are the names and addresses the scheduler is reached by (this machine's
    name, localhost and 127.0.0.1 are always added). Keep ``ca-key.pem`` away from the
    workers: whoever holds it can admit new members.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.timezone.utc)
    ca_key = _key()
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dask-hecras cluster CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
          .not_valid_after(now + dt.timedelta(days=days))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    _write_cert(ca, folder / "ca.pem")
    _write_key(ca_key, folder / "ca-key.pem")

    names = sorted({*(hosts or []), socket.gethostname(), "localhost", "127.0.0.1"})
    alt = []
    for n in names:
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(n)))
        except ValueError:
            alt.append(x509.DNSName(n))
    out = {"ca": folder / "ca.pem"}
    for role in ROLES:
        key = _key()
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"dask-hecras {role}")]))
                .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=days))
                .add_extension(x509.SubjectAlternativeName(alt), critical=False)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                      ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
                .sign(ca_key, hashes.SHA256()))
        _write_cert(cert, folder / f"{role}.pem")
        _write_key(key, folder / f"{role}-key.pem")
        out[role] = folder / f"{role}.pem"
    return out


def security(folder: str | os.PathLike, role: str = "client"):
    """A ``distributed.Security`` for ``role`` from a folder made by :func:`make_certs`;
    encryption required, every peer checked against the cluster's CA."""
    from distributed import Security

    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}")
    folder = Path(folder)
    missing = [p for p in (folder / "ca.pem", folder / f"{role}.pem", folder / f"{role}-key.pem") if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"certificates missing in {folder}: {', '.join(p.name for p in missing)} "
                                f"(make them with: dask-hecras certs {folder})")
    cert, key = str(folder / f"{role}.pem"), str(folder / f"{role}-key.pem")
    # A process plays one role; a LocalCluster plays all three with one Security.
    kwargs = {k: v for r in ROLES for k, v in ((f"tls_{r}_cert", cert), (f"tls_{r}_key", key))}
    return Security(tls_ca_file=str(folder / "ca.pem"), require_encryption=True, **kwargs)
