"""Home Assistant's MQTT discovery payloads as pydantic models, written from HA's docs
(home-assistant.io/integrations/mqtt, /integrations/sensor.mqtt and
/integrations/binary_sensor.mqtt as they read for Home Assistant 2025.10 and later), for
the single-component discovery our daemon publishes.

Stricter than HA where HA only warns or ignores: unknown keys are refused (a typo would
be ignored by HA, silently), ``object_id`` is refused (deprecated in 2025.10, removed in
2026.4; ``default_entity_id`` replaces it), ``unique_id``, ``device`` and ``origin`` are
required (an entity without a unique id cannot join a device or be renamed in HA).
Abbreviated keys (``stat_t``, ``dev``, ``o`` ...) are expanded with HA's documented table
before validation, so a payload that uses them is checked the same way.

``availability_of`` and ``render`` apply HA's rules to a payload: how an availability
entry turns a status payload into available / unavailable, and what a value template
gives (``render`` evaluates the subset of Jinja our templates use: attribute and index
access, ``x if c else y``, comparisons and the ``tojson`` filter).
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

HA_DOCS = "Home Assistant 2025.10+ MQTT discovery"
# <discovery_prefix>/<component>/[<node_id>/]<object_id>/config
DISCOVERY_TOPIC = re.compile(
    r"^(?P<prefix>[^/#+]+)/(?P<component>[a-z_]+)/(?:(?P<node_id>[a-zA-Z0-9_-]+)/)?"
    r"(?P<object_id>[a-zA-Z0-9_-]+)/config$"
)
# homeassistant.core.valid_entity_id: <domain>.<object id>, lower case, no "__", no edge "_"
ENTITY_ID = re.compile(r"^(?!.+__)(?!_)[\da-z_]+(?<!_)\.(?!_)[\da-z_]+(?<!_)$")

# HA's abbreviation table (the entries for the keys these models know, and obj_id so a
# deprecated object_id is caught abbreviated too)
ABBREVIATIONS = {
    "avty": "availability",
    "avty_mode": "availability_mode",
    "avty_t": "availability_topic",
    "avty_tpl": "availability_template",
    "dev": "device",
    "dev_cla": "device_class",
    "e": "encoding",
    "en": "enabled_by_default",
    "ent_cat": "entity_category",
    "ent_pic": "entity_picture",
    "exp_aft": "expire_after",
    "frc_upd": "force_update",
    "ic": "icon",
    "json_attr_t": "json_attributes_topic",
    "json_attr_tpl": "json_attributes_template",
    "o": "origin",
    "obj_id": "object_id",
    "off_dly": "off_delay",
    "ops": "options",
    "pl_avail": "payload_available",
    "pl_not_avail": "payload_not_available",
    "pl_off": "payload_off",
    "pl_on": "payload_on",
    "stat_cla": "state_class",
    "stat_t": "state_topic",
    "sug_dsp_prc": "suggested_display_precision",
    "t": "topic",
    "uniq_id": "unique_id",
    "unit_of_meas": "unit_of_measurement",
    "val_tpl": "value_template",
}
DEVICE_ABBREVIATIONS = {
    "cns": "connections",
    "cu": "configuration_url",
    "hw": "hw_version",
    "ids": "identifiers",
    "mdl": "model",
    "mdl_id": "model_id",
    "mf": "manufacturer",
    "sa": "suggested_area",
    "sn": "serial_number",
    "sw": "sw_version",
}
ORIGIN_ABBREVIATIONS = {"sw": "sw_version", "url": "support_url"}

SENSOR_DEVICE_CLASSES = {
    "apparent_power", "aqi", "area", "atmospheric_pressure", "battery",
    "blood_glucose_concentration", "carbon_dioxide", "carbon_monoxide", "conductivity",
    "current", "data_rate", "data_size",
    "date", "distance", "duration", "energy", "energy_distance", "energy_storage", "enum",
    "frequency", "gas", "humidity", "illuminance", "irradiance", "moisture", "monetary",
    "nitrogen_dioxide", "nitrogen_monoxide", "nitrous_oxide", "ozone", "ph", "pm1", "pm10",
    "pm25", "power", "power_factor", "precipitation", "precipitation_intensity", "pressure",
    "reactive_energy", "reactive_power", "signal_strength", "sound_pressure", "speed",
    "sulphur_dioxide", "temperature", "timestamp", "volatile_organic_compounds",
    "volatile_organic_compounds_parts", "voltage", "volume", "volume_flow_rate",
    "volume_storage", "water", "weight", "wind_direction", "wind_speed",
}  # fmt: skip
BINARY_SENSOR_DEVICE_CLASSES = {
    "battery", "battery_charging", "carbon_monoxide", "cold", "connectivity", "door",
    "garage_door", "gas", "heat", "light", "lock", "moisture", "motion", "moving", "occupancy",
    "opening", "plug", "power", "presence", "problem", "running", "safety", "smoke", "sound",
    "tamper", "update", "vibration", "window",
}  # fmt: skip
# the units HA accepts for the device classes we use (sensor docs, "Device class")
DEVICE_CLASS_UNITS = {
    "temperature": {"°C", "°F", "K"},
    "duration": {"d", "h", "min", "s", "ms", "µs"},
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


Topic = Annotated[str, Field(min_length=1, max_length=65535, pattern=r"^[^\x00]+$")]
PublishedTopic = Annotated[str, Field(min_length=1, pattern=r"^[^#+\x00]+$")]  # no wildcards


class Device(_Strict):
    identifiers: list[str] | str | None = None
    connections: list[tuple[str, str]] | None = None
    manufacturer: str | None = None
    model: str | None = None
    model_id: str | None = None
    name: str | None = None
    hw_version: str | None = None
    sw_version: str | None = None
    serial_number: str | None = None
    suggested_area: str | None = None
    configuration_url: str | None = None
    via_device: str | None = None

    @model_validator(mode="after")
    def _identified(self) -> Device:
        if not self.identifiers and not self.connections:
            raise ValueError("a device needs identifiers or connections")
        return self


class Origin(_Strict):
    name: str = Field(min_length=1)
    sw_version: str | None = None
    support_url: str | None = None


class AvailabilityEntry(_Strict):
    topic: PublishedTopic
    payload_available: str = "online"
    payload_not_available: str = "offline"
    value_template: str | None = None


class _Entity(_Strict):
    """What every MQTT entity shares (MQTT integration docs, "Using availability topics",
    "Adding information about the origin", and each platform's common options)."""

    platform: str | None = None  # only in device-based discovery
    name: str | None
    unique_id: str = Field(min_length=1)
    default_entity_id: str | None = None
    state_topic: PublishedTopic
    value_template: str | None = None
    availability: list[AvailabilityEntry] | None = None
    availability_mode: Literal["all", "any", "latest"] | None = None
    availability_topic: PublishedTopic | None = None
    availability_template: str | None = None
    payload_available: str | None = None
    payload_not_available: str | None = None
    device: Device
    origin: Origin
    entity_category: Literal["config", "diagnostic"] | None = None
    entity_picture: str | None = None
    enabled_by_default: bool | None = None
    encoding: str | None = None
    expire_after: int | None = Field(default=None, ge=0)
    force_update: bool | None = None
    icon: str | None = None
    json_attributes_topic: PublishedTopic | None = None
    json_attributes_template: str | None = None
    qos: Literal[0, 1, 2] | None = None

    COMPONENT: ClassVar[str] = ""

    @model_validator(mode="before")
    @classmethod
    def _no_object_id(cls, data: Any) -> Any:
        if isinstance(data, dict) and "object_id" in data:
            raise ValueError(
                "object_id is deprecated since HA 2025.10 and removed in 2026.4; "
                "use default_entity_id ('<component>.<id>')"
            )
        return data

    @model_validator(mode="after")
    def _consistent(self) -> _Entity:
        if self.availability is not None and self.availability_topic is not None:
            raise ValueError("availability and availability_topic are mutually exclusive")
        if self.default_entity_id is not None:
            if not ENTITY_ID.match(self.default_entity_id):
                raise ValueError(f"default_entity_id {self.default_entity_id!r} is no entity id")
            domain = self.default_entity_id.split(".", 1)[0]
            if domain != self.COMPONENT:
                raise ValueError(f"default_entity_id {self.default_entity_id!r} is not a "
                                 f"{self.COMPONENT}")  # fmt: skip
        if self.platform is not None and self.platform != self.COMPONENT:
            raise ValueError(f"platform {self.platform!r} on a {self.COMPONENT} topic")
        return self


class Sensor(_Entity):
    COMPONENT: ClassVar[str] = "sensor"
    device_class: str | None = None
    state_class: Literal["measurement", "measurement_angle", "total", "total_increasing"] | None = (
        None
    )
    unit_of_measurement: str | None = None
    options: list[str] | None = None
    suggested_display_precision: int | None = Field(default=None, ge=0)
    last_reset_value_template: str | None = None

    @model_validator(mode="after")
    def _sensor_rules(self) -> Sensor:
        if self.device_class is not None and self.device_class not in SENSOR_DEVICE_CLASSES:
            raise ValueError(f"{self.device_class!r} is not a sensor device class")
        if self.entity_category == "config":
            raise ValueError("a sensor cannot have entity_category config")
        if self.device_class == "enum" or self.options is not None:
            if self.device_class != "enum" or not self.options:
                raise ValueError("options and device_class enum go together")
            if self.state_class is not None or self.unit_of_measurement is not None:
                raise ValueError("an enum sensor has no state_class or unit_of_measurement")
        units = DEVICE_CLASS_UNITS.get(self.device_class or "")
        if units is not None and self.unit_of_measurement not in units:
            raise ValueError(
                f"unit {self.unit_of_measurement!r} is not one of {sorted(units)} that "
                f"device_class {self.device_class} takes"
            )
        return self


class BinarySensor(_Entity):
    COMPONENT: ClassVar[str] = "binary_sensor"
    device_class: str | None = None
    payload_on: str = "ON"
    payload_off: str = "OFF"
    off_delay: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _binary_rules(self) -> BinarySensor:
        if self.device_class is not None and self.device_class not in BINARY_SENSOR_DEVICE_CLASSES:
            raise ValueError(f"{self.device_class!r} is not a binary_sensor device class")
        return self


MODELS: dict[str, type[_Entity]] = {"sensor": Sensor, "binary_sensor": BinarySensor}


def expand(payload: dict[str, Any]) -> dict[str, Any]:
    """HA's abbreviations replaced by the full keys (nested: device, origin, availability)."""
    full = {ABBREVIATIONS.get(key, key): value for key, value in payload.items()}
    if isinstance(full.get("device"), dict):
        device = full["device"]
        full["device"] = {DEVICE_ABBREVIATIONS.get(k, k): v for k, v in device.items()}
    if isinstance(full.get("origin"), dict):
        origin = full["origin"]
        full["origin"] = {ORIGIN_ABBREVIATIONS.get(k, k): v for k, v in origin.items()}
    if isinstance(full.get("availability"), list):
        full["availability"] = [
            {ABBREVIATIONS.get(k, k): v for k, v in entry.items()} for entry in full["availability"]
        ]
    return full


def validate(topic: str, payload: bytes) -> _Entity:
    """One retained discovery message checked as HA reads it; ValueError says what is wrong."""
    match = DISCOVERY_TOPIC.match(topic)
    if match is None:
        raise ValueError(f"{topic}: not a discovery topic HA subscribes to")
    model = MODELS.get(match["component"])
    if model is None:
        raise ValueError(f"{topic}: component {match['component']!r} is not checked here")
    return model.model_validate(expand(json.loads(payload)))


# -- HA's behaviour ----------------------------------------------------------------------
class _Undefined:
    """Jinja's default Undefined: falsy, renders as an empty string."""

    def __bool__(self) -> bool:
        return False

    def __str__(self) -> str:
        return ""

    def __getattr__(self, name: str) -> _Undefined:
        return self

    def __getitem__(self, key: Any) -> _Undefined:
        return self


class _Value:
    """A JSON value with Jinja's access rules: ``x.key`` and ``x[key]`` on mappings."""

    def __init__(self, data: Any) -> None:
        self.data = data

    def __getattr__(self, name: str) -> Any:
        return self[name]

    def __getitem__(self, key: Any) -> Any:
        try:
            found = self.data[key]
        except (KeyError, IndexError, TypeError):
            return _Undefined()
        return _Value(found) if isinstance(found, dict | list) else found

    def __bool__(self) -> bool:
        return bool(self.data)


def render(template: str, payload: bytes) -> str:
    """What HA's template gives for ``payload`` (``value``, ``value_json``), for the Jinja
    subset described in the module docstring; anything else raises ValueError."""
    match = re.fullmatch(r"\{\{\s*(.+?)\s*(\|\s*tojson\s*)?\}\}", template.strip())
    if match is None or re.search(r"__|\bimport\b|\blambda\b", match[1]):
        raise ValueError(f"{template!r}: outside the Jinja subset render() evaluates")
    text = payload.decode()
    try:
        value_json: Any = _Value(json.loads(text))
    except ValueError:
        value_json = _Undefined()
    # the expression is ours (a discovery payload in a test), evaluated without builtins
    result = eval(match[1], {"__builtins__": {}}, {"value": text, "value_json": value_json})
    if isinstance(result, _Value):
        result = result.data
    if match[2]:
        return json.dumps(result)
    if result is None:
        return "None"  # Jinja renders None as "None"; an MQTT sensor takes it as unknown
    return str(result)


def availability_of(entity: _Entity, status: bytes) -> bool | None:
    """True / False as HA sets the entity's availability when ``status`` arrives on its
    availability topic; None when HA leaves it as it was (no payload matched); True for an
    entity without availability (HA takes it as always available)."""
    entries = entity.availability
    if entries is None and entity.availability_topic is not None:
        entries = [
            AvailabilityEntry(
                topic=entity.availability_topic,
                payload_available=entity.payload_available or "online",
                payload_not_available=entity.payload_not_available or "offline",
                value_template=entity.availability_template,
            )
        ]
    if not entries:
        return True
    [entry] = entries  # one topic: availability_mode does not matter
    payload = render(entry.value_template, status) if entry.value_template else status.decode()
    if payload == entry.payload_available:
        return True
    if payload == entry.payload_not_available:
        return False
    return None
