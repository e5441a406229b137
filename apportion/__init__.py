"""Source apportionment (issue 6): pure numpy/scipy logic, no Flink; Kafka only in `stage`.

geometry   station distances, bearings, upwind tests, transport lag bounds
transport  air: share of a receptor's concentration from each upwind region vs local
water      river: load added by each reach, across regional borders
pmf        source-type factors (weighted NMF in the PMF sense) and streaming projection
factors    a region's factor model in the stream: rows, uncertainties, factor keys, projection of new hours
synthetic  simulated data with known truth, for tests, validation and benchmarks
validate   `python -m apportion.validate`: recovery against that truth, as a report
stage      the Kafka service: station hours in, transport / reach / factor records out on jw.apportionment (event time)
"""
