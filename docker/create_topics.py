"""Create jointwatch's Kafka topics replicated across the cluster (one-shot `topics-init` service).

The services' own ensure_topics() creates missing topics with replication factor 1
(right for the single local broker); run this first so they find every topic
already there with the cluster's replication. Names, keys and partition counts
come from schemas/topics.py, the one place they are defined.

    python docker/create_topics.py --bootstrap kafka-1:19092 --replication-factor 3 --min-insync-replicas 2
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

from connectors.kafka_io import topic_config  # noqa: E402
from schemas.topics import ALL_TOPICS, namespaced  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description="create jointwatch's Kafka topics with cluster replication")
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--namespace", default="")
    p.add_argument("--replication-factor", type=int, default=3)
    p.add_argument("--min-insync-replicas", type=int, default=2)
    args = p.parse_args()
    admin = AdminClient({"bootstrap.servers": args.bootstrap})
    existing = set(admin.list_topics(timeout=60).topics)
    new = []
    for t in ALL_TOPICS:
        name = namespaced(t, args.namespace)
        if name in existing:
            continue
        config = {"min.insync.replicas": str(args.min_insync_replicas), **topic_config(t)}
        new.append(NewTopic(name, num_partitions=t.partitions, replication_factor=args.replication_factor, config=config))
    for name, future in (admin.create_topics(new, operation_timeout=60).items() if new else []):
        future.result()
        print(f"created {name}")
    print(f"{len(ALL_TOPICS) - len(new)} topics already existed")


if __name__ == "__main__":
    main()
