# syntax=docker/dockerfile:1.7
# Flink 2.3.0 (the version of the apache-flink wheel pinned in uv.lock), Java 17, with the
# official Kafka SQL connector and PyFlink (same locked Python 3.11 environment as the project).
# Build context is the repository root (see docker-compose.yml).
FROM flink:2.3.0-scala_2.12-java17

USER root
COPY --from=ghcr.io/astral-sh/uv:0.13.9 /uv /usr/local/bin/uv
ENV UV_PYTHON_INSTALL_DIR=/opt/uv-python \
    UV_PROJECT_ENVIRONMENT=/opt/jointwatch/.venv \
    UV_LINK_MODE=copy \
    UV_COMPILE_BYTECODE=1

WORKDIR /opt/jointwatch
COPY pyproject.toml uv.lock ./
RUN uv python install 3.11 && uv sync --frozen --no-dev --no-install-project --python 3.11

# flink-sql-connector-kafka 4.0.1-2.0, the artifact pom.xml pins for the local stack (checksum of that jar).
ADD --chmod=644 --checksum=sha256:c7127a6518fba5d6b75eb4692229192e7147ea378e69c7b7cf16d0494057b0c3 \
    https://repo1.maven.org/maven2/org/apache/flink/flink-sql-connector-kafka/4.0.1-2.0/flink-sql-connector-kafka-4.0.1-2.0.jar \
    /opt/flink/lib/
# jobs/pipeline.py adds <deps-dir>/flink/flink-sql-connector-kafka-*.jar to pipeline.jars.
RUN mkdir -p deps/flink /opt/flink/checkpoints \
 && ln -s /opt/flink/lib/flink-sql-connector-kafka-4.0.1-2.0.jar deps/flink/ \
 && chown flink:flink /opt/flink/checkpoints

# Only what the job imports: jobs/ (SQL builders, the calibration UDF), schemas/, config/, and
# for the UDF on the TaskManagers' Python workers calibration/ (models, registry, QC limits)
# and connectors/ (the registry feed from jw.control.calibration).
COPY jobs/ jobs/
COPY schemas/ schemas/
COPY config/ config/
COPY calibration/ calibration/
COPY connectors/ connectors/

ENV PATH=/opt/jointwatch/.venv/bin:$PATH \
    PYTHONPATH=/opt/jointwatch
USER flink
WORKDIR /opt/flink
