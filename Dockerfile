# One image for every Steward process: `docker run IMAGE` serves the API on port 8000,
# `docker run IMAGE worker` runs a worker. docker-compose.yml runs both from this image.

# Build the project's wheel apart, so the final image holds neither the source nor build tools.
# One pinned base for both stages: the same interpreter and Debian release on every build.
FROM python:3.11.13-slim-bookworm AS wheel
WORKDIR /src
COPY . .
RUN pip wheel --no-cache-dir --disable-pip-version-check --no-deps --wheel-dir /wheels .

FROM python:3.11.13-slim-bookworm

# Inside a container loopback is unreachable from outside, so the API listens on every interface.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    STEWARD_DATA_DIR=/var/lib/steward \
    STEWARD_API_HOST=0.0.0.0

# A fixed uid, so a mounted volume's ownership means the same thing on every host.
RUN useradd --system --uid 10001 --user-group --home-dir /nonexistent --no-create-home steward \
    && install -d -o steward -g steward -m 0700 /var/lib/steward

# Dependencies come from pyproject.toml and constraints.txt alone (the same pins `make up`
# installs): this layer is rebuilt when the pins change, not on every code change.
COPY pyproject.toml constraints.txt /tmp/
RUN python -c "import tomllib, sys; \
deps = tomllib.load(open('/tmp/pyproject.toml', 'rb'))['project']['dependencies']; \
sys.stdout.write('\n'.join(deps) + '\n')" > /tmp/requirements.txt \
    && pip install -c /tmp/constraints.txt -r /tmp/requirements.txt \
    && rm /tmp/pyproject.toml /tmp/constraints.txt /tmp/requirements.txt

COPY --from=wheel /wheels /tmp/wheels
RUN pip install --no-deps /tmp/wheels/*.whl \
    && rm -rf /tmp/wheels \
    && pip check

USER steward
WORKDIR /var/lib/steward
EXPOSE 8000

ENTRYPOINT ["steward"]
CMD ["api"]
