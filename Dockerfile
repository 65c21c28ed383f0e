# omshub: one image for every omshub service of docker-compose.yml (worker, web, db-migrate,
# kafka-init, register-connector, sandbox). ENTRYPOINT is the CLI: `docker run omshub worker`.

# Build stage: wheels for omshub and its dependencies (a compiler for any that ships no wheel).
FROM python:3.11-slim AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# PyMySQL[rsa] pulls in cryptography: MySQL 8.4 authenticates with caching_sha2_password, whose
# first login over a plain connection needs RSA.
RUN pip wheel --no-cache-dir --wheel-dir /wheels . "PyMySQL[rsa]>=1.1,<2"

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links /wheels omshub "PyMySQL[rsa]" \
    && rm -rf /wheels
# The source tree is on PYTHONPATH: omshub reads sql/ (migrations) and
# connectors/debezium/oms.json relative to its package, and the wheel carries neither.
COPY . /app
ENV PYTHONPATH=/app \
    OMSHUB_HOME=/var/lib/omshub
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/omshub --create-home omshub \
    && install -d -o omshub -g omshub /var/lib/omshub/run
# Faust writes its data directory into the working directory: make that the writable home.
WORKDIR /var/lib/omshub
USER omshub
EXPOSE 16066 18080 18088
ENTRYPOINT ["omshub"]
CMD ["--help"]
