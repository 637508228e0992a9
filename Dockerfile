# CPU image serving the embedded default model behind the guard.
# Installs the package the way the README does (scripts/setup.sh), then runs 'causalguard serve'.
FROM python:3.11-slim

# torch's CPU wheels (the default PyPI build of torch is the much larger CUDA one)
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_INDEX_URL=https://download.pytorch.org/whl/cpu \
    PIP_EXTRA_INDEX_URL=https://pypi.org/simple \
    CAUSALGUARD_CACHE_DIR=/home/guard/.cache/causalguard

RUN useradd --create-home --uid 10001 guard
WORKDIR /app
COPY --chown=guard:guard . /app
USER 10001
RUN scripts/setup.sh \
 && .venv/bin/causalguard models \
 && .venv/bin/python -c "from causalguard.models import load_model; load_model('smollm2-135m-instruct')"

COPY --chown=guard:guard deploy/guard.yaml /etc/causalguard/guard.yaml
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
  CMD [".venv/bin/python", "-c", "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=4).status != 200)"]
STOPSIGNAL SIGTERM
CMD [".venv/bin/causalguard", "serve", "--config", "/etc/causalguard/guard.yaml", "--host", "0.0.0.0", "--port", "8000"]
