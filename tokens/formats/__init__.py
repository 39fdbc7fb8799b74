"""Token formats: RFC 9068 JWT access tokens (rfc9068.py) and OIDC Core §2 ID tokens (id_token.py), signed
and verified with the stored keys by tokens/signing.py."""
