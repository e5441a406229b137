"""The one way jointwatch makes an MQTT client: paho 2.x callbacks, authenticated."""

from __future__ import annotations

from typing import Any

import paho.mqtt.client as mqtt


def mqtt_client(client_id: str, username: str, password: str, *, v5: bool = False, **options: Any) -> mqtt.Client:
    """A paho client logged in as `username`. MQTT 5 where a refusal must be seen in the
    PUBACK (an ACL denial); 3.1.1 otherwise, which persistent sessions (clean_session) need."""
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311, **options
    )
    client.username_pw_set(username, password)
    return client
