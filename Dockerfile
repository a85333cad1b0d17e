# Placeholder until the service issue (#4): a slim image that runs the CLI.
FROM python:3.11-slim
WORKDIR /app
COPY . /app
RUN pip install --no-cache-dir .
USER 1000
ENTRYPOINT ["idsync"]
