"""Environmental standards as versioned data, and exact functions over them.

- tables: load and validate the YAML editions under data/ (HJ 633-2012/2026,
  US EPA AQI 2018/2024, GB 3838-2002); pick the edition in force on a date.
- aqi: China and EPA sub-indices, AQI, primary pollutant(s), category.
- water: GB 3838-2002 surface-water class of a site.
- vectorised: numpy sub-indices identical to the exact scalar path.
- units: ug/m3 <-> ppb conversions for the EPA gases.
- cli: the `aqi` and `water-class` click commands (import alerts.standards.cli).
"""

from alerts.standards.aqi import (
    AqiResult,
    InsufficientData,
    SubIndex,
    UnknownItem,
    china_aqi,
    china_aqi_daily,
    china_aqi_realtime,
    compute_aqi,
    edition_for,
    epa_aqi,
    from_pipeline_units,
    sub_index,
)
from alerts.standards.tables import (
    AqiEdition,
    Registry,
    StandardLookupError,
    Unverified,
    WaterStandard,
    load_aqi_edition,
    load_registry,
    load_water_standard,
    registry,
)
from alerts.standards.vectorised import sub_index_array
from alerts.standards.water import ParameterClass, WaterResult, parameter_class, water_class

__all__ = [
    "AqiEdition", "AqiResult", "InsufficientData", "ParameterClass", "Registry", "StandardLookupError", "SubIndex",
    "UnknownItem", "Unverified", "WaterResult", "WaterStandard", "china_aqi", "china_aqi_daily", "china_aqi_realtime",
    "compute_aqi", "edition_for", "epa_aqi", "from_pipeline_units", "load_aqi_edition", "load_registry",
    "load_water_standard", "parameter_class", "registry", "sub_index", "sub_index_array", "water_class",
]
