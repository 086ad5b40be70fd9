"""Throwaway GitHub App keys, made fresh for each test run and never written to disk."""

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa


def generate_app_key() -> tuple[str, str]:
    """Return (private key PEM, public key PEM) for a new RSA-2048 key.

    The private key is PKCS#1 ("BEGIN RSA PRIVATE KEY"), the format GitHub hands out
    when an app key is generated, so the app's key loading is tested on the real shape.
    """
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = key.private_bytes(
        encoding=serialization.Encoding.PEM,
        format=serialization.PrivateFormat.TraditionalOpenSSL,
        encryption_algorithm=serialization.NoEncryption(),
    ).decode("ascii")
    public_pem = (
        key.public_key()
        .public_bytes(
            encoding=serialization.Encoding.PEM,
            format=serialization.PublicFormat.SubjectPublicKeyInfo,
        )
        .decode("ascii")
    )
    return private_pem, public_pem
