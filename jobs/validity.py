"""What the job windows and the index stage agree on: which parameters, and the data-validity rules.

Kept free of imports so the Flink job (jobs/sql.py) does not pull in alerts/ (the job's docker
image ships only jobs/, schemas/ and config/).

Validity: GB 3095-2012 Table 4 / HJ 663, kept by the 2026 edition (STANDARDS.md; the `validity`
block of alerts/standards/data/hj633-*.yaml, which tests/unit/test_indices.py checks these equal).
"""

from __future__ import annotations

AQI_POLLUTANTS = ("pm25", "pm10", "so2", "no2", "co", "o3")  # HJ 633 real-time items, 1-h means
DAILY_MEAN_POLLUTANTS = ("pm25", "pm10", "so2", "no2", "co")  # 24-h means in the daily report; O3 enters as its maxima
WATER_PARAMETERS = ("ph", "do", "codmn", "nh3n", "tp")  # GB 3838-2002 items the network measures
INDEX_PARAMETERS = AQI_POLLUTANTS + WATER_PARAMETERS  # what the job pivots per station and hour

MIN_MINUTES = 45  # a valid 1-h mean
MIN_DAY_HOURS = 20  # a valid 24-h mean; also asked of the daily max 1-h O3 (no rule of its own: by analogy)
MIN_O3_8H_HOURS = 6  # a valid 8-h O3 mean
MIN_O3_8H_MEANS = 14  # a valid daily max 8-h O3
O3_8H_MAX_WINDOW_H = 17  # 8-h means ending 08:00..24:00: the ones whose 8 hours lie inside the day
