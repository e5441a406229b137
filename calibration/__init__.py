"""Sensor calibration and quality control: pure, vectorised (numpy) functions of
the readings' values, covariates and event times, and a versioned registry.

No Flink or Kafka here: the job and the replay tool call the same functions.
"""
