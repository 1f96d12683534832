"""Object 0 "LwM2M Security": the account the client registers with (TS Core 1.1.1 E.1).

Only the Bootstrap server may touch this object, so the DM interface never exposes it
(:data:`fotakit.client.tree.HIDDEN_OBJECTS`); the instance records what the client uses:
/0/0/0 Server URI, /0/0/1 Bootstrap-Server (false), /0/0/2 Security Mode (3 NoSec) and
/0/0/10 Short Server ID.
"""

from __future__ import annotations

from fotakit.client.config import ClientConfig
from fotakit.client.instance import LwM2MObject, SimpleInstance
from fotakit.lwm2m.model import ObjectDef

SERVER_URI = 0
BOOTSTRAP_SERVER = 1
SECURITY_MODE = 2
PUBLIC_KEY_OR_IDENTITY = 3
SERVER_PUBLIC_KEY = 4
SECRET_KEY = 5
SHORT_SERVER_ID = 10

#: /0/x/2 Security Mode values (TS E.1): 0 PSK, 1 RPK, 2 Certificate, 3 NoSec, 4 Cert+EST.
NO_SEC = 3


def security_instance(config: ClientConfig) -> SimpleInstance:
    return SimpleInstance(
        {
            SERVER_URI: config.server_uri,
            BOOTSTRAP_SERVER: False,
            SECURITY_MODE: NO_SEC,
            PUBLIC_KEY_OR_IDENTITY: b"",
            SERVER_PUBLIC_KEY: b"",
            SECRET_KEY: b"",
            SHORT_SERVER_ID: config.short_server_id,
        }
    )


def security_object(definition: ObjectDef, config: ClientConfig) -> LwM2MObject:
    """Object 0 with one instance for the configured server."""
    return LwM2MObject(definition, {0: security_instance(config)})
