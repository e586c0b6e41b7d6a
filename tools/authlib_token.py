"""An integrator's token request with Authlib's defaults (OAuth2Session + PrivateKeyJWT):
no `kid` in the assertion header and `exp = iat + 3600`, as RFC 7523 allows. Run against a
live gateway: python tools/authlib_token.py http://127.0.0.1:8080
"""
import sys
import uuid

import requests
from authlib.integrations.requests_client import OAuth2Session
from authlib.jose import JsonWebKey
from authlib.oauth2.rfc7523 import PrivateKeyJWT

base = sys.argv[1].rstrip("/")
token_endpoint = f"{base}/oauth2/token"
n = uuid.uuid4().hex[:8]

registration = requests.post(f"{base}/v1/registrations", json={
    "ods_code": f"AL{n[:6]}".upper(),
    "name": "Authlib Integrator Care",
    "category": "other_care_provider",
    "exchange_version": "exchange_2019",
    "domains": [f"authlib-{n}.example.org"],
    "contacts": {
        "ig_lead": {"name": "Ada", "email": f"ada@authlib-{n}.example.org"},
        "technical": {"name": "Alan", "email": f"alan@authlib-{n}.example.org"},
    },
    "business_need": "Checking that a standard OAuth library gets a token unchanged.",
}, timeout=10)
registration.raise_for_status()
organisation = registration.json()["id"]
registration_token = registration.json()["registration_access_token"]

# An RSA key; only its public half goes to the gateway (the gateway needs a kid on the JWK,
# the assertion's header carries none, as Authlib writes it).
key = JsonWebKey.generate_key("RSA", 2048, is_private=True)
public = key.as_dict(is_private=False)
public["kid"] = "authlib-1"
requests.put(
    f"{base}/v1/organisations/{organisation}/jwks",
    headers={"Authorization": f"Bearer {registration_token}"},
    json={"keys": [public]},
    timeout=10,
).raise_for_status()

session = OAuth2Session(
    client_id=organisation,
    client_secret=key.as_pem(is_private=True),
    token_endpoint_auth_method=PrivateKeyJWT(token_endpoint),
)
token = session.fetch_token(token_endpoint, grant_type="client_credentials")
assert token.get("access_token"), token
assert token.get("token_type") == "Bearer", token
print(f"authlib: token issued with Authlib's defaults (scope {token.get('scope')!r})")
