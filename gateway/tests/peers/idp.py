"""A stand-in identity provider for the tests, built on PyJWT and cryptography: RSA keys
published as a JWKS document, and tokens signed with them.

  python idp.py keygen --dir D --kid K     # D/K.pem (private key); D/jwks.json gains K
  python idp.py sign --dir D --kid K --claims '{"iss": ...}' [--alg RS256] [--typ at+jwt]
  python idp.py confuse --dir D --kid K --claims '{...}'   # HS256 keyed with K's public key
"""
import argparse
import json
import pathlib

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa


def keygen(d: pathlib.Path, kid: str):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    (d / f"{kid}.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    jwk.update({"kid": kid, "alg": "RS256", "use": "sig"})
    path = d / "jwks.json"
    keys = json.loads(path.read_text())["keys"] if path.exists() else []
    keys = [k for k in keys if k.get("kid") != kid] + [jwk]
    path.write_text(json.dumps({"keys": keys}))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("command", choices=["keygen", "sign", "confuse"])
    ap.add_argument("--dir", required=True)
    ap.add_argument("--kid", required=True)
    ap.add_argument("--claims")
    ap.add_argument("--alg", default="RS256")
    ap.add_argument("--typ", help="the header's typ (PyJWT's default: JWT)")
    a = ap.parse_args()
    d = pathlib.Path(a.dir)
    if a.command == "keygen":
        keygen(d, a.kid)
        return
    claims = json.loads(a.claims)
    pem = (d / f"{a.kid}.pem").read_bytes()
    if a.command == "sign":
        headers = {"kid": a.kid}
        if a.typ:
            headers["typ"] = a.typ
        print(jwt.encode(claims, pem, algorithm=a.alg, headers=headers))
    else:
        public = serialization.load_pem_private_key(pem, None).public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        # PyJWT refuses PEM keys as HMAC secrets; sign by hand, as an attacker would.
        import base64, hashlib, hmac
        b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
        head = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": a.kid}).encode())
        body = b64(json.dumps(claims).encode())
        sig = hmac.new(public, f"{head}.{body}".encode(), hashlib.sha256).digest()
        print(f"{head}.{body}.{b64(sig)}")


if __name__ == "__main__":
    main()
