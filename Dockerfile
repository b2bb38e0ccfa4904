# stator: the reference service (`stator run`), small and non-root.
#   docker build -t stator .        docker run -p 8087:8087 stator
# Configuration is STATOR_* environment variables (`docker run stator run -h` lists them).

# --- build: a virtualenv with stator and its pinned dependencies ---------------------------------------------
FROM python:3.11.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/stator
WORKDIR /src
COPY pyproject.toml constraints.txt README.md ./
COPY src ./src
RUN /opt/stator/bin/pip install --constraint constraints.txt . \
 && find /opt/stator -name '__pycache__' -prune -exec rm -rf {} +

# --- runtime: the virtualenv on a slim Python, no compiler, no pip cache, no root ------------------------------
FROM python:3.11.11-slim-bookworm
COPY --from=build /opt/stator /opt/stator
ENV PATH=/opt/stator/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    STATOR_HTTP_HOST=0.0.0.0 \
    STATOR_HTTP_PORT=8087
# A fixed numeric uid/gid (Kubernetes runAsNonRoot can verify a numeric USER) with no login shell and no home.
RUN groupadd --system --gid 10001 stator \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin stator
USER 10001:10001
EXPOSE 8087
# Ready, not merely alive: the container is healthy once /-/ready answers 200 (no curl in the image: Python).
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request as u; port = os.environ.get('STATOR_OPS_PORT') or os.environ.get('STATOR_HTTP_PORT', '8087'); u.urlopen(f'http://127.0.0.1:{port}/-/ready', timeout=2)"]
# SIGTERM starts stator's ordered shutdown (lame duck, deregistration, drain); PID 1 is stator itself.
STOPSIGNAL SIGTERM
ENTRYPOINT ["stator"]
CMD ["run"]
